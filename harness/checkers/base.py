"""The checkers' shared contract: ``CheckInput``, ``Checker``, op pairing, sampling, prose.

Rule 1: a checker is a pure function ``(CheckInput) -> Verdict``. Nothing in
``harness/checkers/`` does I/O, reads a clock or draws randomness, and nothing here
imports httpx, psycopg, asyncio, random or time; a test enforces it.

Rule 2: a checker folds over the history a fixed number of times, keeping memory bounded
by the accounts, intents, idempotency keys and indeterminate ops, never by the number of
successful ops.

What several checkers derive from the input alone (the pairs, the uses of each key, the
account model) is built once per input, kept with it and shared (``memoised``). The pairs
are one small record per op, an index of the history kept beside it and freed with it; a
checker's own state stays within Rule 2.

This module holds what every checker needs: the input record, pairing of invocations with
their completions (``pairs``, shared as ``op_pairs``), the uses of each idempotency key
(``key_uses``), Jepsen's first/worst/last anomaly sampling (``Sampler``),
the tri-state conclusion (``conclude``), small readers of op values, and the phrases that
name ops in anomaly prose ("tip #812 (fan_0 → creator_0, 300 tokens)").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from math import gcd
from typing import TypeVar, cast

from harness.fees import NO_FEES, Fees
from harness.model import (
    Anomaly,
    Event,
    F,
    FaultWindow,
    Kind,
    Observation,
    ProviderTruth,
    Validity,
    Value,
    Verdict,
)

__all__ = [
    "REPLAYED",
    "CheckInput",
    "Checker",
    "OpPair",
    "Sampler",
    "conclude",
    "describe_op",
    "fault_during",
    "initial_account",
    "initial_net_tokens",
    "is_replay",
    "key_uses",
    "memoised",
    "op_pairs",
    "pairs",
    "plural",
    "reaches",
    "value_int",
    "value_str",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckInput:
    """Everything a checker may look at: the history, the end state, the provider's truth.

    ``initial`` is the state before the run (``None``: every account started at zero).
    ``provokes`` lists the coverage tags the scenario must provoke (``coverage`` only).
    ``latency_ms_max`` is the user's latency bound (``errors`` only); ``None``, the default,
    judges no latency: slowness is a performance finding, not a broken invariant.
    ``faults`` are the faults injected during the scenario, on the history's clock: what
    happens inside one (a 5xx, a timeout) is excused by the checkers that judge answers,
    and ``durability`` judges what survived them.
    """

    history: Sequence[Event]
    observation: Observation | None  # end state at quiescence (None: never observed)
    truth: ProviderTruth | None  # None when no provider truth was available
    initial: Observation | None = None  # balances before the run (None = all zero)
    latency_ms_max: int | None = None  # the user's latency bound; None: not judged
    provokes: tuple[str, ...] = ()  # coverage tags the scenario must provoke
    faults: tuple[FaultWindow, ...] = ()  # faults injected during the scenario, in order
    fees: Fees = NO_FEES  # the fees the target takes on transfers (its profile's [fees])
    # What several checkers derive from the input alone (the op pairing, the account
    # model), built by the first that needs it and shared (``memoised``): not part of the
    # input's value, and a copy (``dataclasses.replace``) starts without it.
    _memo: dict[str, tuple[int, object]] = field(default_factory=dict, init=False,
                                                 repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.latency_ms_max is not None:
            assert self.latency_ms_max >= 1, self.latency_ms_max


_Derived = TypeVar("_Derived")


def memoised(inp: CheckInput, name: str, build: Callable[[CheckInput], _Derived]) -> _Derived:
    """``build(inp)``, computed once per input and shared by every checker that asks.

    What is kept is a function of the input alone, so sharing it changes no verdict. It is
    keyed by the history's length too: a history that grew since is derived again.
    """
    held = inp._memo.get(name)
    if held is not None and held[0] == len(inp.history):
        return cast(_Derived, held[1])
    derived = build(inp)
    inp._memo[name] = (len(inp.history), derived)
    return derived


Checker = Callable[[CheckInput], Verdict]


# ---------------------------------------------------------------------------------------
# Pairing invocations with completions.


@dataclass(frozen=True, slots=True)
class OpPair:
    """One op: its invocation and its completion (``None`` if the history ends first).

    Not keyword-only, unlike the model's records: the pairing makes one per op, and
    ``OpPair(invoke, completion)`` costs half what the keyword call does (the shared
    pairing goes further, ``_pair_history``).
    """
    invoke: Event
    completion: Event | None

    @property
    def kind(self) -> Kind:
        """OK, FAIL or INFO; an op that never completed is indeterminate, as in Jepsen."""
        return Kind.INFO if self.completion is None else self.completion.kind

    @property
    def f(self) -> F:
        return self.invoke.f

    @property
    def value(self) -> Value:
        """The completion's value (arguments merged with results), else the arguments."""
        return self.invoke.value if self.completion is None else self.completion.value

    @property
    def index(self) -> int:
        """The op's name in prose: the history index of its invocation."""
        return self.invoke.index

    @property
    def event_indexes(self) -> tuple[int, ...]:
        if self.completion is None:
            return (self.invoke.index,)
        return (self.invoke.index, self.completion.index)

    @property
    def error(self) -> str | None:
        return None if self.completion is None else self.completion.error

    @property
    def status_code(self) -> int | None:
        return None if self.completion is None else self.completion.status_code


