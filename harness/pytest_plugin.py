"""pytest entry point (``pytest11``): run tokenchaos scenarios from a project's own tests.

Everything is prefixed ``tokenchaos``: the options ``--tokenchaos-target`` (``local``
starts the local stack; otherwise a profile name or file), ``--tokenchaos-target-url``,
``--tokenchaos-provider-url`` and ``--tokenchaos-report-dir``, and the fixture
``tokenchaos_run``::

    def test_tips_survive_a_cycle(tokenchaos_run):
        outcome = tokenchaos_run("tip-cycle", seed=3)
        assert outcome.valid is True, outcome.summary

``tokenchaos_machine``, which explores the same target with the Hypothesis state
machine (``harness.stateful``) under a settings profile::

    def test_no_program_breaks_an_invariant(tokenchaos_machine):
        result = tokenchaos_machine(profile="ci")
        assert result.valid is True, result.program + result.anomaly

and ``tokenchaos_schedule``, which replays a recorded schedule (what ``tokenchaos shrink``
writes into the pytest files it generates) a few times, as races do not show every time::

    def test_shrunk_concurrent_tips_holds(tokenchaos_schedule):
        outcome = tokenchaos_schedule(SCHEDULE, runs=10)
        assert outcome.held, outcome.summary

``--tokenchaos-flaw NAME`` (repeatable) installs a flaw of the zoo in the local stack.

Each call runs one scenario through the same path as ``tokenchaos run`` (stack, runner,
checkers, report) and writes its report under the report directory, in a folder of its
own per xdist worker, so parallel workers never share ports, databases or files.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.model import Validity

if TYPE_CHECKING:
    from harness.stateful import MachineResult

__all__ = ["ScenarioOutcome", "ScheduleOutcome", "pytest_addoption", "tokenchaos_machine",
           "tokenchaos_run", "tokenchaos_schedule"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioOutcome:
    """One scenario's verdict, the checkers that did not hold, and where the report is."""

    valid: Validity
    exit_code: int
    not_held: Mapping[str, Validity]
    report_dir: Path
    summary: str  # the anomalies in words, and the command that reproduces the run


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleOutcome:
    """A recorded schedule's replays: how many broke its checker, out of how many."""

    broken_count: int
    runs_count: int
    summary: str

    @property
    def held(self) -> bool:
        """No replay broke the schedule's checker."""
        return self.broken_count == 0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tokenchaos", "tokenchaos scenarios")
    group.addoption("--tokenchaos-target", default="local",
                    help="'local' (start the local stack) or a target profile name or file")
    group.addoption("--tokenchaos-target-url", default=None,
                    help="base URL of the target, overriding the profile's")
    group.addoption("--tokenchaos-provider-url", default=None,
                    help="the provider simulator the target uses")
    group.addoption("--tokenchaos-provider-key",
                    default=os.environ.get("TOKENCHAOS_PROVIDER_KEY"),
                    help="that provider's control key (default $TOKENCHAOS_PROVIDER_KEY)")
    group.addoption("--tokenchaos-report-dir", default="reports",
                    help="where scenario reports are written")
    group.addoption("--tokenchaos-flaw", action="append", default=[],
                    help="install this flaw of the zoo in the local stack (repeatable)")


