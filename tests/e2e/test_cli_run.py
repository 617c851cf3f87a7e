"""The `tokenchaos` command end to end: the smoke suite on the local stack, then offline
re-judging, and the exit codes that tell "an invariant broke" from "could not judge"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.pg import free_port

pytestmark = pytest.mark.e2e

_RUN_TIMEOUT_S = 600


def _tokenchaos(*args: str, cwd: Path, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from harness.cli import main; main()", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                          timeout=_RUN_TIMEOUT_S, env={**os.environ, "CI": "1", **(env or {})},
                          check=False)


def test_run_smoke_suite_exits_0_writes_the_report_and_check_agrees(
        tmp_path: Path, pg_admin_url: str) -> None:
    from harness.pg import create_database

    env = {"TOKENCHAOS_DATABASE_URL": create_database(pg_admin_url)}
    done = _tokenchaos("run", "--report-dir", str(tmp_path), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    for name in ("history.jsonl", "run.json", "junit.xml", "index.html"):
        assert (run_dir / name).stat().st_size > 0, name
    record = json.loads((run_dir / "run.json").read_text())
    assert record["valid"] is True and record["exit_code"] == 0
    from scenarios import SUITES

    assert len(record["scenarios"]) == len(SUITES["smoke"].scenarios)

    checked = _tokenchaos("check", str(run_dir / "history.jsonl"), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout[-3000:]
    offline = {tuple(line.split()[:2]): line.split()[2]
               for line in checked.stdout.splitlines() if not line.startswith(" ")}
    online = {(s["name"], checker): "held" if v["valid"] is True else str(v["valid"])
              for s in record["scenarios"] for checker, v in s["verdicts"].items()}
    assert offline == online


def test_run_against_an_unreachable_target_exits_2(tmp_path: Path) -> None:
    done = _tokenchaos("run", "--target", "reference", "--scenario", "parallel-spend",
                       "--target-url", f"http://127.0.0.1:{free_port()}",
                       "--report-dir", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "does not answer" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_with_a_bad_profile_exits_2_naming_the_key(tmp_path: Path) -> None:
    profile = tmp_path / "broken.toml"
    profile.write_text('[target]\nname = "broken"\nbase_url = 7\n')
    done = _tokenchaos("run", "--target", str(profile), "--report-dir", str(tmp_path),
                       cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "broken.toml" in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_scenario_and_flaw_exit_2_listing_the_known_ones(tmp_path: Path) -> None:
    done = _tokenchaos("run", "--scenario", "no-such-thing", cwd=tmp_path)
    assert done.returncode == 2
    assert "parallel-spend" in done.stderr
    done = _tokenchaos("run", "--flaw", "no_such_flaw", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


def test_the_first_line_of_a_run_names_the_address_it_loads(
        tmp_path: Path, pg_admin_url: str) -> None:
    from harness.pg import create_database

    env = {"TOKENCHAOS_DATABASE_URL": create_database(pg_admin_url)}
    done = _tokenchaos("run", "--scenario", "concurrent-tips", "--report-dir", str(tmp_path),
                       cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    first = done.stderr.splitlines()[0]
    assert first.startswith("tokenchaos: loading http://127.0.0.1:"), done.stderr[:2000]
    assert "(local stack, provider http://127.0.0.1:" in first


def test_the_issues_crashes_exit_2_with_one_line(tmp_path: Path) -> None:
    history = tmp_path / "h.jsonl"
    history.write_text('{"type":"scenario"}\n')
    checked = _tokenchaos("check", str(history), cwd=tmp_path)
    assert checked.returncode == 2, checked.stderr
    assert checked.stderr == (f"tokenchaos: {history}:1: scenario line lacks 'name'; the "
                              "history file is damaged or was not written by tokenchaos\n")
    done = _tokenchaos("run", "--target", "reference", "--target-url",
                       "http://127.0.0.1:99999", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "--target-url 'http://127.0.0.1:99999': the port must be" in done.stderr
    assert "Traceback" not in done.stderr
