"""Latency figures: performance findings measured from hand-written histories."""

from __future__ import annotations

from harness.checkers.latency import SLOWEST_OPS_MAX, measure_latency
from harness.model import F, Kind
from tests.unit.conftest import H

# H completes an op one tick (1 ms) after ``latency_ms``: what is measured is that plus 1.


def _tip(h: H, latency_ms: int, kind: Kind = Kind.OK, error: str | None = None) -> int:
    return h.op(F.TIP, {"sender": "fan_0", "recipient": "creator_0", "amount_tokens": 10},
                kind, {"tip_id": "t"} if kind == Kind.OK else None, error=error,
                latency_ms=latency_ms)


def test_a_slow_op_is_a_finding_with_its_figures() -> None:
    h = H()
    slow = h.op(F.PURCHASE, {"user": "fan_0", "tokens": 500}, Kind.OK, {"intent_id": "pi_1"},
                status=201, latency_ms=5_363)
    for latency_ms in range(0, 100):
        _tip(h, latency_ms)
    performance = measure_latency(h.events, latency_ms_slow=5_000)
    assert performance.judged is False
    assert (performance.latency_ms_slow, performance.latency_ms_max) == (5_000, None)
    assert performance.ops_measured_count == 101
    assert performance.slow_ops_count == 1
    purchase, tip = performance.by_f
    assert (purchase.f, purchase.ops_count, purchase.latency_ms_max) == ("purchase", 1, 5_364)
    assert purchase.slow_ops_count == 1
    assert (tip.latency_ms_p50, tip.latency_ms_p99, tip.latency_ms_max) == (50, 99, 100)
    assert tip.slow_ops_count == 0
    assert performance.slowest[0].index == slow
    assert (performance.slowest[0].f, performance.slowest[0].latency_ms) == ("purchase", 5_364)
    assert [op.latency_ms for op in performance.slowest] == [5_364, 100, 99, 98, 97]
    assert performance.slowest[1].kind == "ok"


def test_a_latency_bound_is_the_threshold_of_the_findings() -> None:
    h = H()
    _tip(h, 249)
    _tip(h, 49)
    performance = measure_latency(h.events, latency_ms_slow=5_000, latency_ms_max=100)
    assert performance.judged is True
    assert performance.latency_ms_slow == 100
    assert performance.slow_ops_count == 1


def test_a_timeout_is_listed_as_what_it_is_and_open_ops_are_not_measured() -> None:
    h = H()
    timed_out = _tip(h, 10_000, Kind.INFO, error="read_timeout")
    h.invoke(F.TIP, {"sender": "fan_0", "recipient": "creator_0", "amount_tokens": 1})
    performance = measure_latency(h.events, latency_ms_slow=5_000)
    (op,) = performance.slowest
    assert (op.index, op.kind, op.error) == (timed_out, "info", "read_timeout")
    assert performance.ops_measured_count == 1


def test_the_slowest_ops_are_bounded_and_ties_go_to_the_earliest() -> None:
    h = H()
    indexes = [_tip(h, 7) for _ in range(SLOWEST_OPS_MAX + 3)]
    performance = measure_latency(h.events, latency_ms_slow=5_000)
    assert [op.index for op in performance.slowest] == indexes[:SLOWEST_OPS_MAX]


def test_the_providers_own_api_is_not_measured() -> None:
    h = H()
    h.op(F.REFUND, {"purchase": "p_0", "amount_cents": None}, Kind.OK, latency_ms=9_000)
    performance = measure_latency(h.events, latency_ms_slow=5_000)
    assert performance.ops_measured_count == 0
    assert performance.by_f == ()
    assert performance.slowest == ()
