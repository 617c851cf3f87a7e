"""What the report plots, derived from a history: op spans, throughput, latency, supply.

Each function is one pass over the events (or the spans) and returns plain numbers for
``svg.py`` to draw. Times come out in seconds since ``t0_ns``, on the history's clock.

The token supply (total balance minus total debt) is derived as a correct service would
have it: an intent contributes its minted tokens from its first acknowledged
``payment_intent.succeeded`` delivery on, less what acknowledged ``charge.refunded`` and
dispute deliveries take back (``floor(t * R / a)`` for refunds, the rest for a dispute,
returned when the dispute is won). It is a picture, not a checker: checkers judge.

Nothing here reads files, the clock, or renders markup.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from operator import attrgetter
from typing import NamedTuple

from harness.model import Event, IntentTruth, Kind, Observation, ProviderTruth, Value
from harness.report.svg import BarState, downsample_points

__all__ = [
    "OpSpan",
    "OpSummary",
    "balance_reads",
    "latency_by_f",
    "op_spans",
    "op_summaries",
    "supply_from_history",
    "throughput_by_f",
]

_NS_PER_S = 1_000_000_000
_STATES: dict[Kind, BarState] = {Kind.OK: "ok", Kind.FAIL: "fail", Kind.INFO: "info"}


class OpSpan(NamedTuple):
    """One op from its invoke to its completion (``end_ns`` None: it never completed).

    A named tuple rather than a frozen dataclass: a report builds one per op, a million
    of them for a long run, and tuples are several times cheaper to make.
    """

    op_id: int
    f: str
    process: int
    invoke_index: int
    start_ns: int
    completion_index: int | None
    end_ns: int | None
    state: BarState  # "ok" | "fail" | "info" | "open" (never completed)
    value: Value  # the completion's value when there is one, else the invoke's
    error: str | None = None
    status_code: int | None = None

    @property
    def latency_ms(self) -> float | None:
        return None if self.end_ns is None else (self.end_ns - self.start_ns) / 1e6


def op_spans(events: Iterable[Event]) -> list[OpSpan]:
    """Pair every invoke with its completion, sorted by invoke (history indexes follow time)."""
    invokes: dict[int, Event] = {}
    spans: list[OpSpan] = []
    invoke_kind = Kind.INVOKE
    for event in events:  # the hot loop of a large report: positional, no str() of enums
        if event.kind is invoke_kind:
            invokes[event.op_id] = event
            continue
        invoke = invokes.pop(event.op_id, None)
        if invoke is None:
            continue  # a completion whose invoke is outside this slice of history
        spans.append(OpSpan(event.op_id, event.f, invoke.process, invoke.index, invoke.time_ns,
                            event.index, event.time_ns, _STATES[event.kind], event.value,
                            event.error, event.status_code))
    for invoke in invokes.values():
        spans.append(OpSpan(op_id=invoke.op_id, f=invoke.f, process=invoke.process,
                            invoke_index=invoke.index, start_ns=invoke.time_ns,
                            completion_index=None, end_ns=None, state="open",
                            value=invoke.value))
    spans.sort(key=attrgetter("invoke_index"))
    return spans


class OpSummary(NamedTuple):
    """How the ops of one kind ended, and how long they took."""

    f: str
    ops_count: int
    ok_count: int
    fail_count: int
    info_count: int
    open_count: int
    latency_ms_p50: float | None  # None: no op of this kind completed
    latency_ms_p99: float | None
    latency_ms_max: float | None
    errors: tuple[tuple[str, int], ...]  # the most frequent error codes, most frequent first


def op_summaries(spans: Sequence[OpSpan], *, errors_max: int = 3) -> list[OpSummary]:
    """One summary per op kind, sorted by kind."""
    states: defaultdict[str, Counter[str]] = defaultdict(Counter)
    latencies: defaultdict[str, list[float]] = defaultdict(list)
    errors: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for span in spans:
        states[span.f][span.state] += 1
        if span.end_ns is not None:
            latencies[span.f].append((span.end_ns - span.start_ns) / 1e6)
        if span.error:
            errors[span.f][span.error] += 1
    summaries = []
    for f in sorted(states):
        ordered = sorted(latencies[f])
        summaries.append(OpSummary(
            f=f, ops_count=sum(states[f].values()), ok_count=states[f]["ok"],
            fail_count=states[f]["fail"], info_count=states[f]["info"],
            open_count=states[f]["open"], latency_ms_p50=_quantile(ordered, 0.5),
            latency_ms_p99=_quantile(ordered, 0.99),
            latency_ms_max=ordered[-1] if ordered else None,
            errors=tuple(errors[f].most_common(errors_max))))
    return summaries


def _quantile(ordered: Sequence[float], q: float) -> float | None:
    """The nearest-rank quantile of sorted values."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def throughput_by_f(spans: Sequence[OpSpan], *, t0_ns: int, t1_ns: int,
                    buckets_count: int = 60) -> dict[str, list[tuple[float, float]]]:
    """Completions per second of each op kind, in ``buckets_count`` equal slices of time.

    Returns:
        op kind -> [(bucket middle in s since t0, completions per s)], every bucket present.
    """
    assert buckets_count >= 1, buckets_count
    span_ns = max(t1_ns - t0_ns, 1)
    bucket_ns = max(span_ns / buckets_count, 1.0)
    counts: dict[str, list[int]] = {}
    last = buckets_count - 1
    for span in spans:
        if span.end_ns is None:
            continue
        row = counts.get(span.f)
        if row is None:
            row = counts[span.f] = [0] * buckets_count
        bucket = int((span.end_ns - t0_ns) / bucket_ns)
        row[0 if bucket < 0 else last if bucket > last else bucket] += 1
    bucket_s = bucket_ns / _NS_PER_S
    return {f: [((i + 0.5) * bucket_s, n / bucket_s) for i, n in enumerate(row)]
            for f, row in sorted(counts.items())}


