"""`tokenchaos serve`: one JSON line with the stack's URLs, then no orphan after it stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

_START_TIMEOUT_S = 60.0
_GONE_TIMEOUT_S = 20.0


def _serve(tmp_path: Path) -> tuple[subprocess.Popen[str], dict[str, object]]:
    process = subprocess.Popen(
        [sys.executable, "-c", "from harness.cli import main; main()", "serve"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={k: v for k, v in os.environ.items()
             if k not in ("TOKENCHAOS_DATABASE_URL", "TOKENCHAOS_PROVIDER_KEY")})
    assert process.stdout is not None
    line = process.stdout.readline()  # blocks until the stack is up (or the process dies)
    assert line, f"serve printed nothing and exited with {process.poll()}"
    return process, json.loads(line)


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pids: set[int]) -> set[int]:
    deadline = time.monotonic() + _GONE_TIMEOUT_S
    while time.monotonic() < deadline:
        alive = {pid for pid in pids if _alive(pid)}
        if not alive:
            return set()
        time.sleep(0.1)
    return alive


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_its_urls_serves_and_stops_cleanly(
        tmp_path: Path, stop_signal: signal.Signals) -> None:
    process, info = _serve(tmp_path)
    try:
        assert set(info) >= {"service_url", "provider_url", "provider_key", "admin_key",
                             "webhook_secret", "database_url"}
        control = f"{info['provider_url']}/_tokenchaos/config"
        assert httpx.get(control, timeout=5).status_code == 401
        keyed = httpx.get(control, headers={"Authorization": f"Bearer {info['provider_key']}"},
                          timeout=5)
        assert keyed.json()["webhook_secret"] == info["webhook_secret"]
        assert httpx.get(f"{info['service_url']}/healthz", timeout=5).status_code == 200
        headers = {"Authorization": f"Bearer {info['admin_key']}"}
        created = httpx.post(f"{info['service_url']}/v1/users", json={"kind": "fan"},
                             headers=headers, timeout=5)
        assert created.status_code == 201, created.text
        children = _children(process.pid)
        assert int(str(info["service_pid"])) in children
        assert len(children) >= 2  # the service and PostgreSQL, at least
        process.send_signal(stop_signal)
        assert process.wait(timeout=_GONE_TIMEOUT_S) == 0
        assert _wait_gone(children) == set()
    finally:
        if process.poll() is None:
            process.kill()


def test_killing_serve_leaves_no_orphan(tmp_path: Path) -> None:
    process, _ = _serve(tmp_path)
    children = _children(process.pid)
    assert children
    process.kill()  # SIGKILL: no chance to clean up; the children must follow on their own
    process.wait(timeout=_GONE_TIMEOUT_S)
    assert _wait_gone(children) == set()
