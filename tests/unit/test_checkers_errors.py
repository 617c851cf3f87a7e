"""errors: no 5xx; a slow op fails only past a latency bound the user asked for."""

from __future__ import annotations

import dataclasses

from harness.checkers.server_errors import SERVER_ERROR, check_errors
from harness.model import F, FaultWindow, Kind
from tests.unit.conftest import REFUNDED, SUCCEEDED, H, T


def test_errors_hold_for_fast_answers_and_4xx() -> None:
    h = H()
    h.tip("fan_0", "creator_0", 10, Kind.FAIL, error="insufficient_funds")
    h.read("fan_0", 0)
    verdict = check_errors(h.input(None, T().paid("pi_1", "fan_0", 5).build()))
    assert verdict.valid is True, verdict
    assert verdict.counts["ops_checked"] == 2


def test_errors_flag_a_5xx_answer_and_a_5xx_info() -> None:
    h = H()
    first = h.tip("fan_0", "creator_0", 10, Kind.INFO, error=SERVER_ERROR)
    second = h.op(F.READ_BALANCE, {"user": "fan_0"}, Kind.INFO, error="server_error_5xx",
                  status=503)
    verdict = check_errors(h.input(None, None))
    assert verdict.valid is False
    assert verdict.counts["server_error"] == 2
    indexes = {a.event_indexes[0] for a in verdict.anomalies}
    assert indexes == {first, second}


def test_errors_name_the_services_own_code_of_a_5xx() -> None:
    h = H()
    h.op(F.READ_BALANCE, {"user": "fan_0"}, Kind.INFO, error=f"{SERVER_ERROR}: deadlock_detected",
         status=503)
    verdict = check_errors(h.input(None, None))
    assert verdict.valid is False
    assert "answered 503 (deadlock_detected)" in verdict.anomalies[0].explanation


def test_errors_flag_a_delivery_answered_5xx() -> None:
    truth = T().paid("pi_1", "fan_0", 5, status=500).deliver("evt_pi_1", SUCCEEDED, "pi_1")
    verdict = check_errors(H().input(None, truth.build()))
    assert verdict.valid is False
    assert verdict.anomalies[0].delivery_indexes == (0,)


def _slow_purchase(h: H, latency_ms: int) -> int:
    return h.op(F.PURCHASE, {"user": "fan_0", "tokens": 500}, Kind.OK, {"intent_id": "pi_1"},
                status=201, latency_ms=latency_ms)


def test_errors_hold_for_a_slow_op_when_no_latency_bound_was_asked_for() -> None:
    # The purchase that took 5,364 ms on a busy machine: slow, but no invariant broke.
    h = H()
    _slow_purchase(h, 5_363)  # H completes it one 1 ms tick later
    verdict = check_errors(h.input(None, None))
    assert verdict.valid is True, verdict
    assert verdict.anomalies == ()
    assert verdict.counts["latency_ms_observed_max"] == 5_364


def test_errors_flag_an_op_past_the_latency_bound_the_user_asked_for() -> None:
    h = H()
    index = h.op(F.TIP, {"sender": "fan_0", "recipient": "creator_0", "amount_tokens": 10},
                 Kind.OK, {"tip_id": "t_1"}, latency_ms=250)
    verdict = check_errors(h.input(None, None, latency_ms_max=100))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "slow_op"
    assert verdict.anomalies[0].event_indexes[0] == index
    assert "100 ms latency bound" in verdict.anomalies[0].explanation
    assert check_errors(h.input(None, None, latency_ms_max=1_000)).valid is True
    assert check_errors(h.input(None, None)).valid is True


def test_errors_name_a_timed_out_op_past_the_bound_as_indeterminate() -> None:
    h = H()
    h.op(F.TIP, {"sender": "fan_0", "recipient": "creator_0", "amount_tokens": 10},
         Kind.INFO, error="read_timeout", latency_ms=10_000)
    verdict = check_errors(h.input(None, None, latency_ms_max=5_000))
    assert verdict.valid is False
    assert "indeterminate (read_timeout)" in verdict.anomalies[0].explanation
    assert check_errors(h.input(None, None)).valid is True  # a timeout alone is no 5xx


def test_errors_still_flag_a_5xx_however_fast_and_with_no_bound() -> None:
    h = H()
    h.op(F.TIP, {"sender": "fan_0", "recipient": "creator_0", "amount_tokens": 10},
         Kind.INFO, error=SERVER_ERROR, status=500, latency_ms=1)
    verdict = check_errors(h.input(None, None))
    assert verdict.valid is False
    assert [a.kind for a in verdict.anomalies] == ["server_error"]


def test_errors_ignore_the_providers_own_api() -> None:
    h = H()
    h.op(F.REFUND, {"purchase": "p_0", "amount_cents": None}, Kind.INFO, error=SERVER_ERROR,
         status=500)
    assert check_errors(h.input(None, None)).valid == "unknown"


