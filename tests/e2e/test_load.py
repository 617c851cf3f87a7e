"""`tokenchaos load` end to end: locust against the local stack, judged by our checkers.

Short runs (a few seconds of load): exit 0 on the correct service, 1 with a flaw of the
zoo installed, and a master with two workers whose histories are merged and judged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.load import LOCUSTFILE
from harness.pg import free_port

pytestmark = pytest.mark.e2e

_TIMEOUT_S = 300


def _load(*args: str, cwd: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from harness.cli import main; main()", "load", *args]
    env = {**os.environ, "CI": "1", "TOKENCHAOS_DATABASE_URL": database_url}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                          timeout=_TIMEOUT_S, env=env, check=False)


def _run_dir(report_dir: Path) -> Path:
    (run_dir,) = [p for p in report_dir.iterdir() if p.is_dir()]
    return run_dir


def test_load_on_the_correct_service_exits_0_with_locust_report_and_verdicts(
        tmp_path: Path, pg_admin_url: str) -> None:
    from harness.pg import create_database

    done = _load("--report-dir", str(tmp_path), "--", "--run-time", "4s", "-u", "4",
                 cwd=tmp_path, database_url=create_database(pg_admin_url))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Shutting down (exit code 0)" in done.stderr  # locust's own code is the verdict's
    run_dir = _run_dir(tmp_path)
    for name in ("history.jsonl", "run.json", "index.html", "locust.html",
                 "locust_stats.csv", "histories/local.jsonl"):
        assert (run_dir / name).stat().st_size > 0, name
    record = json.loads((run_dir / "run.json").read_text())
    assert record["valid"] is True
    stats = record["scenarios"][0]["stats"]
    assert stats["locust_requests_count"] > 0
    assert "locust_latency_ms_p95" in stats


def test_load_with_flaw_tip_lost_update_exits_1(tmp_path: Path, pg_admin_url: str) -> None:
    from harness.pg import create_database

    done = _load("--flaw", "tip_lost_update", "--report-dir", str(tmp_path), "--",
                 "--run-time", "4s", "-u", "4",
                 cwd=tmp_path, database_url=create_database(pg_admin_url))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Shutting down (exit code 1)" in done.stderr
    assert "conservation" in done.stdout


def test_load_distributed_master_and_two_workers_are_merged_and_judged(
        tmp_path: Path, pg_admin_url: str) -> None:
    from harness.pg import create_database

    port = free_port("127.0.0.1")
    workers = [subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
         "--master-host", "127.0.0.1", "--master-port", str(port)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)]
    try:
        done = _load("--report-dir", str(tmp_path), "--", "--master", "--expect-workers", "2",
                     "--master-bind-port", str(port), "--run-time", "4s", "-u", "4",
                     cwd=tmp_path, database_url=create_database(pg_admin_url))
        for worker in workers:
            worker.wait(timeout=60)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = _run_dir(tmp_path)
    assert sorted(p.name for p in (run_dir / "histories").iterdir()) == ["w0.jsonl", "w1.jsonl"]
    from harness.history import load

    (merged,) = load(run_dir / "history.jsonl")
    tags = {name.split(".", 1)[0] for name in merged.users}
    assert tags == {"w0", "w1"}
    assert json.loads((run_dir / "run.json").read_text())["valid"] is True