@pytest.fixture
def tokenchaos_run(request: pytest.FixtureRequest) -> Callable[..., ScenarioOutcome]:
    """Run one scenario against the configured target and return its outcome."""
    from harness.campaign import RunPlan, run_plan
    from harness.scenario import ScenarioParams
    from scenarios import get_scenario

    config = request.config
    target = str(config.getoption("--tokenchaos-target"))
    report_dir = _report_dir(config)

    flaws = _flaws(config, local=target == "local")

    def _run(name: str, *, seed: int = 1, scale: int = 1,
             concurrency: int = 32) -> ScenarioOutcome:
        params = ScenarioParams(seed=seed, scale=scale, concurrency=concurrency)
        plan = RunPlan(runs=((get_scenario(name), params),), suite=None,
                       profile="reference" if target == "local" else target,
                       local=target == "local", flaws=flaws,
                       target_url=config.getoption("--tokenchaos-target-url"),
                       provider_url=config.getoption("--tokenchaos-provider-url"),
                       provider_key=config.getoption("--tokenchaos-provider-key"),
                       report_dir=report_dir, command=f"tokenchaos run --scenario {name}")
        outcome = asyncio.run(run_plan(plan))
        (scenario,) = outcome.record.scenarios
        not_held = {checker: verdict.valid for checker, verdict in scenario.verdicts.items()
                    if verdict.valid is not True}
        lines = [anomaly.explanation for verdict in scenario.verdicts.values()
                 for anomaly in verdict.anomalies[:3]]
        lines.append(f"reproduce: {scenario.reproduce}")
        return ScenarioOutcome(valid=scenario.valid, exit_code=outcome.exit_code,
                               not_held=not_held, report_dir=outcome.report_dir,
                               summary="\n".join(lines))

    return _run


@pytest.fixture
def tokenchaos_machine(request: pytest.FixtureRequest) -> Callable[..., MachineResult]:
    """Explore the configured target with the state machine and return its result."""
    from harness.stateful import machine_plan, run_machine

    config = request.config
    target = str(config.getoption("--tokenchaos-target"))
    report_dir = _report_dir(config)

    local = target == "local"
    flaws = _flaws(config, local=local)

    def _explore(*, profile: str = "ci") -> MachineResult:
        plan = machine_plan(profile="reference" if local else target, local=local,
                            flaws=flaws, report_dir=report_dir,
                            target_url=config.getoption("--tokenchaos-target-url"),
                            provider_url=config.getoption("--tokenchaos-provider-url"),
                            provider_key=config.getoption("--tokenchaos-provider-key"))
        return run_machine(plan, profile=profile)

    return _explore


@pytest.fixture
def tokenchaos_schedule(request: pytest.FixtureRequest) -> Callable[..., ScheduleOutcome]:
    """Replay a recorded schedule (JSON values) against the configured target."""
    from harness.scenario import ScenarioParams
    from harness.shrink.replay import ReplaySpec, replay_schedule
    from harness.shrink.schedule_json import recorded_from_json

    config = request.config
    target = str(config.getoption("--tokenchaos-target"))
    report_dir = _report_dir(config)
    local = target == "local"
    spec = ReplaySpec(scenario="", params=ScenarioParams(),
                      profile="reference" if local else target, local=local,
                      flaws=_flaws(config, local=local),
                      target_url=config.getoption("--tokenchaos-target-url"),
                      provider_url=config.getoption("--tokenchaos-provider-url"),
                      provider_key=None if local else config.getoption(
                          "--tokenchaos-provider-key"))

    def _replay(schedule: Mapping[str, object], *, runs: int = 10) -> ScheduleOutcome:
        recorded = recorded_from_json(schedule)
        broken, ran, explanation = asyncio.run(
            replay_schedule(spec, recorded, runs=runs, report_dir=report_dir))
        summary = (f"{recorded.scenario}: {recorded.checker} ({recorded.anomaly_kind}) "
                   f"broke in {broken} of {ran} replays of {recorded.ops_count} ops")
        if explanation:
            summary += f"\n{explanation}"
        return ScheduleOutcome(broken_count=broken, runs_count=ran, summary=summary)

    return _replay


def _flaws(config: pytest.Config, *, local: bool) -> tuple[str, ...]:
    """``--tokenchaos-flaw`` names, refused with a remote target: a flag never ignored."""
    flaws = tuple(config.getoption("--tokenchaos-flaw") or ())
    if flaws and not local:
        raise pytest.UsageError("--tokenchaos-flaw installs a flaw in the local stack; "
                                "leave it out with --tokenchaos-target")
    return flaws


def _report_dir(config: pytest.Config) -> Path:
    """The report directory, one folder per xdist worker: workers never share files."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return Path(str(config.getoption("--tokenchaos-report-dir"))) / f"pytest-{worker}"
