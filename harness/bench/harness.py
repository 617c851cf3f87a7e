"""The harness's own load against locust's FastHttpUser, side by side on one local stack.

For each of ``reps`` repetitions and each endpoint, interleaved, locust runs first (a
subprocess, ``locust -f _locustfile.py --headless``, ``concurrency`` users, no wait,
``duration_s``) and then the harness does as many ops at the same concurrency:

- ``tips``: every op a 1-token tip to one hot creator, each worker (each locust user)
  sending from a fan of its own. Ours is a real ``run_scenario``: a batch of tips over
  the runner's workers, history and all; its fans are provisioned and funded first, and
  only the batch is measured.
- ``healthz``: GET the health path, the transport alone: ``drive_async`` over the ops'
  connection pool from ``concurrency`` tasks, against locust's client doing the same.

Each side's figures are its op rate and its own process CPU time per op (ours from
``resource.getrusage`` around the batch, locust's from inside its process between
``test_start`` and ``test_stop``, so neither side is charged its start-up). The ratios
(ours over locust's rate; ours over locust's CPU per op) are the figures to read: the
machine is shared and noisy, and both sides see the same noise.

Our process also hosts the provider simulator, idle during these ops; the reference
service and PostgreSQL are child processes and charged to neither side.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.bench import BenchOptions, Part, register
from harness.errors import TokenchaosError, UsageError
from harness.history import HistoryWriter
from harness.limits import DEFAULT_LIMITS, Limits
from harness.model import Event, Kind, Outcome
from harness.protocol import Credentials, Flow, HttpRequest
from harness.runner import run_loop, run_scenario
from harness.scenario import Scenario, ScenarioParams
from harness.schedule import Batch, Pause, Step
from harness.targets.http_async import drive_async
from harness.targets.profile import Profile, load_profile
from harness.targets.session import TargetSession

__all__ = ["ENDPOINTS", "Measurement", "part_of", "run"]

ENDPOINTS = ("healthz", "tips")
_LOCUSTFILE = Path(__file__).with_name("_locustfile.py")
_LOCUST_FUND_TOKENS = 5_000  # each locust fan; tips are 1 token, so 5,000 tips each
_LOCUST_START_S_MAX = 60.0  # locust's start-up and stop, beyond its run time
_MARK = 0  # the Pause(ms=0) steps around the measured batch


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    """One side's figures for one endpoint in one repetition."""

    side: str  # "tokenchaos" or "locust"
    endpoint: str
    rep: int
    ops: int
    seconds: float
    cpu_s: float
    kinds: Mapping[str, int]  # completed ops by kind: ok, fail, info

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms_per_op(self) -> float:
        return self.cpu_s * 1000 / self.ops if self.ops else 0.0


@register("harness")
def run(options: BenchOptions) -> Part:
    """Measure, print and return the harness-against-locust figures."""
    concurrency = max(options.clients)
    limits = DEFAULT_LIMITS
    if concurrency > limits.ops_in_flight_max:
        raise UsageError(f"--clients {concurrency}: the harness part runs at most "
                         f"Limits.ops_in_flight_max = {limits.ops_in_flight_max} workers")
    measurements = run_loop(_bench(options, concurrency=concurrency, limits=limits))
    return part_of(measurements, concurrency=concurrency, duration_s=options.duration_s)


async def _bench(options: BenchOptions, *, concurrency: int,
                 limits: Limits) -> list[Measurement]:
    from harness.campaign import RunPlan, open_target

    setup = _tips_scenario("bench-harness-setup", fans_count=concurrency,
                           fund_tokens=_LOCUST_FUND_TOKENS, tips_count=0)
    plan = RunPlan(runs=((setup, ScenarioParams(seed=options.seed)),), suite=None,
                   limits=limits, command="tokenchaos bench --part harness")
    measurements: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="tokenchaos-bench-") as tmp:
        workdir = Path(tmp)
        async with open_target(plan, _profile()) as (session, provider, _, _):
            with HistoryWriter(workdir / "history.jsonl") as writer:
                keeping = _KeepingSession.of(session)
                await run_scenario(setup, ScenarioParams(seed=options.seed,
                                                         concurrency=concurrency),
                                   session=keeping, provider=provider, writer=writer,
                                   limits=limits)
                for rep in range(1, options.reps + 1):
                    for endpoint in ENDPOINTS:
                        theirs = await _locust(endpoint, rep, session=session,
                                               users=keeping.kept, limits=limits,
                                               concurrency=concurrency,
                                               duration_s=options.duration_s, workdir=workdir)
                        ops_count = max(theirs.ops, 2 * concurrency)
                        if endpoint == "healthz":
                            ours = await _ours_health(rep, session=session, limits=limits,
                                                      concurrency=concurrency,
                                                      ops_count=ops_count)
                        else:
                            ours = await _ours_tips(rep, session=session, provider=provider,
                                                    writer=writer, limits=limits,
                                                    concurrency=concurrency,
                                                    ops_count=ops_count, seed=options.seed)
                        measurements += [ours, theirs]
    return measurements