def pairs(history: Sequence[Event]) -> Iterator[OpPair]:
    """Yield every op as its completion arrives, then the never-completed ones.

    Memory is bounded by the ops outstanding at once, not by the history.
    """
    outstanding: dict[int, Event] = {}
    for event in history:
        if event.kind == Kind.INVOKE:
            assert event.op_id not in outstanding, f"op {event.op_id} invoked twice"
            outstanding[event.op_id] = event
            continue
        invoke = outstanding.pop(event.op_id, None)
        assert invoke is not None, f"completion #{event.index} of op {event.op_id} has no invoke"
        assert invoke.f == event.f, (invoke.f, event.f)
        yield OpPair(invoke=invoke, completion=event)
    for invoke in outstanding.values():
        yield OpPair(invoke=invoke, completion=None)


# The setters of OpPair's two slots (``_pair_history``).
_SET_INVOKE: Callable[[OpPair, Event], None] = OpPair.__dict__["invoke"].__set__
_SET_COMPLETION: Callable[[OpPair, Event | None], None] = OpPair.__dict__["completion"].__set__


def op_pairs(inp: CheckInput) -> Sequence[OpPair]:
    """``pairs(inp.history)``, paired once per input and shared by the checkers.

    Each checker used to pair the history again; now the first pass builds the pairs and
    the others read them. They are an index of the input (one per op, each two references
    into the history), not a checker's state: a checker still keeps no more than its
    accounts, keys and indeterminate ops.
    """
    return memoised(inp, "pairing", _pair_history)[0]


def key_uses(inp: CheckInput) -> Mapping[str, int]:
    """How many invocations carry each idempotency key (its text, whatever the op or the
    sender), counted once per input, in the pass that pairs it, and shared.

    A key sent once can be no retry, no reuse and no key of two accounts: the checkers
    that group ops by key skip it.
    """
    return memoised(inp, "pairing", _pair_history)[1]


def _pair_history(inp: CheckInput) -> tuple[list[OpPair], dict[str, int]]:
    """``list(pairs(inp.history))`` and the uses of each key, as one loop (a test checks
    that they agree with the pairs and a count over them).

    Each pair is made by its slots' own setters: a frozen dataclass's ``__init__`` sets
    each field through ``object.__setattr__``, more than twice the cost, for the same
    record (equal, and as immutable afterwards).
    """
    outstanding: dict[int, Event] = {}
    result: list[OpPair] = []
    uses: dict[str, int] = {}
    append, pop, count, invoke_kind = result.append, outstanding.pop, uses.get, Kind.INVOKE
    make, set_invoke, set_completion = object.__new__, _SET_INVOKE, _SET_COMPLETION
    for event in inp.history:
        if event.kind == invoke_kind:
            assert event.op_id not in outstanding, f"op {event.op_id} invoked twice"
            outstanding[event.op_id] = event
            key = event.idempotency_key
            if key is not None:
                uses[key] = count(key, 0) + 1
            continue
        invoke = pop(event.op_id, None)
        assert invoke is not None, f"completion #{event.index} of op {event.op_id} has no invoke"
        assert invoke.f == event.f, (invoke.f, event.f)
        pair = make(OpPair)
        set_invoke(pair, invoke)
        set_completion(pair, event)
        append(pair)
    for invoke in outstanding.values():
        append(OpPair(invoke, None))
    return result, uses


def fault_during(faults: Sequence[FaultWindow], pair: OpPair) -> FaultWindow | None:
    """The first fault whose window (injection to recovery) overlaps the op, or None.

    An op that never completed is taken to last to the end of time: it was still in
    flight when the history ended.
    """
    start_ns = pair.invoke.time_ns
    end_ns = pair.completion.time_ns if pair.completion is not None else _END_OF_TIME_NS
    for window in faults:
        if window.covers(start_ns, end_ns):
            return window
    return None


_END_OF_TIME_NS = 1 << 62


# ---------------------------------------------------------------------------------------
# Reading op values.

REPLAYED = "replayed"  # an OK's value field: 1 when the profile's replay rule matched


