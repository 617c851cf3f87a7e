"""Replaying a failing scenario's schedule against a target, and shrinking it there.

``replay_spec`` reads what a run needs to be replayed from the scenario's reproduce
command (the one ``tokenchaos run`` printed and recorded: scenario, seed, scale,
concurrency, target, flaws); ``Replayer`` opens that target once (a fresh local stack
with the same flaws, or the same remote target) and runs a recorded schedule on it as a
scenario of its own, each time with fresh users, judged by the one checker that broke.
``shrink_recorded`` drives ``harness.shrink.ddmin`` with it: each candidate is rerun up
to ``runs_max`` times (a race is probabilistic) and counts as failing at its first run
that breaks the same checker with the same anomaly kind; how many reruns a candidate
gets before it counts as holding follows how many replays the failures so far took to
show (``ddmin.reruns_for``: a few for a race that shows every time, up to ``runs_max``
for a rare one). The final schedule is then run ``confirm_runs`` more times, all of
them, for its "fails k of n".

Every loop here is bounded by the candidates, the reruns and a wall-clock deadline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import shlex
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.campaign import RunPlan, open_target
from harness.errors import UsageError
from harness.history import HistoryWriter
from harness.judge import judge
from harness.limits import DEFAULT_LIMITS
from harness.model import Op
from harness.report.record import RunRecord, ScenarioRecord
from harness.runner import RunDeadlineExceeded, run_scenario
from harness.scenario import Scenario, ScenarioParams, traits_of
from harness.shrink.ddmin import Groups, ops_count, reruns_for, shrink_flow
from harness.shrink.schedule_json import Recorded, recorded_from_steps

__all__ = ["Confirmation", "ReplaySpec", "Replayer", "ShrinkBounds", "ShrinkOutcome",
           "broken_anomaly", "choose_scenario", "replay_schedule", "replay_spec",
           "shrink_recorded"]

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class ShrinkBounds:
    """How far a shrink may go: candidates asked about, reruns, wall time."""

    candidates_max: int = 200
    runs_max: int = 10  # reruns of one candidate; it fails at its first failing run
    confirm_runs: int = 10  # dedicated runs of the final schedule, for "fails k of n"
    time_limit_s: float = 300.0  # the search; the confirmation runs come after it

    def __post_init__(self) -> None:
        if not 1 <= self.candidates_max <= 10_000:
            raise UsageError(f"--candidates {self.candidates_max}: give 1 to 10000")
        if not 1 <= self.runs_max <= 100:
            raise UsageError(f"--runs {self.runs_max}: give 1 to 100")
        if not 1 <= self.confirm_runs <= 100:
            raise UsageError(f"--confirm-runs {self.confirm_runs}: give 1 to 100")
        if not 1 <= self.time_limit_s <= 86_400:
            raise UsageError(f"--time-limit {self.time_limit_s:g}: give 1 to 86400 seconds")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaySpec:
    """What replays one scenario run: its parameters and the target it ran against."""

    scenario: str
    params: ScenarioParams
    profile: str = "reference"
    local: bool = True
    flaws: tuple[str, ...] = ()
    target_url: str | None = None
    provider_url: str | None = None
    provider_key: str | None = None
    database_url: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    latency_bound_ms: int | None = None

    def plan(self, base: Scenario, report_dir: Path) -> RunPlan:
        """A run plan of this one scenario against the spec's target."""
        limits = dataclasses.replace(DEFAULT_LIMITS, latency_ms_max=self.latency_bound_ms)
        return RunPlan(runs=((base, self.params),), suite=None, profile=self.profile,
                       local=self.local, flaws=self.flaws, target_url=self.target_url,
                       provider_url=self.provider_url, provider_key=self.provider_key,
                       database_url=self.database_url, allowed_hosts=self.allowed_hosts,
                       report_dir=report_dir, limits=limits, command="tokenchaos shrink")


