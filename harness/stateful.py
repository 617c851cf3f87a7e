"""Explore a target with a Hypothesis state machine: programs of ops, judged every step.

``run_machine`` reaches the target exactly as ``tokenchaos run`` does (the local stack, or
a profile's deployment; ``harness.campaign.open_target``), then lets Hypothesis draw
programs for the ``TokenMachine`` (``harness._machine``): users funded through real
purchases, tips, replays, reads, call charges, and batches sent at once. After every step
the checkers judge the history so far and the end state read then; the first checker that
does not hold fails the program, and Hypothesis shrinks it to the smallest program that
still fails and prints it, with our anomaly text.

Settings profiles are registered with Hypothesis as ``tokenchaos-machine-dev``, ``-ci``
and ``-nightly`` (``machine_settings``). Each has its bounds: programs, steps per
program, the programs a shrink may run (by count, so shrinking ends within a budget), and
the time the whole exploration may take. Every program is written to the exploration's
history file as one scenario (named ``machine``), to read back with ``harness.history``.

Exit codes, as everywhere: 0 every checker that ran held in some step and none broke; 1 a
checker broke (a program and its anomalies); 2 anything else, a checker that never could
judge, a program that failed for a reason that is not an anomaly, or a run cut short.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.errors import Flaky
from hypothesis.reporting import with_reporter
from hypothesis.stateful import run_state_machine_as_test

from harness._machine import (
    InvariantBroken,
    MachineContext,
    machine_checkers,
    machine_class,
)
from harness.campaign import RunPlan, check_addresses, open_target
from harness.errors import UsageError
from harness.history import HistoryWriter
from harness.judge import EXIT_BROKE, EXIT_CANNOT_JUDGE, EXIT_HELD
from harness.loop_thread import LoopThread
from harness.model import Validity, merge_validity
from harness.scenario import Scenario, ScenarioParams, traits_of
from harness.schedule import Step
from harness.targets.profile import FileProvisioning, Profile, load_profile

__all__ = ["MACHINE_PROFILES", "MachineBudget", "MachineResult", "format_result",
           "machine_plan", "machine_settings", "run_machine"]

_OPEN_TIMEOUT_S = 300.0  # starting the local stack, or reaching a target, at most
_CLOSE_TIMEOUT_S = 60.0
_PROGRAM_LINES_MAX = 400  # lines of the printed program kept


@dataclass(frozen=True, slots=True, kw_only=True)
class MachineBudget:
    """The bounds of one exploration under a settings profile."""

    examples_max: int  # programs drawn before shrinking
    steps_max: int  # rules per program, after ``initialize``
    shrink_programs_max: int  # programs run while shrinking (the final replay aside)
    duration_s_max: float  # the whole exploration, from when the target answers
    derandomize: bool

    def __post_init__(self) -> None:
        assert self.examples_max >= 1
        assert self.steps_max >= 1
        assert self.shrink_programs_max >= 0
        assert self.duration_s_max > 0


MACHINE_PROFILES: dict[str, MachineBudget] = {
    # A few random programs while writing code.
    "dev": MachineBudget(examples_max=10, steps_max=8, shrink_programs_max=20,
                         duration_s_max=300.0, derandomize=False),
    # The CI gate: the same programs every run, so a red build is reproducible.
    "ci": MachineBudget(examples_max=30, steps_max=12, shrink_programs_max=40,
                        duration_s_max=600.0, derandomize=True),
    # Many longer random programs, once a night.
    "nightly": MachineBudget(examples_max=300, steps_max=30, shrink_programs_max=200,
                             duration_s_max=3600.0, derandomize=False),
}

_SETTINGS_PREFIX = "tokenchaos-machine-"


def _register() -> None:
    for name, budget in MACHINE_PROFILES.items():
        settings.register_profile(
            _SETTINGS_PREFIX + name, max_examples=budget.examples_max,
            stateful_step_count=budget.steps_max, deadline=None,
            derandomize=budget.derandomize, database=None, report_multiple_bugs=False,
            phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
            suppress_health_check=(HealthCheck.too_slow, HealthCheck.filter_too_much,
                                   HealthCheck.data_too_large),
            verbosity=Verbosity.normal, print_blob=False)


_register()


def machine_settings(name: str) -> settings:
    """The Hypothesis settings of profile ``name`` (``dev``, ``ci`` or ``nightly``).

    Raises:
        UsageError: no such profile.
    """
    if name not in MACHINE_PROFILES:
        raise UsageError(f"no machine profile {name!r}; choose one of "
                         f"{', '.join(MACHINE_PROFILES)}")
    return settings.get_profile(_SETTINGS_PREFIX + name)


@dataclass(frozen=True, slots=True, kw_only=True)
class MachineResult:
    """What one exploration found, and what it cost."""

    valid: Validity
    exit_code: int
    profile: str  # the settings profile
    program: str  # the failing program as Hypothesis printed it; "" when none failed
    anomaly: str  # our anomaly text; "" when none
    note: str  # why the result is "unknown", or "" when it is not
    checkers: dict[str, Validity]  # the best each checker did over every step
    programs_count: int  # programs run, shrinking included
    ops_count: int  # ops sent, shrinking included
    steps_count: int  # judgements made
    programs_to_failure: int | None  # programs run when the first anomaly broke
    ops_to_failure: int | None
    time_to_failure_s: float | None  # from the first program
    duration_s: float  # the whole exploration
    history_path: Path


def machine_plan(*, profile: str = "reference", local: bool = True,
                 flaws: tuple[str, ...] = (), report_dir: Path = Path("reports"),
                 **kwargs: Any) -> RunPlan:
    """A ``RunPlan`` that reaches the target as ``tokenchaos run`` would, for the machine.

    ``kwargs`` are ``RunPlan``'s other fields (``target_url``, ``local_database_url``...).
    """
    return RunPlan(runs=((_MACHINE_SCENARIO, ScenarioParams()),), suite=None,
                   profile=profile, local=local, flaws=flaws, report_dir=report_dir,
                   command="tokenchaos machine", **kwargs)


def run_machine(plan: RunPlan, *, profile: str = "ci",
                announce: Callable[[str], None] | None = None) -> MachineResult:
    """Reach the plan's target, explore it with the state machine, and say what held.

    Args:
        plan: what to reach (``machine_plan``); its ``limits`` bound every op.
        profile: the settings profile (``machine_settings``).
        announce: told the address the exploration is about to load.

    Raises:
        UsageError: a bad profile, an address not opted into, or a target whose users come
            from a file (every program needs fresh users).
        TokenchaosError: the target could not be reached or started (exit 2).
    """
    budget = MACHINE_PROFILES.get(profile)
    chosen = machine_settings(profile)
    assert budget is not None
    target_profile = load_profile(plan.profile)
    check_addresses(plan, target_profile)
    if isinstance(target_profile.provisioning, FileProvisioning):
        raise UsageError(f"profile {target_profile.source} takes users from a file; the "
                         "machine provisions fresh users for every program, so give it a "
                         "profile that creates users ([provisioning] kind = \"http\")")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    history_path = plan.report_dir / f"machine-{stamp}-{time.monotonic_ns() % 10**6:06d}" \
        / "history.jsonl"
    with LoopThread() as loop:
        stack = contextlib.AsyncExitStack()
        session, provider, target, _ = loop.run(_enter(stack, plan, target_profile),
                                                timeout_s=_OPEN_TIMEOUT_S)
        try:
            if announce is not None:
                announce(f"tokenchaos: exploring {target.service_url} with the state machine "
                         f"(profile {profile})")
            traits = traits_of(target_profile)
            with HistoryWriter(history_path) as writer:
                ctx = MachineContext(loop=loop, session=session, provider=provider,
                                     writer=writer, limits=plan.limits, traits=traits,
                                     checkers=machine_checkers(traits),
                                     shrink_programs_max=budget.shrink_programs_max,
                                     deadline_s=time.monotonic() + budget.duration_s_max)
                return _explore(ctx, chosen, profile=profile, history_path=history_path)
        finally:
            loop.run(stack.aclose(), timeout_s=_CLOSE_TIMEOUT_S)


async def _enter(stack: contextlib.AsyncExitStack[Any], plan: RunPlan,
                 profile: Profile) -> Any:
    return await stack.enter_async_context(open_target(plan, profile))


def _explore(ctx: MachineContext, chosen: settings, *, profile: str,
             history_path: Path) -> MachineResult:
    lines: list[str] = []
    machine = machine_class(ctx)
    error: BaseException | None = None
    with with_reporter(lambda value: lines.append(str(value))):
        try:
            run_state_machine_as_test(machine, settings=chosen)
        except Exception as exc:  # Hypothesis re-raises what the program raised
            error = exc
    return _result(ctx, error, lines, profile=profile, history_path=history_path)


def _result(ctx: MachineContext, error: BaseException | None, lines: list[str], *,
            profile: str, history_path: Path) -> MachineResult:
    program = "\n".join([*lines, *getattr(error, "__notes__", ())][:_PROGRAM_LINES_MAX])
    broken = _invariant_broken(error)
    note = ""
    if broken is not None or (error is not None and ctx.last_failure is not None):
        # An anomaly broke a real program: exit 1, even when Hypothesis then stumbled.
        valid: Validity = False
        anomaly = str(broken) if broken is not None else (ctx.last_failure or "")
        if isinstance(error, Flaky):
            note = ("the shrunk program did not fail the same way again on its replay: the "
                    "race is timing-dependent; the anomaly is the one that broke a program")
        elif broken is None:
            note = (f"after the anomaly, the exploration failed: {type(error).__name__}: "
                    f"{error}")
    elif error is not None:
        valid, anomaly = "unknown", ""
        note = f"a program failed without an anomaly: {type(error).__name__}: {error}"
    else:
        anomaly = ""
        never = sorted(name for name, v in ctx.held.items() if v != True)  # noqa: E712
        valid = merge_validity(*ctx.held.values()) if ctx.held else "unknown"
        if ctx.deadline_hit:
            valid = merge_validity(valid, "unknown")
            note = "the exploration hit its time bound before every program ran"
        elif never:
            note = f"never judged (nothing to check in any step): {', '.join(never)}"
    exit_code = EXIT_HELD if valid is True else EXIT_BROKE if valid is False \
        else EXIT_CANNOT_JUDGE
    return MachineResult(
        valid=valid, exit_code=exit_code, profile=profile, program=program if error else "",
        anomaly=anomaly, note=note, checkers=dict(ctx.held),
        programs_count=ctx.programs_count, ops_count=ctx.ops_count,
        steps_count=ctx.steps_count, programs_to_failure=ctx.programs_to_failure,
        ops_to_failure=ctx.ops_to_failure, time_to_failure_s=ctx.first_failure_s,
        duration_s=time.monotonic() - ctx.started_s, history_path=history_path)


def format_result(result: MachineResult) -> list[str]:
    """The result as console lines: the program and anomalies when one broke, the figures,
    the verdict per checker. Pure."""
    lines: list[str] = []
    if result.program:
        lines += ["The program that broke an invariant, as Hypothesis printed it:", "",
                  result.program, ""]
    if result.anomaly:
        lines += ["Anomalies:", result.anomaly, ""]
    lines.append("checkers: " + ", ".join(f"{name} {_word(valid)}"
                                           for name, valid in result.checkers.items()))
    figures = (f"{result.programs_count} programs, {result.ops_count} ops, "
               f"{result.steps_count} judgements in {result.duration_s:.1f} s "
               f"(profile {result.profile})")
    if result.time_to_failure_s is not None:
        figures += (f"; first anomaly after {result.time_to_failure_s:.1f} s, in program "
                    f"{result.programs_to_failure}, {result.ops_to_failure} ops in")
    lines.append(figures)
    if result.note:
        lines.append(f"note: {result.note}")
    lines.append(f"history: {result.history_path}")
    lines.append(f"verdict: {_word(result.valid)} (exit {result.exit_code})")
    return lines


def _word(valid: Validity) -> str:
    if valid is True:
        return "held"
    return "BROKE" if valid is False else "unknown"


def _invariant_broken(error: BaseException | None) -> InvariantBroken | None:
    """The ``InvariantBroken`` in what Hypothesis raised, groups searched, or None."""
    pending = [] if error is None else [error]
    while pending:  # bounded: a finite exception tree
        exc = pending.pop(0)
        if isinstance(exc, InvariantBroken):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
    return None


def _machine_users(params: ScenarioParams) -> dict[str, str]:
    del params
    return {}


def _no_steps(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    del rng, params
    return iter(())


# What a RunPlan runs: nothing of its own. It only lets the machine reach the target
# through the plan, as a run would (each program is a scenario of its own).
_MACHINE_SCENARIO = Scenario(name="machine", summary="Hypothesis programs against the target",
                             users=_machine_users, generator=_no_steps, checkers=())