def value_int(value: Value, key: str, default: int = 0) -> int:
    """An integer field of an op value (``default`` when absent or not an int)."""
    item = value.get(key)
    if isinstance(item, bool) or not isinstance(item, int):
        return default
    return item


def value_str(value: Value, key: str) -> str | None:
    """A string field of an op value, or ``None``."""
    item = value.get(key)
    return item if isinstance(item, str) else None


def is_replay(completion: Event | None) -> bool:
    """Whether an OK completion was recognised as a replay (the first answer again)."""
    return (completion is not None and completion.kind == Kind.OK
            and value_int(completion.value, REPLAYED) == 1)


def initial_account(initial: Observation | None, user: str) -> tuple[int, int]:
    """(balance, debt) of ``user`` before the run; zero when unknown."""
    if initial is None:
        return (0, 0)
    account = initial.accounts.get(user)
    if account is None:
        return (0, 0)
    return (account.balance_tokens, account.debt_tokens)


def initial_net_tokens(initial: Observation | None, user: str) -> int:
    """``balance − debt`` of ``user`` before the run."""
    balance_tokens, debt_tokens = initial_account(initial, user)
    return balance_tokens - debt_tokens


# ---------------------------------------------------------------------------------------
# Prose.


def plural(count: int, noun: str) -> str:
    """``1 tip``, ``2 tips``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def describe_op(f: F, index: int, value: Value) -> str:
    """Name an op the way anomaly prose does: ``tip #812 (fan_0 → creator_0, 300 tokens)``."""
    amount = value_int(value, "amount_tokens")
    describe = _DESCRIBERS.get(f)
    if describe is None:
        return f"{f} #{index}"
    return describe(index, value, amount)


def _describe_tip(index: int, value: Value, amount: int) -> str:
    return (f"tip #{index} ({value_str(value, 'sender')} → {value_str(value, 'recipient')}, "
            f"{amount} tokens)")


def _describe_charge(index: int, value: Value, amount: int) -> str:
    return (f"call charge #{index} ({value_str(value, 'user')} → {value_str(value, 'creator')}, "
            f"call {value_str(value, 'call')} minute {value_int(value, 'minute')}, "
            f"{amount} tokens)")


def _describe_purchase(index: int, value: Value, amount: int) -> str:
    return (f"purchase #{index} ({value_str(value, 'purchase')} by {value_str(value, 'user')}, "
            f"{amount} tokens)")


def _describe_read(index: int, value: Value, amount: int) -> str:
    return f"read #{index} of {value_str(value, 'user')}"


def _describe_call_open(index: int, value: Value, amount: int) -> str:
    return (f"call open #{index} ({value_str(value, 'user')} → {value_str(value, 'creator')}, "
            f"call {value_str(value, 'call')})")


def _describe_call_end(index: int, value: Value, amount: int) -> str:
    return f"call end #{index} (call {value_str(value, 'call')})"


def _describe_webhook(index: int, value: Value, amount: int) -> str:
    return (f"webhook #{index} ({value_str(value, 'variant')} {value_str(value, 'event_type')}"
            f" for {value_str(value, 'purchase') or 'a fabricated intent'})")


def _describe_provider(index: int, value: Value, amount: int) -> str:
    target = value_str(value, "purchase") or value_str(value, "dispute")
    return f"#{index} (on {target})"


_DESCRIBERS: Mapping[F, Callable[[int, Value, int], str]] = {
    F.TIP: _describe_tip,
    F.CALL_CHARGE: _describe_charge,
    F.PURCHASE: _describe_purchase,
    F.READ_BALANCE: _describe_read,
    F.CALL_OPEN: _describe_call_open,
    F.CALL_END: _describe_call_end,
    F.WEBHOOK: _describe_webhook,
    F.REFUND: lambda i, v, a: "refund " + _describe_provider(i, v, a),
    F.AUTHENTICATE: lambda i, v, a: "authentication " + _describe_provider(i, v, a),
    F.DISPUTE_OPEN: lambda i, v, a: "dispute " + _describe_provider(i, v, a),
    F.DISPUTE_CLOSE: lambda i, v, a: "dispute close " + _describe_provider(i, v, a),
}


# ---------------------------------------------------------------------------------------
# Sampling and conclusions.


@dataclass(slots=True)
class _Samples:
    first: Anomaly
    worst: Anomaly
    worst_badness: int
    last: Anomaly