def _profile() -> Profile:
    """The reference profile, as a local run loads it."""
    return load_profile("reference")


# ---------------------------------------------------------------------------------------
# Our side.


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _ours_health(rep: int, *, session: TargetSession, limits: Limits,
                       concurrency: int, ops_count: int) -> Measurement:
    """``ops_count`` GETs of the health path over the ops' session, ``concurrency`` at once."""
    client = session.ops_client or session.client
    url = session.base_url + (session.profile.health_path or "/")
    kinds: Counter[str] = Counter()
    left = ops_count

    async def worker() -> None:
        nonlocal left
        while left > 0:  # bounded: ops_count in all
            left -= 1
            outcome = await drive_async(_health_flow(url), client, limits)
            kinds[outcome.kind.value] += 1

    started_s, cpu_s = time.monotonic(), _cpu_s()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return Measurement(side="tokenchaos", endpoint="healthz", rep=rep, ops=ops_count,
                       seconds=time.monotonic() - started_s, cpu_s=_cpu_s() - cpu_s,
                       kinds=dict(kinds))


def _health_flow(url: str) -> Flow:
    response = yield HttpRequest(method="GET", url=url)
    return Outcome(kind=Kind.OK if 200 <= response.status_code < 300 else Kind.FAIL,
                   status_code=response.status_code)