def replay_spec(reproduce: str, *, environ: Mapping[str, str] | None = None) -> ReplaySpec:
    """Read a scenario's reproduce command back into what replays it.

    Secrets appear in it as ``"$NAME"`` references; they are read from ``environ``.

    Raises:
        UsageError: the command is not a ``tokenchaos run`` of one scenario, or names a
            secret whose environment variable is not set.
    """
    environ = os.environ if environ is None else environ
    words = shlex.split(reproduce)
    while words and "=" in words[0] and not words[0].startswith("-"):
        words.pop(0)  # a users file's NAME=path prefix: the environment already says
    if words[:2] != ["tokenchaos", "run"]:
        raise UsageError(f"cannot replay {reproduce!r}: not a tokenchaos run command")
    flags: dict[str, list[str]] = {}
    rest = words[2:]
    for flag, value in zip(rest[::2], rest[1::2], strict=False):
        if not flag.startswith("--"):
            raise UsageError(f"cannot replay {reproduce!r}: {flag!r} is not a flag")
        flags.setdefault(flag, []).append(_expand(value, environ, reproduce))

    def one(flag: str) -> str | None:
        values = flags.get(flag)
        return None if not values else values[-1]

    scenario = one("--scenario")
    if scenario is None:
        raise UsageError(f"cannot replay {reproduce!r}: it names no --scenario")
    target = one("--target") or "local"
    bound = one("--latency-bound-ms")
    params = ScenarioParams(seed=int(one("--seed") or 0), scale=int(one("--scale") or 1),
                            concurrency=int(one("--concurrency") or 16))
    return ReplaySpec(scenario=scenario, params=params,
                      profile="reference" if target == "local" else target,
                      local=target == "local", flaws=tuple(flags.get("--flaw", ())),
                      target_url=one("--target-url"), provider_url=one("--provider-url"),
                      provider_key=one("--provider-key"), database_url=one("--database-url"),
                      allowed_hosts=tuple(flags.get("--allow-remote", ())),
                      latency_bound_ms=None if bound is None else int(bound))


def _expand(value: str, environ: Mapping[str, str], reproduce: str) -> str:
    if not value.startswith("$"):
        return value
    name = value[1:].strip("{}")
    if not environ.get(name):
        raise UsageError(f"{reproduce!r} needs {name}: set it as for the run")
    return environ[name]


def choose_scenario(record: RunRecord, name: str | None) -> ScenarioRecord:
    """The scenario to shrink: ``name``, or the run's first whose verdict is false.

    Raises:
        UsageError: no such scenario, or it did not break an invariant.
    """
    broken = [s for s in record.scenarios if s.valid is False]
    if name is not None:
        named = [s for s in record.scenarios if s.name == name]
        if not named:
            ran = ", ".join(s.name for s in record.scenarios)
            raise UsageError(f"run {record.run_id} has no scenario {name}; it ran {ran}")
        broken = [s for s in named if s.valid is False]
        if not broken:
            raise UsageError(f"scenario {name} of run {record.run_id} broke no invariant "
                             f"(its verdict is {named[0].valid}): there is nothing to shrink")
    if not broken:
        raise UsageError(f"run {record.run_id} broke no invariant (its verdict is "
                         f"{record.valid}): there is nothing to shrink")
    return broken[0]


def broken_anomaly(scenario: ScenarioRecord) -> tuple[str, str]:
    """The checker and anomaly kind a shrunk schedule must still break: the first false
    verdict's first anomaly.

    Raises:
        UsageError: the scenario's false verdicts name no anomaly.
    """
    for checker, verdict in scenario.verdicts.items():
        if verdict.valid is False and verdict.anomalies:
            return checker, verdict.anomalies[0].kind
    raise UsageError(f"scenario {scenario.name} broke no invariant with a named anomaly")


