"""series.py: op spans, throughput, latency and the derived token supply from tiny histories."""

from __future__ import annotations

from typing import Any

from harness.model import (
    AccountState,
    Delivery,
    DeliveryVariant,
    Event,
    F,
    IntentTruth,
    Kind,
    Observation,
    ProviderTruth,
)
from harness.report.series import (
    balance_reads,
    latency_by_f,
    op_spans,
    op_summaries,
    supply_from_history,
    throughput_by_f,
)

MS = 1_000_000
WALL_NS = 1_700_000_000_000_000_000


class Recorder:
    """Builds a well-formed history: invoke and complete ops at given times.

    A completion's value is the invoke's arguments merged with its results, as the runner
    records it.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.arguments: dict[int, dict[str, Any]] = {}

    def invoke(self, op_id: int, process: int, f: F, t_ms: float, **value: Any) -> None:
        self.arguments[op_id] = value
        self._add(op_id, process, Kind.INVOKE, f, t_ms, value, None)

    def complete(self, op_id: int, process: int, f: F, t_ms: float, kind: Kind = Kind.OK,
                 error: str | None = None, **value: Any) -> None:
        merged = {**self.arguments[op_id], **value}
        self._add(op_id, process, kind, f, t_ms, merged, error)

    def _add(self, op_id: int, process: int, kind: Kind, f: F, t_ms: float,
             value: dict[str, Any], error: str | None) -> None:
        self.events.append(Event(index=len(self.events), time_ns=int(t_ms * MS),
                                 process=process, kind=kind, f=f, op_id=op_id, value=value,
                                 error=error,
                                 status_code=None if kind == Kind.INVOKE else 200))


def delivery(index: int, event_id: str, event_type: str, at_ms: float, status: int | None = 200,
             variant: DeliveryVariant = DeliveryVariant.GENUINE) -> Delivery:
    started = WALL_NS + int(at_ms * MS)
    return Delivery(index=index, event_id=event_id, event_type=event_type, intent_id="pi_1",
                    variant=variant, status_code=status, started_ns=started,
                    finished_ns=started + MS)


def test_op_spans_pair_invokes_with_completions_and_keep_open_ops() -> None:
    h = Recorder()
    h.invoke(1, 0, F.TIP, 0, sender="fan_0")
    h.invoke(2, 1, F.TIP, 1, sender="fan_1")
    h.complete(2, 1, F.TIP, 3, kind=Kind.FAIL, error="insufficient_funds")
    h.complete(1, 0, F.TIP, 5, tip_id="t_1")
    h.invoke(3, 1, F.READ_BALANCE, 6, user="fan_1")
    spans = op_spans(h.events)
    assert [(s.op_id, s.state, s.invoke_index, s.completion_index) for s in spans] == [
        (1, "ok", 0, 3), (2, "fail", 1, 2), (3, "open", 4, None)]
    assert spans[0].latency_ms == 5.0
    assert spans[0].value["tip_id"] == "t_1"
    assert spans[1].error == "insufficient_funds"
    assert spans[2].latency_ms is None


def test_throughput_counts_every_completion_once() -> None:
    h = Recorder()
    for i in range(50):
        h.invoke(i, 0, F.TIP if i % 2 else F.READ_BALANCE, i * 10)
        h.complete(i, 0, F.TIP if i % 2 else F.READ_BALANCE, i * 10 + 5)
    spans = op_spans(h.events)
    series = throughput_by_f(spans, t0_ns=0, t1_ns=500 * MS, buckets_count=10)
    bucket_s = 0.05
    assert set(series) == {"tip", "read_balance"}
    assert all(len(points) == 10 for points in series.values())
    total = sum(rate * bucket_s for points in series.values() for _, rate in points)
    assert round(total) == 50


def test_latency_points_per_kind_in_ms_at_invoke_time() -> None:
    h = Recorder()
    h.invoke(1, 0, F.TIP, 100)
    h.complete(1, 0, F.TIP, 142)
    assert latency_by_f(op_spans(h.events), t0_ns=0) == {"tip": [(0.1, 42.0)]}


def test_balance_reads_take_acknowledged_reads_only() -> None:
    h = Recorder()
    h.invoke(1, 0, F.READ_BALANCE, 0, user="fan_0")
    h.complete(1, 0, F.READ_BALANCE, 10, user="fan_0", balance_tokens=70, debt_tokens=5)
    h.invoke(2, 0, F.READ_BALANCE, 20, user="fan_0")
    h.complete(2, 0, F.READ_BALANCE, 30, kind=Kind.INFO, error="read_timeout")
    balances, debts = balance_reads(op_spans(h.events), t0_ns=0)
    assert balances == [(0.01, 70.0)]  # not the timed-out read
    assert debts == [(0.01, 5.0)]


def test_supply_credits_once_claws_back_refunds_and_returns_won_disputes() -> None:
    h = Recorder()
    h.invoke(1, 0, F.REFUND, 20, purchase="p_1", amount_cents=1_000)
    h.complete(1, 0, F.REFUND, 25, intent_id="pi_1", refund_id="re_1")
    h.invoke(2, 0, F.REFUND, 40, purchase="p_1", amount_cents=None)
    h.complete(2, 0, F.REFUND, 45, intent_id="pi_1", refund_id="re_2")
    intent = IntentTruth(intent_id="pi_1", user="fan_0", amount_cents=5_000,
                         minted_tokens=1_000, status="succeeded", refunded_cents=5_000)
    truth = ProviderTruth(intents={"pi_1": intent}, deliveries=(
        delivery(0, "evt_a", "payment_intent.succeeded", 10),
        delivery(1, "evt_a", "payment_intent.succeeded", 11, variant=DeliveryVariant.DUPLICATE),
        delivery(2, "evt_b", "charge.refunded", 30),
        delivery(3, "evt_b", "charge.refunded", 31, status=None),  # never acknowledged
        delivery(4, "evt_c", "charge.refunded", 50),
    ))
    initial = Observation(accounts={"c": AccountState(user="c", balance_tokens=30,
                                                      debt_tokens=10)})
    points = supply_from_history(op_spans(h.events), truth, t0_ns=0, wall_offset_ns=WALL_NS,
                                 initial=initial)
    assert [round(t, 3) for t, _ in points] == [0.0, 0.011, 0.031, 0.051]
    assert [v for _, v in points] == [20, 1_020, 820, 20]


def test_supply_dispute_takes_the_rest_and_a_won_dispute_gives_it_back() -> None:
    won = IntentTruth(intent_id="pi_1", user="fan_0", amount_cents=5_000, minted_tokens=1_000,
                      status="succeeded", dispute_status="won")
    truth = ProviderTruth(intents={"pi_1": won}, deliveries=(
        delivery(0, "evt_a", "payment_intent.succeeded", 1),
        delivery(1, "evt_b", "charge.dispute.created", 2),
        delivery(2, "evt_c", "charge.dispute.closed", 3),
    ))
    points = supply_from_history([], truth, t0_ns=0, wall_offset_ns=WALL_NS)
    assert [v for _, v in points] == [0, 1_000, 0, 1_000]


def test_supply_ignores_refund_before_success_until_the_credit() -> None:
    intent = IntentTruth(intent_id="pi_1", user="fan_0", amount_cents=5_000,
                         minted_tokens=1_000, status="succeeded", refunded_cents=2_500)
    truth = ProviderTruth(intents={"pi_1": intent}, deliveries=(
        delivery(0, "evt_b", "charge.refunded", 1),
        delivery(1, "evt_a", "payment_intent.succeeded", 2),
    ))
    points = supply_from_history([], truth, t0_ns=0, wall_offset_ns=WALL_NS)
    assert [v for _, v in points] == [0, 500]


def test_op_summaries_count_outcomes_quantiles_and_errors() -> None:
    h = Recorder()
    for i in range(100):  # latencies 1..100 ms; every tenth refused, the last one timed out
        h.invoke(i, 0, F.TIP, i * 200)
        kind, error = Kind.OK, None
        if i % 10 == 9:
            kind, error = Kind.FAIL, "insufficient_funds"
        h.complete(i, 0, F.TIP, i * 200 + i + 1, kind=kind, error=error)
    h.invoke(100, 1, F.READ_BALANCE, 30_000)
    (read, tip) = op_summaries(op_spans(h.events))
    assert (read.f, read.ops_count, read.open_count, read.latency_ms_p50) == (
        "read_balance", 1, 1, None)
    assert (tip.ops_count, tip.ok_count, tip.fail_count, tip.info_count) == (100, 90, 10, 0)
    assert (tip.latency_ms_p50, tip.latency_ms_p99, tip.latency_ms_max) == (50.0, 99.0, 100.0)
    assert tip.errors == (("insufficient_funds", 10),)