def test_errors_state_the_refund_never_applied_when_every_delivery_was_a_5xx() -> None:
    h = H()
    h.purchase("fan_0", "p_0", 1000, "pi_1")
    h.refund("p_0", 1250, "pi_1")
    truth = T().intent("pi_1", "fan_0", 1000, refunded_cents=1250).deliver(
        "evt_s", SUCCEEDED, "pi_1")
    for _ in range(4):
        truth.deliver("evt_r", REFUNDED, "pi_1", status=500)
    verdict = check_errors(h.input(None, truth.build()))
    assert verdict.valid is False
    assert [a.kind for a in verdict.anomalies] == ["webhook_never_applied"]
    anomaly = verdict.anomalies[0]
    assert anomaly.explanation == ("The refund of 250 tokens for purchase #0 (intent pi_1) was "
                                   "never applied: every one of its 4 deliveries was answered "
                                   "500.")
    assert anomaly.delivery_indexes == (1, 2, 3, 4)
    # Answered at last: each 5xx is a server error, and nothing went missing.
    truth.deliver("evt_r", REFUNDED, "pi_1", status=200)
    recovered = check_errors(h.input(None, truth.build()))
    assert {a.kind for a in recovered.anomalies} == {"server_error"}
    assert recovered.counts["server_error"] == 4


def test_errors_quote_the_body_of_a_5xx() -> None:
    h = H()
    h.op(F.TIP, {"sender": "fan_0", "recipient": "creator_0", "amount_tokens": 10},
         Kind.INFO, error=f"{SERVER_ERROR}: internal", status=500)
    h.events[-1] = dataclasses.replace(
        h.events[-1], body_excerpt='{"error": "deadlock detected"}')
    verdict = check_errors(h.input(None, None))
    assert verdict.valid is False
    assert "deadlock detected" in verdict.anomalies[0].explanation


# -- what happens during an injected fault -------------------------------------------------


def _window(started_ns: int, recovered_ns: int) -> FaultWindow:
    return FaultWindow(name="f0", kind="database_restart", link=None,
                       description="restart PostgreSQL", started_ns=started_ns,
                       healed_ns=recovered_ns, recovered_ns=recovered_ns)


def test_errors_excuse_a_5xx_or_a_timeout_inside_a_fault_window_only() -> None:
    h = H()
    started = h.wait(1)
    h.tip("fan_0", "creator_0", 10, Kind.INFO, error=SERVER_ERROR)
    h.op(F.READ_BALANCE, {"user": "fan_0"}, Kind.INFO, error="read_timeout")
    window = _window(started, h.wait(1))
    outside = h.tip("fan_0", "creator_0", 10, Kind.INFO, error=SERVER_ERROR)
    verdict = check_errors(h.input(None, None, faults=(window,)))
    assert verdict.valid is False
    assert verdict.counts["during_fault"] == 2
    assert verdict.counts["server_error"] == 1
    assert verdict.anomalies[0].event_indexes[0] == outside
    faultless = check_errors(h.input(None, None))
    assert faultless.counts["server_error"] == 2
    assert faultless.counts["during_fault"] == 0


def test_errors_excuse_an_op_that_straddles_the_fault_and_a_slow_one_inside() -> None:
    h = H()
    op_id = h.invoke(F.TIP, {"sender": "fan_0", "recipient": "creator_0", "amount_tokens": 10},
                     key="k")
    window = _window(h.wait(1), h.wait(100))
    h.complete(op_id, Kind.INFO, error=SERVER_ERROR, status=503)
    _slow_purchase(h, 2_000)
    late = _window(h.now_ns() - 1_000 * 1_000_000, h.now_ns() - 1_000 * 1_000_000)
    verdict = check_errors(h.input(None, None, latency_ms_max=500, faults=(window, late)))
    assert verdict.valid is True, verdict
    assert verdict.counts["during_fault"] == 2


def test_errors_excuse_a_delivery_answered_5xx_inside_a_window_on_the_wall_clock() -> None:
    # Deliveries are timed on the provider's wall clock: a window carries its offset.
    # Delivery 0 runs at 1000-1500 ns, delivery 1 at 2000-2500 ns (wall clock).
    truth = T().paid("pi_1", "fan_0", 100, status=503).deliver(
        "evt_pi_1", SUCCEEDED, "pi_1", 200).build()
    inside = dataclasses.replace(_window(0, 600), wall_offset_ns=1_000)  # wall 1000-1600
    before = dataclasses.replace(_window(0, 600), wall_offset_ns=10_000)  # wall 10000-10600
    unknown = _window(0, 10**12)  # no wall offset: it cannot excuse a delivery
    assert check_errors(H().input(None, truth, faults=(inside,))).valid is True
    for window in (before, unknown):
        verdict = check_errors(H().input(None, truth, faults=(window,)))
        assert verdict.valid is False and verdict.counts["server_error"] == 1
