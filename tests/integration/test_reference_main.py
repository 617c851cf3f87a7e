"""``python -m reference_impl``: it starts, migrates once, stops cleanly, refuses bad config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psycopg
import pytest

from harness.pg import free_port
from reference_impl import db

pytestmark = pytest.mark.integration

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 15.0


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TOKENCHAOS_")}
    return {**env, "TOKENCHAOS_DATABASE_URL": database_url,
            "TOKENCHAOS_ADMIN_KEY": "adm_main_0123456789ab",
            "TOKENCHAOS_WEBHOOK_SECRET": "whsec_main",
            "TOKENCHAOS_PROVIDER_URL": "http://127.0.0.1:9", **extra}


def _start(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reference_impl", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def _wait_healthy(process: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"not healthy within {_START_TIMEOUT_S:.0f} s: {process.communicate()}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_service_serves_then_stops_cleanly_on_a_signal(database_url: str,
                                                           sig: signal.Signals) -> None:
    port = free_port()
    process = _start(_env(database_url), port)
    try:
        _wait_healthy(process, port)
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=_STOP_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "applied migration" in stderr
    assert "Traceback" not in stderr


def test_two_services_starting_at_once_apply_each_migration_once(database_url: str) -> None:
    ports = [free_port(), free_port()]
    processes = [_start(_env(database_url), port) for port in ports]
    try:
        for process, port in zip(processes, ports, strict=True):
            _wait_healthy(process, port)
    finally:
        for process in processes:
            process.terminate()
        outputs = [process.communicate(timeout=_STOP_TIMEOUT_S)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    migrations_count = len(db._read_migrations())
    assert migrations_count >= 1
    applied_count = sum(output.count("applied migration") for output in outputs)
    assert applied_count == migrations_count, outputs
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT name FROM schema_migrations").fetchall()
    assert len(rows) == migrations_count


def test_an_unknown_flaw_stops_the_service_with_a_clear_message(database_url: str) -> None:
    process = _start(_env(database_url, TOKENCHAOS_FLAWS="no_such_flaw"), free_port())
    _, stderr = process.communicate(timeout=_START_TIMEOUT_S)
    assert process.returncode == 2
    assert "unknown flaw 'no_such_flaw'" in stderr
    assert "Traceback" not in stderr


def test_a_missing_setting_stops_the_service_naming_the_variable(database_url: str) -> None:
    env = _env(database_url)
    del env["TOKENCHAOS_WEBHOOK_SECRET"]
    process = _start(env, free_port())
    _, stderr = process.communicate(timeout=_START_TIMEOUT_S)
    assert process.returncode == 2
    assert "TOKENCHAOS_WEBHOOK_SECRET is not set" in stderr