class Replayer:
    """One target, open for many replays of a scenario's schedule (``async with``)."""

    def __init__(self, spec: ReplaySpec, base: Scenario, *, report_dir: Path) -> None:
        self.spec = spec
        self.base = base
        self.plan = spec.plan(base, report_dir)
        self.runs_count = 0
        self.last_explanation: str | None = None  # of the last run that broke the checker
        # (schedules that failed, replays they took to): how rare the failure is
        self.evidence = (0, 0)
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Replayer:
        from harness.targets.profile import load_profile

        profile = load_profile(self.plan.profile)
        try:
            self.session, self.provider, self.target, self.nemesis = \
                await self._stack.enter_async_context(open_target(self.plan, profile))
            self.params = self.spec.params.for_target(
                traits_of(self.session.profile, nemesis=self.nemesis))
            scratch = Path(self._stack.enter_context(tempfile.TemporaryDirectory()))
            self.writer = self._stack.enter_context(HistoryWriter(scratch / "history.jsonl"))
        except BaseException:
            await self._stack.aclose()  # whatever started stops, even a half-started stack
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    def record(self, *, checker: str, anomaly_kind: str) -> Recorded:
        """The scenario's schedule as it ran: the same steps, drawn from the same seed for
        the same target."""
        steps = list(self.base.generator(random.Random(self.params.seed), self.params))
        return recorded_from_steps(scenario=self.base.name, seed=self.params.seed,
                                   users=self.base.users(self.params), steps=steps,
                                   checker=checker, anomaly_kind=anomaly_kind)

    async def fails_once(self, recorded: Recorded, *, deadline_s: float,
                         writer: HistoryWriter | None = None) -> bool:
        """Run the schedule once, with fresh users; whether it broke the same checker with
        the same anomaly kind."""
        scenario = replay_scenario(self.base, recorded)
        self.runs_count += 1
        result = await run_scenario(scenario, self.params, session=self.session,
                                    provider=self.provider, writer=writer or self.writer,
                                    limits=self.plan.limits, deadline_s=deadline_s,
                                    nemesis=self.nemesis)
        verdicts = judge(scenario.adapted(self.params), result,
                         latency_ms_max=self.plan.limits.latency_ms_max)
        verdict = verdicts.get(recorded.checker)
        found = [] if verdict is None or verdict.valid is not False else [
            anomaly for anomaly in verdict.anomalies if anomaly.kind == recorded.anomaly_kind]
        if found:
            self.last_explanation = found[0].explanation
        return bool(found)

    async def failures(self, recorded: Recorded, *, runs: int, stop_at_first: bool,
                       deadline_s: float, writer: HistoryWriter | None = None
                       ) -> tuple[int, int]:
        """How many of up to ``runs`` runs failed, and how many ran."""
        failed = ran = 0
        for _ in range(runs):
            ran += 1
            if await self.fails_once(recorded, deadline_s=deadline_s, writer=writer):
                failed += 1
                if stop_at_first:
                    failures_count, replays_count = self.evidence
                    self.evidence = (failures_count + 1, replays_count + ran)
                    break
        return failed, ran


def replay_scenario(base: Scenario, recorded: Recorded) -> Scenario:
    """``base`` with its generator and users replaced by the recorded schedule's, judged
    by the one checker that broke."""
    steps = recorded.steps
    users = dict(recorded.users)
    return dataclasses.replace(base, users=lambda params: users,
                               generator=lambda rng, params: iter(steps),
                               checkers=(recorded.checker,), provokes=())


async def replay_schedule(spec: ReplaySpec, recorded: Recorded, *, runs: int,
                          report_dir: Path, time_limit_s: float = 600.0
                          ) -> tuple[int, int, str | None]:
    """Replay a recorded schedule up to ``runs`` times on ``spec``'s target, stopping at
    the first run that breaks its checker: (runs that broke it, runs, what it found).

    The parameters come from the schedule, not ``spec``: its seed, and as many ops in
    flight as its largest batch holds, so every batch goes out at once.
    """
    from scenarios import get_scenario

    widest = max((len(ops) for ops in recorded.batches()), default=1)
    spec = dataclasses.replace(spec, scenario=recorded.scenario, params=ScenarioParams(
        seed=recorded.seed, concurrency=min(DEFAULT_LIMITS.ops_in_flight_max, widest)))
    async with Replayer(spec, get_scenario(recorded.scenario),
                        report_dir=report_dir) as replayer:
        failed, ran = await replayer.failures(
            recorded, runs=runs, stop_at_first=True,
            deadline_s=time.monotonic() + time_limit_s)
        return failed, ran, replayer.last_explanation


@dataclass(frozen=True, slots=True, kw_only=True)
class Confirmation:
    """The final schedule's dedicated reruns."""

    failed_count: int
    runs_count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ShrinkOutcome:
    """Where a shrink ended and what it cost."""

    original: Recorded
    shrunk: Recorded
    candidates_count: int
    runs_count: int  # every replay, the search's and the confirmation's
    wall_s: float
    exhausted: bool  # no single batch or op could be removed
    stopped_by: str | None  # "time", "candidates", or None when the search ran out
    confirmation: Confirmation


