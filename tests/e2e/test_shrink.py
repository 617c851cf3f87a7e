"""`tokenchaos shrink` end to end: a run of one scenario with a flaw installed, shrunk to a
handful of ops, and the pytest file it writes fails against the flaw and passes against
the correct service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

_TIMEOUT_S = 900
OPS_AFTER_MAX = 5  # "a handful": the racing or reordered ops and what funds them


def _command(args: list[str], *, cwd: Path, database_url: str
             ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": "1", "TOKENCHAOS_DATABASE_URL": database_url}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=_TIMEOUT_S,
                          env=env, check=False)


def _tokenchaos(*args: str, cwd: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    return _command([sys.executable, "-c", "from harness.cli import main; main()", *args],
                    cwd=cwd, database_url=database_url)


@pytest.mark.parametrize(("flaw", "scenario", "extra", "shrink_extra"), [
    # A race: on a busy machine the whole schedule may take more than the default ten
    # replays to show it again (seen once on a clean-clone run), so it gets thirty.
    ("tip_lost_update", "concurrent-tips", ("--concurrency", "8"), ("--runs", "30")),
    ("refund_before_success_dropped", "webhook-reorder", (), ()),  # an ordering
])
def test_shrink_ends_with_a_handful_of_ops_and_its_test_tells_the_flaw_from_the_fix(
        tmp_path: Path, pg_admin_url: str, flaw: str, scenario: str,
        extra: tuple[str, ...], shrink_extra: tuple[str, ...]) -> None:
    from harness.pg import create_database

    ran = _tokenchaos("run", "--scenario", scenario, "--seed", "1", *extra, "--flaw", flaw,
                      "--report-dir", str(tmp_path / "reports"), cwd=tmp_path,
                      database_url=create_database(pg_admin_url))
    assert ran.returncode == 1, ran.stdout[-3000:] + ran.stderr[-3000:]
    (run_dir,) = (tmp_path / "reports").iterdir()
    assert f"shrink: tokenchaos shrink {run_dir}/ --scenario {scenario}" in ran.stdout

    shrunk = _tokenchaos("shrink", f"{run_dir}/", "--time-limit", "400", *shrink_extra,
                         cwd=tmp_path,
                         database_url=create_database(pg_admin_url))
    assert shrunk.returncode == 0, shrunk.stdout[-3000:] + shrunk.stderr[-3000:]
    summary = json.loads((run_dir / f"shrunk-{scenario}.json").read_text())
    assert summary["ops_after"] <= OPS_AFTER_MAX, summary
    assert summary["ops_after"] < summary["ops_before"]
    assert summary["confirm_failed_count"] >= 1
    pytest_file = run_dir / summary["pytest_file"]
    assert f"pytest file: {pytest_file}" in shrunk.stdout
    assert f"httpx script: {run_dir / summary['script_file']}" in shrunk.stdout
    page = (run_dir / "index.html").read_text()
    assert f'href="{summary["pytest_file"]}"' in page
    assert f'href="{summary["script_file"]}"' in page

    pytest_args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   "-p", "no:randomly", str(pytest_file), "--tokenchaos-report-dir",
                   str(tmp_path / "pytest-reports")]
    flawed = _command([*pytest_args, "--tokenchaos-flaw", flaw], cwd=tmp_path,
                      database_url=create_database(pg_admin_url))
    assert flawed.returncode == 1, flawed.stdout[-3000:] + flawed.stderr[-3000:]
    assert "1 failed" in flawed.stdout
    correct = _command(pytest_args, cwd=tmp_path, database_url=create_database(pg_admin_url))
    assert correct.returncode == 0, correct.stdout[-3000:] + correct.stderr[-3000:]
    assert "1 passed" in correct.stdout