async def _ours_tips(rep: int, *, session: TargetSession, provider: Any,
                     writer: HistoryWriter, limits: Limits, concurrency: int,
                     ops_count: int, seed: int) -> Measurement:
    """A scenario of ``ops_count`` tips to the hot creator; only the batch is measured."""
    fund_tokens = -(-ops_count // concurrency) + 1
    scenario = _tips_scenario(f"bench-harness-tips-{rep}", fans_count=concurrency,
                              fund_tokens=fund_tokens, tips_count=ops_count)
    marks = _Marks()
    await run_scenario(scenario, ScenarioParams(seed=seed, concurrency=concurrency),
                       session=session, provider=provider, writer=writer, limits=limits,
                       progress=marks)
    if marks.cpu_s is None or marks.seconds is None:
        raise TokenchaosError("the tips batch of the harness bench never ran")
    return Measurement(side="tokenchaos", endpoint="tips", rep=rep, ops=ops_count,
                       seconds=marks.seconds, cpu_s=marks.cpu_s, kinds=dict(marks.kinds))


def _tips_scenario(name: str, *, fans_count: int, fund_tokens: int,
                   tips_count: int) -> Scenario:
    """Fans funded, then (between two marks) ``tips_count`` 1-token tips to one creator."""
    from scenarios._common import BASE_CHECKERS, OpFactory, fund, roster

    users = roster(fans=fans_count, creators=1)

    def generate(rng: Any, params: ScenarioParams) -> Iterator[Step]:
        ops = OpFactory.of(name, params)
        fans = [user for user, kind in users.items() if kind == "fan"]
        yield from fund(ops, fans, fund_tokens)
        if tips_count:
            yield Pause(ms=_MARK)
            yield Batch(ops=tuple(ops.tip(sender=fans[i % fans_count], recipient="creator_0",
                                          amount_tokens=1) for i in range(tips_count)))
            yield Pause(ms=_MARK)

    return Scenario(name=name, summary="the harness bench's tips", users=lambda _: users,
                    generator=generate, checkers=BASE_CHECKERS)


class _Marks:
    """A ``Progress`` that times the batch between the two ``Pause(0)`` marks."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.seconds: float | None = None
        self.cpu_s: float | None = None
        self._started: tuple[float, float] | None = None
        self._in_batch = False

    def scenario_started(self, name: str, *, seed: int, users_count: int) -> None:
        pass

    def step_started(self, description: str) -> None:
        if description != f"pause {_MARK} ms":
            return
        if self._started is None:
            self._started = (time.monotonic(), _cpu_s())
            self._in_batch = True
        elif self._in_batch:
            self.seconds = time.monotonic() - self._started[0]
            self.cpu_s = _cpu_s() - self._started[1]
            self._in_batch = False

    def op_completed(self, event: Event) -> None:
        if self._in_batch:
            self.kinds[event.kind.value] += 1

    def scenario_finished(self, name: str, *, stats: Mapping[str, int | str]) -> None:
        pass


@dataclass(kw_only=True)
class _KeepingSession(TargetSession):
    """A session that keeps the credentials it provisioned, for the locust side."""

    kept: dict[str, Credentials] = field(default_factory=dict)

    @classmethod
    def of(cls, session: TargetSession) -> _KeepingSession:
        return cls(**{f.name: getattr(session, f.name) for f in fields(session)})

    async def provision(self, users: Mapping[str, str], *,
                        concurrency: int) -> dict[str, Credentials]:
        credentials = await super().provision(users, concurrency=concurrency)
        self.kept.update(credentials)
        return credentials


# ---------------------------------------------------------------------------------------
# Locust's side.


async def _locust(endpoint: str, rep: int, *, session: TargetSession,
                  users: Mapping[str, Credentials], limits: Limits, concurrency: int,
                  duration_s: float, workdir: Path) -> Measurement:
    """Run locust headless for ``duration_s``; its figures, as its own process measured."""
    out = workdir / f"locust-{endpoint}-{rep}.json"
    spec = workdir / f"locust-{endpoint}-{rep}-spec.json"
    spec.write_text(json.dumps({
        "endpoint": endpoint, "profile": "reference", "target_url": session.base_url,
        "health_path": session.profile.health_path or "/", "hot": "creator_0",
        "users": {name: [c.target_id, c.token] for name, c in users.items()},
        "response_body_bytes_max": limits.response_body_bytes_max, "out": str(out)}))
    # Locust puts its locustfile's directory first on sys.path, where this module's name
    # would hide the harness package: it runs a copy from the work directory.
    locustfile = workdir / "tokenchaos_bench_locustfile.py"
    if not locustfile.is_file():
        shutil.copyfile(_LOCUSTFILE, locustfile)
    argv = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
            "--users", str(concurrency), "--spawn-rate", str(concurrency * 100),
            "--run-time", f"{max(1, round(duration_s))}s", "--host", session.base_url,
            "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "0"]
    env = {**os.environ, "TOKENCHAOS_BENCH_SPEC": str(spec)}
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(duration_s + _LOCUST_START_S_MAX):
            _, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise TokenchaosError(f"locust did not end within {duration_s + _LOCUST_START_S_MAX:g}"
                              " s; is the load extra installed (pip install "
                              "'tokenchaos[load]')?") from None
    if not out.is_file():
        tail = stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise TokenchaosError(f"locust exited {process.returncode} without figures: "
                              + " | ".join(tail))
    figures = json.loads(out.read_text())
    return Measurement(side="locust", endpoint=endpoint, rep=rep, ops=int(figures["ops"]),
                       seconds=float(figures["seconds"]), cpu_s=float(figures["cpu_s"]),
                       kinds={str(k): int(v) for k, v in figures["kinds"].items()})


# ---------------------------------------------------------------------------------------
# The table.


def part_of(measurements: list[Measurement], *, concurrency: int, duration_s: float) -> Part:
    rows: list[dict[str, Any]] = []
    table = [f"{'endpoint':8} {'rep':>3} {'ours ops/s':>10} {'locust ops/s':>12} "
             f"{'ratio':>6} {'ours CPU ms/op':>14} {'locust CPU ms/op':>16} {'CPU ratio':>9}"]
    pairs = list(zip(measurements[0::2], measurements[1::2], strict=True))
    for ours, theirs in pairs:
        assert (ours.side, theirs.side) == ("tokenchaos", "locust")
        ratio = ours.ops_per_s / theirs.ops_per_s if theirs.ops_per_s else None
        cpu_ratio = (ours.cpu_ms_per_op / theirs.cpu_ms_per_op if theirs.cpu_ms_per_op
                     else None)
        rows.append({"endpoint": ours.endpoint, "rep": ours.rep, "concurrency": concurrency,
                     "ours": _json(ours), "locust": _json(theirs), "ratio": ratio,
                     "cpu_ratio": cpu_ratio})
        table.append(f"{ours.endpoint:8} {ours.rep:>3} {ours.ops_per_s:>10.0f} "
                     f"{theirs.ops_per_s:>12.0f} {_x(ratio):>6} {ours.cpu_ms_per_op:>14.3f} "
                     f"{theirs.cpu_ms_per_op:>16.3f} {_x(cpu_ratio):>9}")
    notes = [f"{concurrency} workers (locust users) each side, locust first, then the same "
             f"number of ops through the harness; locust runs {duration_s:g} s a turn; "
             "ratio = ours / locust's ops/s (>= 1: ours is as fast), CPU ratio = ours / "
             "locust's CPU per op (< 1: ours costs less)"]
    for endpoint in ENDPOINTS:
        ratios = [r["ratio"] for r in rows if r["endpoint"] == endpoint and r["ratio"]]
        cpu = [r["cpu_ratio"] for r in rows if r["endpoint"] == endpoint and r["cpu_ratio"]]
        if ratios and cpu:
            notes.append(f"{endpoint}: median ratio {statistics.median(ratios):.2f}x, median "
                         f"CPU ratio {statistics.median(cpu):.2f}x over {len(ratios)} reps")
    refused = [f"{m.side} {m.endpoint} rep {m.rep}: {m.kinds}" for m in measurements
               if set(m.kinds) - {Kind.OK.value}]
    if refused:
        notes.append("not every op was OK (rates then compare different work): "
                     + "; ".join(refused))
    return Part(name="harness", rows=rows, table=table, notes=notes)


def _json(measurement: Measurement) -> dict[str, Any]:
    return {"ops": measurement.ops, "seconds": round(measurement.seconds, 3),
            "cpu_s": round(measurement.cpu_s, 3),
            "ops_per_s": round(measurement.ops_per_s, 1),
            "cpu_ms_per_op": round(measurement.cpu_ms_per_op, 4),
            "kinds": dict(measurement.kinds)}


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"
