"""A run as ``tokenchaos run`` assembles it: what it announces, and when its time bound starts.

The target is a stand-in on loopback that answers its health check and refuses everything
else, which is all a run needs to get past start-up and into its first scenario.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.campaign import RunPlan, run_plan
from harness.errors import TokenchaosError
from harness.scenario import ScenarioParams
from scenarios import get_scenario

pytestmark = pytest.mark.integration


class _HealthOnly:
    """HTTP on loopback: 200 for GET /healthz (noting when), 503 for anything else."""

    def __init__(self) -> None:
        self.health_answered_s: list[float] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        healthy = head.startswith(b"GET /healthz ")
        if healthy:
            self.health_answered_s.append(time.monotonic())
        status = b"200 OK" if healthy else b"503 Service Unavailable"
        writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
                     b"content-length: 2\r\nconnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()


@pytest.fixture
async def health_only() -> AsyncIterator[_HealthOnly]:
    stand_in = _HealthOnly()
    server = await asyncio.start_server(stand_in.handle, "127.0.0.1", 0)
    stand_in.port = server.sockets[0].getsockname()[1]
    async with server:
        yield stand_in


async def test_the_run_time_bound_starts_once_the_target_is_up_and_the_address_is_announced(
        health_only: _HealthOnly, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{health_only.port}"
    plan = RunPlan(runs=((get_scenario("concurrent-tips"), ScenarioParams(seed=1)),),
                   suite=None, profile="reference", local=False, target_url=url,
                   report_dir=tmp_path)
    clock_read_s: list[float] = []

    def clock() -> float:
        clock_read_s.append(time.monotonic())
        return clock_read_s[-1]

    announced: list[str] = []
    with pytest.raises(TokenchaosError):  # the stand-in refuses to provision users
        await run_plan(plan, announce=announced.append, clock=clock)
    assert announced == [f"tokenchaos: loading {url} (profile reference)"]
    (health_s,) = health_only.health_answered_s
    (deadline_base_s,) = clock_read_s  # the deadline is computed once, for the whole run
    assert deadline_base_s >= health_s


def _profile_without_calls(tmp_path: Path) -> Path:
    """The reference profile with its [ops.call_*] tables left out."""
    import re
    from importlib import resources

    text = resources.files("harness.targets").joinpath("reference.toml").read_text()
    kept = re.sub(r"\[ops\.call_[a-z]+\].*?(?=\n\[)", "", text, flags=re.S)
    assert "[ops.call_charge]" not in kept
    path = tmp_path / "no-calls.toml"
    path.write_text(kept)
    return path


async def test_a_scenario_the_profile_cannot_run_is_recorded_as_not_run_and_provisions_nobody(
        health_only: _HealthOnly, tmp_path: Path) -> None:
    from harness.report.record import load_run_json

    url = f"http://127.0.0.1:{health_only.port}"
    profile = _profile_without_calls(tmp_path)
    plan = RunPlan(runs=((get_scenario("mid-call-refund"), ScenarioParams(seed=1)),),
                   suite=None, profile=str(profile), local=False, target_url=url,
                   report_dir=tmp_path / "reports")
    outcome = await run_plan(plan)  # the stand-in refuses provisioning: none was asked for
    (scenario,) = outcome.record.scenarios
    assert scenario.not_run_reason == f"the profile {profile} has no [ops.call_charge]"
    assert scenario.verdicts == {}
    assert outcome.record.valid == "unknown"  # nothing ran, so nothing was judged
    assert outcome.exit_code == 2
    assert load_run_json(outcome.report_dir / "run.json") == outcome.record
    assert "--target-url" in scenario.reproduce
