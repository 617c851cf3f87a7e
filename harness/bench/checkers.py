"""Benchmarks that print figures: never timed assertions (machines are shared and noisy).

``bench_checkers`` builds seeded synthetic histories from a correct sequential model of
fans, who start with a balance, tipping each other (with refusals for funds and a share of
indeterminate ops whose effect the model decides by coin toss), then times every checker
over them and records the peak memory the checkers allocate. Run time per op should stay flat as the
history grows: the checkers are one-pass folds.
"""

from __future__ import annotations

import random
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from harness.bench import BenchOptions, Part, register
from harness.checkers import check_all
from harness.checkers.base import CheckInput
from harness.model import AccountState, Event, F, Kind, Observation, ProviderTruth

__all__ = ["CheckerFigures", "bench_checkers", "run", "synthetic_input"]

_FUNDING_TOKENS = 10_000
_INFO_PER_MILLE = 2
_USERS_COUNT = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckerFigures:
    """One measurement: all checkers over one history."""

    ops_count: int
    events_count: int
    seconds: float
    peak_mib: float

    @property
    def us_per_op(self) -> float:
        return self.seconds * 1e6 / self.ops_count


def bench_checkers(sizes: Sequence[int], *, seed: int = 1,
                   trace_memory: bool = True) -> Iterator[CheckerFigures]:
    """Time ``check_all`` over a synthetic history of each size (in ops), then measure the
    peak memory the checkers allocate in a second, traced pass."""
    for ops_count in sizes:
        assert 100 <= ops_count <= 5_000_000, ops_count
        inp = synthetic_input(ops_count, seed=seed)
        started = time.perf_counter()  # timed without tracing: tracemalloc slows every line
        verdicts = check_all(inp, raise_errors=True)
        seconds = time.perf_counter() - started
        if trace_memory:
            tracemalloc.start()
            check_all(inp, raise_errors=True)
            _, peak_bytes = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        else:
            peak_bytes = 0
        broken = [name for name, verdict in verdicts.items() if verdict.valid is False]
        assert not broken, f"a correct synthetic history broke {broken}"
        yield CheckerFigures(ops_count=ops_count, events_count=len(inp.history),
                             seconds=seconds, peak_mib=peak_bytes / 2**20)


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
    """Every checker over histories of each size: seconds, µs per op, peak MiB."""
    if any(not 100 <= size <= 5_000_000 for size in options.ops):
        raise ValueError("checker history sizes go from 100 to 5000000 ops")
    rows = []
    table = [f"{'ops':>10} {'events':>10} {'seconds':>9} {'us/op':>7} {'peak MiB':>9}"]
    for figures in bench_checkers(options.ops, seed=options.seed):
        rows.append({"ops": figures.ops_count, "events": figures.events_count,
                     "seconds": round(figures.seconds, 3),
                     "us_per_op": round(figures.us_per_op, 1),
                     "peak_mib": round(figures.peak_mib, 1)})
        table.append(f"{figures.ops_count:>10} {figures.events_count:>10} "
                     f"{figures.seconds:>9.2f} {figures.us_per_op:>7.1f} "
                     f"{figures.peak_mib:>9.1f}")
    return Part(name="checkers", rows=rows, table=table)
