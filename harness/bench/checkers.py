"""The checkers' figures: cold and warm µs per op, ops/s and peak memory, per checker.

``bench_checkers`` builds seeded synthetic histories from a correct sequential model of
fans, who start with a balance, tipping each other (with refusals for funds and a share of
indeterminate ops whose effect the model decides by coin toss), then runs every checker
over them, one at a time in ``CHECKERS`` order, timing each:

- cold: the first pass over a freshly loaded input, nothing derived from it yet; each
  checker pays for what it derives first and shares (the op pairing, the account model);
- warm: a second pass over the same input, which reuses what the first derived: the
  difference is the shared work, the warm figure each checker's own;
- peak memory: what the checkers allocate in one more cold pass, traced (tracemalloc
  slows every line, so that pass is not timed).

Cold and warm alternate, ``reps`` times, and the medians are reported: the machines are
shared and noisy, never timed in tests. Run time per op should stay flat as the history
grows: the checkers are folds over it.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import time
import tracemalloc
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from harness.bench import BenchOptions, Part, register
from harness.checkers import CHECKERS, check_all
from harness.checkers.base import CheckInput
from harness.model import AccountState, Event, F, Kind, Observation, ProviderTruth

__all__ = ["CheckerFigures", "bench_checkers", "run", "synthetic_input"]

_FUNDING_TOKENS = 10_000
_INFO_PER_MILLE = 2
_USERS_COUNT = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckerFigures:
    """One history size: every checker, cold and warm (medians of the reps), and memory."""

    ops_count: int
    events_count: int
    cold_seconds: float
    warm_seconds: float
    cold_cpu_seconds: float  # the process's CPU time: what others' load on the machine hides
    peak_mib: float
    cold_seconds_by_checker: Mapping[str, float]  # in CHECKERS order
    warm_seconds_by_checker: Mapping[str, float]
    reps: int

    @property
    def cold_us_per_op(self) -> float:
        return self.cold_seconds * 1e6 / self.ops_count

    @property
    def cold_cpu_us_per_op(self) -> float:
        return self.cold_cpu_seconds * 1e6 / self.ops_count

    @property
    def warm_us_per_op(self) -> float:
        return self.warm_seconds * 1e6 / self.ops_count

    @property
    def cold_ops_per_s(self) -> float:
        return self.ops_count / self.cold_seconds if self.cold_seconds > 0 else 0.0

    @property
    def warm_ops_per_s(self) -> float:
        return self.ops_count / self.warm_seconds if self.warm_seconds > 0 else 0.0


def bench_checkers(sizes: Sequence[int], *, seed: int = 1, reps: int = 1,
                   trace_memory: bool = True) -> Iterator[CheckerFigures]:
    """Time every checker over a synthetic history of each size (in ops), cold then warm,
    ``reps`` times; then trace the peak memory of one more cold pass."""
    assert reps >= 1, reps
    for ops_count in sizes:
        assert 100 <= ops_count <= 5_000_000, ops_count
        inp = synthetic_input(ops_count, seed=seed)
        colds: list[dict[str, float]] = []
        warms: list[dict[str, float]] = []
        cold_cpus: list[float] = []
        for _ in range(reps):
            fresh = _fresh(inp)
            cpu_started = time.process_time()
            colds.append(_timed_pass(fresh))
            cold_cpus.append(time.process_time() - cpu_started)
            warms.append(_timed_pass(fresh))
        peak_bytes = _peak_bytes(_fresh(inp)) if trace_memory else 0
        yield CheckerFigures(
            ops_count=ops_count, events_count=len(inp.history),
            cold_seconds=statistics.median(sum(p.values()) for p in colds),
            warm_seconds=statistics.median(sum(p.values()) for p in warms),
            cold_cpu_seconds=statistics.median(cold_cpus),
            peak_mib=peak_bytes / 2**20,
            cold_seconds_by_checker={n: statistics.median(p[n] for p in colds) for n in CHECKERS},
            warm_seconds_by_checker={n: statistics.median(p[n] for p in warms) for n in CHECKERS},
            reps=reps)


def _fresh(inp: CheckInput) -> CheckInput:
    """The same input as if just loaded: a new record over the same events, nothing
    derived from it yet."""
    return dataclasses.replace(inp)


def _timed_pass(inp: CheckInput) -> dict[str, float]:
    """Seconds per checker, each run through ``check_all`` as a judge runs it."""
    seconds: dict[str, float] = {}
    for name in CHECKERS:
        started = time.perf_counter()
        verdict = check_all(inp, [name], raise_errors=True)[name]
        seconds[name] = time.perf_counter() - started
        assert verdict.valid is not False, f"a correct synthetic history broke {name}: {verdict}"
    return seconds


def _peak_bytes(inp: CheckInput) -> int:
    """What the checkers allocate at most during one pass (the input is not counted)."""
    tracemalloc.start()
    try:
        check_all(inp, raise_errors=True)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak_bytes


def synthetic_input(ops_count: int, *, seed: int) -> CheckInput:
    """A correct history of ``ops_count`` tips among funded fans, with its end state."""
    rng = random.Random(seed)
    users = [f"fan_{i}" for i in range(_USERS_COUNT)]
    balances = dict.fromkeys(users, _FUNDING_TOKENS)
    initial = Observation(accounts={user: AccountState(user=user, balance_tokens=balance)
                                    for user, balance in balances.items()})
    events: list[Event] = []
    clock_ns = 0
    for op_id in range(ops_count):
        sender, recipient = rng.sample(users, 2)
        amount = rng.randint(1, 400)
        value: dict[str, int | str | None] = {"sender": sender, "recipient": recipient,
                                              "amount_tokens": amount}
        process = op_id % 32
        clock_ns += 1_000
        events.append(Event(index=len(events), time_ns=clock_ns, process=process,
                            kind=Kind.INVOKE, f=F.TIP, op_id=op_id, value=value,
                            idempotency_key=f"k{op_id}"))
        kind, error, applied = _decide(rng, balances[sender] >= amount)
        if applied:
            balances[sender] -= amount
            balances[recipient] += amount
        done = {**value, "balance_tokens": balances[sender]} if kind == Kind.OK else value
        clock_ns += 1_000
        events.append(Event(index=len(events), time_ns=clock_ns, process=process, kind=kind,
                            f=F.TIP, op_id=op_id, value=done, idempotency_key=f"k{op_id}",
                            error=error, status_code=_STATUS[kind]))
    accounts = {user: AccountState(user=user, balance_tokens=balance, ledger_sum_tokens=balance)
                for user, balance in balances.items()}
    return CheckInput(history=events, observation=Observation(accounts=accounts),
                      truth=ProviderTruth(intents={}), initial=initial)


_STATUS = {Kind.OK: 201, Kind.FAIL: 402, Kind.INFO: None}


def _decide(rng: random.Random, affordable: bool) -> tuple[Kind, str | None, bool]:
    """The op's outcome: applied when affordable; an INFO's effect is a coin toss."""
    if rng.randrange(1000) < _INFO_PER_MILLE:
        return Kind.INFO, "read_timeout", affordable and rng.random() < 0.5
    if affordable:
        return Kind.OK, None, True
    return Kind.FAIL, "insufficient_funds", False


@register("checkers")
def run(options: BenchOptions) -> Part:
    """Every checker over histories of each size: cold and warm µs/op and ops/s, peak MiB,
    then what each checker costs, the slowest first."""
    if any(not 100 <= size <= 5_000_000 for size in options.ops):
        raise ValueError("checker history sizes go from 100 to 5000000 ops")
    figures = list(bench_checkers(options.ops, seed=options.seed, reps=options.reps))
    rows = [_row(f) for f in figures]
    table = [f"{'ops':>9} {'events':>9} {'cold us/op':>10} {'cold ops/s':>10} "
             f"{'warm us/op':>10} {'warm ops/s':>10} {'cold cpu us/op':>14} {'peak MiB':>9}"]
    table += [f"{f.ops_count:>9} {f.events_count:>9} {f.cold_us_per_op:>10.2f} "
              f"{f.cold_ops_per_s:>10,.0f} {f.warm_us_per_op:>10.2f} {f.warm_ops_per_s:>10,.0f} "
              f"{f.cold_cpu_us_per_op:>14.2f} {f.peak_mib:>9.1f}" for f in figures]
    table += _breakdown(figures)
    notes = [f"median of {options.reps} alternating cold and warm passes per size, seed "
             f"{options.seed}; cold: a freshly loaded input, each checker paying for what it "
             "derives first and shares (the pairing, the account model); warm: the same "
             "input again, sharing it; us/op and ops/s are wall clock, cold cpu the "
             "process's own CPU time (what the machine's other load does not inflate)"]
    return Part(name="checkers", rows=rows, table=table, notes=notes)


def _row(figures: CheckerFigures) -> dict[str, object]:
    ops = figures.ops_count
    return {
        "ops": ops, "events": figures.events_count, "reps": figures.reps,
        "cold_seconds": round(figures.cold_seconds, 4),
        "cold_us_per_op": round(figures.cold_us_per_op, 2),
        "cold_ops_per_s": round(figures.cold_ops_per_s),
        "cold_cpu_us_per_op": round(figures.cold_cpu_us_per_op, 2),
        "warm_seconds": round(figures.warm_seconds, 4),
        "warm_us_per_op": round(figures.warm_us_per_op, 2),
        "warm_ops_per_s": round(figures.warm_ops_per_s),
        "peak_mib": round(figures.peak_mib, 1),
        "checkers": {name: {"cold_us_per_op": round(cold * 1e6 / ops, 3),
                            "warm_us_per_op": round(figures.warm_seconds_by_checker[name]
                                                    * 1e6 / ops, 3)}
                     for name, cold in figures.cold_seconds_by_checker.items()},
    }


def _breakdown(figures: Sequence[CheckerFigures]) -> list[str]:
    """µs per op of each checker, cold/warm at each size, the costliest cold first."""
    if not figures:
        return []
    largest = figures[-1]
    names = sorted(CHECKERS, key=lambda n: -largest.cold_seconds_by_checker[n])
    lines = ["per checker, us/op cold / warm, the costliest first:",
             f"{'checker':<20}" + "".join(f"{f'{f.ops_count} ops':>18}" for f in figures)]
    for name in names:
        cells = "".join(
            f"{f'{f.cold_seconds_by_checker[name] * 1e6 / f.ops_count:.2f} / '}"
            f"{f.warm_seconds_by_checker[name] * 1e6 / f.ops_count:<6.2f}".rjust(18)
            for f in figures)
        lines.append(f"{name:<20}{cells}")
    return lines