@dataclass(slots=True)
class Sampler:
    """Keep Jepsen's first, worst and last anomaly of each kind; count them all.

    ``badness`` ranks anomalies of one kind (a bigger discrepancy is worse); the totals per
    kind end up in the verdict's counts, so the samples stay small however long the run.
    """

    _samples: dict[str, _Samples] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)

    def add(self, anomaly: Anomaly, *, badness: int = 0) -> None:
        self.totals[anomaly.kind] = self.totals.get(anomaly.kind, 0) + 1
        samples = self._samples.get(anomaly.kind)
        if samples is None:
            self._samples[anomaly.kind] = _Samples(anomaly, anomaly, badness, anomaly)
            return
        if badness > samples.worst_badness:
            samples.worst = anomaly
            samples.worst_badness = badness
        samples.last = anomaly

    def __bool__(self) -> bool:
        return bool(self._samples)

    def merge(self, later: Sampler) -> None:
        """Take in the samples and totals of ``later``, whose anomalies came after ours."""
        for kind, total in later.totals.items():
            self.totals[kind] = self.totals.get(kind, 0) + total
        for kind, theirs in later._samples.items():
            ours = self._samples.get(kind)
            if ours is None:
                self._samples[kind] = _Samples(theirs.first, theirs.worst, theirs.worst_badness,
                                               theirs.last)
                continue
            if theirs.worst_badness > ours.worst_badness:
                ours.worst, ours.worst_badness = theirs.worst, theirs.worst_badness
            ours.last = theirs.last

    def anomalies(self) -> tuple[Anomaly, ...]:
        """First, worst and last of each kind, without repeats, kinds in order of appearance."""
        result: list[Anomaly] = []
        for samples in self._samples.values():
            for anomaly in (samples.first, samples.worst, samples.last):
                if not any(anomaly is kept for kept in result):
                    result.append(anomaly)
        return tuple(result)


def conclude(sampler: Sampler, counts: Mapping[str, int], *, checked: bool,
             unknown_note: str | None = None, note: str | None = None) -> Verdict:
    """The tri-state verdict: anomalies → False; nothing checked or undecided → "unknown".

    Args:
        sampler: the anomalies found.
        counts: the checker's own count keys; the anomaly totals per kind are added.
        checked: whether anything at all was checked (else the verdict is "unknown").
        unknown_note: set when part of the check could not be decided; makes a verdict
            without anomalies "unknown" and says why.
        note: a remark kept whatever the validity.
    """
    merged = dict(counts)
    for kind, total in sampler.totals.items():
        merged[kind] = merged.get(kind, 0) + total
    if not checked and not unknown_note:
        unknown_note = "nothing to check"
    notes = [text for text in (unknown_note, note) if text]
    valid: Validity
    if sampler:
        valid = False
    elif not checked or unknown_note:
        valid = "unknown"
    else:
        valid = True
    return Verdict(valid=valid, counts=merged, anomalies=sampler.anomalies(),
                   note="; ".join(notes) or None)


# ---------------------------------------------------------------------------------------
# Subset sums.

SUBSET_SUM_BITS_MAX = 1 << 22  # widest bitset a subset-sum check builds (512 KiB)
SUBSET_SUMS_MAX = 1 << 16  # distinct sums the set-based fallback keeps


def reaches(deltas: Sequence[int], low: int, high: int) -> bool | None:
    """Whether some subset of ``deltas`` sums into ``[low, high]``.

    A bitset dynamic programme over the reachable sums, after dividing by the deltas'
    common divisor; when the sums span more than ``SUBSET_SUM_BITS_MAX`` values, a set of
    the distinct sums instead, up to ``SUBSET_SUMS_MAX`` of them. Returns ``None`` when
    both would be too big and only the interval test was possible (and passed).
    """
    if low > high:
        return False
    items = [d for d in deltas if d != 0]
    negative = sum(d for d in items if d < 0)
    positive = sum(d for d in items if d > 0)
    if high < negative or low > positive:
        return False
    if not items:
        return low <= 0 <= high
    divisor = 0
    for d in items:
        divisor = gcd(divisor, abs(d))
    low = -((-low) // divisor)  # ceiling
    high = high // divisor
    if low > high:
        return False
    negative //= divisor
    positive //= divisor
    if positive - negative + 1 > SUBSET_SUM_BITS_MAX:
        return _reaches_by_set([d // divisor for d in items], low, high)
    bits = 1 << -negative
    for d in items:
        step = d // divisor
        bits |= (bits << step) if step > 0 else (bits >> -step)
    low_bit = max(low, negative) - negative
    high_bit = min(high, positive) - negative
    if low_bit > high_bit:
        return False
    return (bits >> low_bit) & ((1 << (high_bit - low_bit + 1)) - 1) != 0


def _reaches_by_set(items: Sequence[int], low: int, high: int) -> bool | None:
    """The subset-sum test over a set of distinct sums, or ``None`` past the cap."""
    sums = {0}
    for d in items:
        sums |= {s + d for s in sums}
        if len(sums) > SUBSET_SUMS_MAX:
            return None
    return any(low <= s <= high for s in sums)