def latency_by_f(spans: Sequence[OpSpan], *, t0_ns: int, points_max: int = 4_000,
                 ) -> dict[str, list[tuple[float, float]]]:
    """(invoke time in s since t0, latency in ms) of every completed op, per op kind.

    Each kind keeps at most ``points_max`` points: its slowest tenth, then an even stride.
    """
    points: defaultdict[str, list[tuple[float, float]]] = defaultdict(list)
    for span in spans:
        if span.end_ns is not None:
            points[span.f].append(
                ((span.start_ns - t0_ns) / _NS_PER_S, (span.end_ns - span.start_ns) / 1e6))
    return {f: downsample_points(p, points_max) for f, p in sorted(points.items())}


def balance_reads(spans: Sequence[OpSpan], *, t0_ns: int,
                  ) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Every acknowledged ``read_balance``: (s since t0, balance) and (s since t0, debt > 0)."""
    balances: list[tuple[float, float]] = []
    debts: list[tuple[float, float]] = []
    for span in spans:
        if span.f != "read_balance" or span.state != "ok" or span.end_ns is None:
            continue
        t_s = (span.end_ns - t0_ns) / _NS_PER_S
        balance = span.value.get("balance_tokens")
        debt = span.value.get("debt_tokens")
        if isinstance(balance, int):
            balances.append((t_s, float(balance)))
        if isinstance(debt, int) and debt > 0:
            debts.append((t_s, float(debt)))
    return balances, debts


def supply_from_history(spans: Sequence[OpSpan], truth: ProviderTruth, *, t0_ns: int,
                        wall_offset_ns: int, initial: Observation | None = None,
                        ) -> list[tuple[float, float]]:
    """Total balance minus total debt a correct service holds, after each acknowledged delivery.

    Args:
        spans: the scenario's ops; refund ops give each refund's amount, in order.
        truth: the provider's intents and delivery attempts (wall-clock times).
        wall_offset_ns: wall-clock ns at the history clock's zero, to place deliveries.
        initial: balances before the scenario, the starting level (zero if None).

    Returns:
        [(s since t0, tokens)], starting with the initial level at t0.
    """
    level = 0
    if initial is not None:
        level = sum(a.balance_tokens - a.debt_tokens for a in initial.accounts.values())
    ledger = _SupplyLedger(truth.intents, _refunds_cumulative(spans, truth))
    points = [(0.0, float(level))]
    seen_events: set[str] = set()
    acknowledged = sorted((d for d in truth.deliveries if d.acknowledged),
                          key=lambda d: (d.finished_ns, d.index))
    for delivery in acknowledged:
        if delivery.event_id in seen_events or delivery.intent_id is None:
            continue  # a duplicate changes nothing at a correct service
        seen_events.add(delivery.event_id)
        delta = ledger.apply(delivery.event_type, delivery.intent_id)
        if delta:
            level += delta
            t_s = (delivery.finished_ns - wall_offset_ns - t0_ns) / _NS_PER_S
            points.append((max(t_s, 0.0), float(level)))
    return sorted(points)


class _SupplyLedger:
    """Per-intent contribution to the supply, updated one acknowledged event at a time."""

    def __init__(self, intents: Mapping[str, IntentTruth],
                 refunds: Mapping[str, list[int]]) -> None:
        self.intents = intents
        self.refunds = refunds
        self.credited: set[str] = set()
        self.refund_events: dict[str, int] = {}
        self.refund_taken: dict[str, int] = {}
        self.dispute_taken: dict[str, int] = {}

    def apply(self, event_type: str, intent_id: str) -> int:
        """Apply one event; returns how much the intent's contribution changed."""
        intent = self.intents.get(intent_id)
        if intent is None:
            return 0
        before = self._contribution(intent)
        if event_type == "payment_intent.succeeded":
            self.credited.add(intent_id)
        elif event_type == "charge.refunded":
            count = self.refund_events.get(intent_id, 0) + 1
            self.refund_events[intent_id] = count
            cumulative = self.refunds.get(intent_id, [])
            refunded_cents = (cumulative[count - 1] if count <= len(cumulative)
                              else intent.refunded_cents)
            taken = intent.minted_tokens * min(refunded_cents, intent.amount_cents)
            self.refund_taken[intent_id] = taken // max(intent.amount_cents, 1)
        elif event_type == "charge.dispute.created":
            self.dispute_taken[intent_id] = max(
                intent.minted_tokens - self.refund_taken.get(intent_id, 0), 0)
        elif event_type == "charge.dispute.closed" and intent.dispute_status == "won":
            self.dispute_taken[intent_id] = 0
        return self._contribution(intent) - before

    def _contribution(self, intent: IntentTruth) -> int:
        if intent.intent_id not in self.credited:
            return 0
        taken = (self.refund_taken.get(intent.intent_id, 0)
                 + self.dispute_taken.get(intent.intent_id, 0))
        return intent.minted_tokens - min(taken, intent.minted_tokens)


def _refunds_cumulative(spans: Sequence[OpSpan], truth: ProviderTruth) -> dict[str, list[int]]:
    """intent id -> cumulative refunded cents after each acknowledged refund op, in order."""
    cumulative: dict[str, list[int]] = {}
    completed = sorted((s for s in spans if s.f == "refund" and s.state == "ok"),
                       key=lambda s: s.end_ns or 0)
    for span in completed:
        intent_id = span.value.get("intent_id")
        if not isinstance(intent_id, str) or intent_id not in truth.intents:
            continue
        total = truth.intents[intent_id].amount_cents
        so_far = cumulative.setdefault(intent_id, [])
        previous = so_far[-1] if so_far else 0
        amount = span.value.get("amount_cents")
        so_far.append(min(previous + amount, total) if isinstance(amount, int) else total)
    return cumulative

