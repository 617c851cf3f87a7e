"""`tokenchaos load` end to end: locust against the local stack, judged by our checkers.

Short runs (a few seconds of load): exit 0 on the correct service, 1 with a flaw of the
zoo installed, and a master with two workers whose histories are merged and judged. The
users of every process share the run's hot creators, so tips to one recipient race: a
lost update on tip is caught by a short run, and the correct service holds under it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.load import LOCUSTFILE
from harness.load_mix import hot_creator_names
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


def _stats(run_dir: Path) -> dict[str, object]:
    record = json.loads((run_dir / "run.json").read_text())
    stats: dict[str, object] = record["scenarios"][0]["stats"]
    return stats


def _tip_recipients(run_dir: Path) -> dict[str, set[str]]:
    """Recipient -> the worker tags of the senders that tipped it, from the merged run."""
    from harness.history import load
    from harness.model import F, Kind

    (merged,) = load(run_dir / "history.jsonl")
    recipients: dict[str, set[str]] = {}
    for event in merged.events:
        if event.f == F.TIP and event.kind == Kind.OK:
            tag = str(event.value["sender"]).split(".", 1)[0]
            recipients.setdefault(str(event.value["recipient"]), set()).add(tag)
    return recipients


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
    recipients = _tip_recipients(run_dir)
    assert set(hot_creator_names()) & set(recipients), recipients  # the default mix tips them


def test_load_with_flaw_tip_lost_update_is_caught_on_the_shared_recipients(
        tmp_path: Path, pg_admin_url: str) -> None:
    from harness.pg import create_database

    # Every tip to a hot creator: one user's own ops never overlap, so only the tips of
    # users sharing a recipient can race, and the flaw must be caught on them.
    done = _load("--flaw", "tip_lost_update", "--mix", "hot_tip=1", "--report-dir",
                 str(tmp_path), "--", "--run-time", "6s", "-u", "4",
                 cwd=tmp_path, database_url=create_database(pg_admin_url))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Shutting down (exit code 1)" in done.stderr
    assert "conservation: BROKE" in done.stdout
    assert "Let U be hot_creator_" in done.stdout  # reconciliation names the account
    stats = _stats(_run_dir(tmp_path))
    assert isinstance(stats["recipient_races_count"], int)
    assert stats["recipient_races_count"] > 0


def test_load_with_every_tip_to_the_hot_creators_holds_on_the_correct_service(
        tmp_path: Path, pg_admin_url: str) -> None:
    from harness.pg import create_database

    done = _load("--mix", "hot_tip=1", "--report-dir", str(tmp_path), "--",
                 "--run-time", "6s", "-u", "4",
                 cwd=tmp_path, database_url=create_database(pg_admin_url))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = _run_dir(tmp_path)
    assert set(_tip_recipients(run_dir)) <= set(hot_creator_names())
    stats = _stats(run_dir)
    assert isinstance(stats["recipient_races_count"], int)
    assert stats["recipient_races_count"] > 0
    assert (f"tips sent while another tip to the same recipient was in flight: "
            f"{stats['recipient_races_count']}") in done.stdout


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
    hot = set(hot_creator_names())
    assert hot <= set(merged.users)  # one account each, not one per worker
    tags = {name.split(".", 1)[0] for name in merged.users if name not in hot}
    assert tags == {"w0", "w1"}
    (first,), (second,) = (load(run_dir / "histories" / f"{tag}.jsonl") for tag in ("w0", "w1"))
    for name in hot:  # both workers tip the one account the run made, not one of their own
        assert first.target_ids[name] == second.target_ids[name] == merged.target_ids[name]
    assert json.loads((run_dir / "run.json").read_text())["valid"] is True