async def shrink_recorded(replayer: Replayer, recorded: Recorded, *, bounds: ShrinkBounds,
                          say: Say, confirm_writer: HistoryWriter | None = None,
                          clock: Callable[[], float] = time.monotonic) -> ShrinkOutcome:
    """Shrink a schedule that fails, on the replayer's target.

    Raises:
        UsageError: the schedule as recorded did not fail in ``bounds.runs_max`` runs.
    """
    started_s = clock()
    deadline_s = started_s + bounds.time_limit_s
    failed, ran = await replayer.failures(recorded, runs=bounds.runs_max, stop_at_first=True,
                                          deadline_s=deadline_s)
    if not failed:
        raise UsageError(
            f"the schedule of {recorded.scenario} (seed {recorded.seed}, "
            f"{recorded.ops_count} ops) did not break {recorded.checker} "
            f"({recorded.anomaly_kind}) in {ran} replays: nothing to shrink")
    say(f"shrink: {recorded.scenario}: the recorded schedule of {recorded.ops_count} ops "
        f"breaks {recorded.checker} ({recorded.anomaly_kind}) on replay {ran}")
    best, candidates_count, exhausted, stopped_by = await _search(
        replayer, recorded, bounds=bounds, say=say, deadline_s=deadline_s, clock=clock)
    shrunk = recorded.with_batches(best)
    say(f"shrink: {shrunk.ops_count} ops left; confirming with {bounds.confirm_runs} runs")
    # The confirmation has its own time: every run is bounded by the op timeouts anyway.
    confirm_deadline_s = clock() + max(60.0, bounds.time_limit_s)
    failed, ran = await replayer.failures(shrunk, runs=bounds.confirm_runs,
                                          stop_at_first=False, deadline_s=confirm_deadline_s,
                                          writer=confirm_writer)
    return ShrinkOutcome(original=recorded, shrunk=shrunk, candidates_count=candidates_count,
                         runs_count=replayer.runs_count, wall_s=clock() - started_s,
                         exhausted=exhausted, stopped_by=stopped_by,
                         confirmation=Confirmation(failed_count=failed, runs_count=ran))


async def _search(replayer: Replayer, recorded: Recorded, *, bounds: ShrinkBounds, say: Say,
                  deadline_s: float, clock: Callable[[], float]
                  ) -> tuple[Groups[Op], int, bool, str | None]:
    # The flow works on op ids (ops hold dicts, which do not hash); ids are unique in a run.
    by_id = {op.id: op for ops in recorded.batches() for op in ops}

    def ops_of(groups: Groups[int]) -> Groups[Op]:
        return tuple(tuple(by_id[op_id] for op_id in group) for group in groups)

    ids = tuple(tuple(op.id for op in ops) for ops in recorded.batches())
    flow = shrink_flow(ids, candidates_max=bounds.candidates_max)
    best = ids
    asked_count = 0
    try:
        candidate = next(flow)
        while True:
            best = candidate.best
            asked_count += 1
            schedule = recorded.with_batches(ops_of(candidate.groups))
            try:
                if clock() >= deadline_s:
                    raise RunDeadlineExceeded("the search's time is up")
                failures_count, replays_count = replayer.evidence  # as of now, not at start
                runs = reruns_for(failures_count=failures_count,
                                  replays_to_fail_count=replays_count, runs_max=bounds.runs_max)
                failed, ran = await replayer.failures(
                    schedule, runs=runs, stop_at_first=True, deadline_s=deadline_s)
            except RunDeadlineExceeded:
                say(f"shrink: the time limit ({bounds.time_limit_s:g} s) ended the search")
                return ops_of(best), asked_count - 1, False, "time"
            say(f"shrink: candidate {asked_count}: {schedule.ops_count} ops "
                + (f"fail (replay {ran})" if failed else f"hold in {ran} replays")
                + f"; best {ops_count(best)} ops, "
                f"{clock() - deadline_s + bounds.time_limit_s:.0f} s")
            candidate = flow.send(bool(failed))
    except StopIteration as stop:
        result = stop.value
        stopped = None if result.exhausted else "candidates"
        return ops_of(result.groups), result.candidates_count, result.exhausted, stopped
