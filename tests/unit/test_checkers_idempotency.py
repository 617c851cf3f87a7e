"""idempotency: one request, one answer; a reused key with another body refused."""

from __future__ import annotations

from harness.checkers.idempotency import check_idempotency
from harness.model import F, FaultWindow, Kind
from tests.unit.conftest import H


def test_idempotency_holds_for_retries_answered_alike() -> None:
    h = H()
    h.tip("fan_0", "creator_0", 50, Kind.INFO, key="k1")
    h.tip("fan_0", "creator_0", 50, key="k1", tip_id="t_1")
    h.tip("fan_0", "creator_0", 50, key="k1", tip_id="t_1")
    h.tip("fan_0", "creator_0", 70, Kind.FAIL, key="k1", error="idempotency_conflict")
    verdict = check_idempotency(h.input(None, None))
    assert verdict.valid is True, verdict
    assert verdict.counts["replays_acknowledged"] == 1
    assert verdict.counts["conflicts_rejected"] == 1


def test_idempotency_flags_a_retry_applied_as_a_new_tip() -> None:
    h = H()
    first = h.tip("fan_0", "creator_0", 50, key="k1", tip_id="t_1")
    second = h.tip("fan_0", "creator_0", 50, key="k1", tip_id="t_2")
    verdict = check_idempotency(h.input(None, None))
    assert verdict.valid is False
    anomaly = verdict.anomalies[0]
    assert anomaly.kind == "replay_answered_differently"
    assert anomaly.event_indexes == (first, second)
    assert "'t_1'" in anomaly.explanation
    assert "'t_2'" in anomaly.explanation


def test_idempotency_flags_a_reused_key_with_another_body_accepted() -> None:
    h = H()
    h.tip("fan_0", "creator_0", 50, key="k1")
    h.tip("fan_0", "creator_0", 80, key="k1")
    verdict = check_idempotency(h.input(None, None))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "key_reuse_accepted"
    assert verdict.anomalies[0].user == "fan_0"


def test_idempotency_keys_belong_to_their_sender() -> None:
    h = H()
    h.tip("fan_0", "creator_0", 50, key="k1", tip_id="t_1")
    h.tip("fan_1", "creator_0", 80, key="k1", tip_id="t_2")
    h.tip("fan_1", "creator_0", 80, key="k1", tip_id="t_2")
    assert check_idempotency(h.input(None, None)).valid is True


def test_idempotency_compares_purchase_intents_and_charge_ids() -> None:
    h = H()
    h.purchase("fan_0", "p_0", 500, "pi_1", key="kp")
    h.purchase("fan_0", "p_0", 500, "pi_2", key="kp")
    h.charge("fan_0", "creator_0", "c1", 1, 10, key="kc", charge_id="ch_1")
    h.charge("fan_0", "creator_0", "c1", 1, 10, key="kc", charge_id="ch_1")
    verdict = check_idempotency(h.input(None, None))
    assert verdict.valid is False
    assert verdict.counts["replay_answered_differently"] == 1
    assert "intent_id" in verdict.anomalies[0].explanation


def test_idempotency_is_unknown_when_no_key_was_reused() -> None:
    h = H()
    h.tip("fan_0", "creator_0", 50, key="k1")
    h.tip("fan_0", "creator_0", 50, key="k2")
    verdict = check_idempotency(h.input(None, None))
    assert verdict.valid == "unknown"
    assert "no idempotency key was used twice" in (verdict.note or "")


def _replayed_tip(h: H, sender: str, key: str, tip_id: str | None = None) -> int:
    result: dict[str, int | str | None] = {"replayed": 1}
    if tip_id is not None:
        result["tip_id"] = tip_id
    return h.op(F.TIP, {"sender": sender, "recipient": "creator_0", "amount_tokens": 50},
                Kind.OK, result, key=key)


def test_idempotency_a_retry_answered_as_a_replay_is_the_same_answer() -> None:
    h = H()
    h.tip("fan_0", "creator_0", 50, key="k1", tip_id="t_1")
    _replayed_tip(h, "fan_0", "k1")  # no tip id in a replay's body
    _replayed_tip(h, "fan_0", "k1", tip_id="t_replay")  # an id of its own, still a replay
    verdict = check_idempotency(h.input(None, None))
    assert verdict.valid is True, verdict
    assert verdict.counts["replays_recognised"] == 2


def test_idempotency_flags_a_replay_of_a_key_another_account_used() -> None:
    h = H()
    h.tip("fan_0", "creator_0", 50, key="shared", tip_id="t_1")
    other = _replayed_tip(h, "fan_1", "shared", tip_id="t_1")  # fan_1 got fan_0's answer
    verdict = check_idempotency(h.input(None, None))
    assert verdict.valid is False
    anomaly = verdict.anomalies[0]
    assert anomaly.kind == "replay_of_nothing"
    assert anomaly.user == "fan_1"
    assert other in anomaly.event_indexes


def test_idempotency_two_sends_in_flight_either_may_get_the_replay() -> None:
    h = H()
    value = {"sender": "fan_0", "recipient": "creator_0", "amount_tokens": 50}
    first = h.invoke(F.TIP, value, key="k1")
    second = h.invoke(F.TIP, value, key="k1")
    h.complete(first, Kind.OK, {"replayed": 1})  # the first sent got the replay ...
    h.complete(second, Kind.OK, {"tip_id": "t_1"})  # ... of the second, applied first
    verdict = check_idempotency(h.input(None, None))
    assert verdict.valid is True, verdict
    assert verdict.counts["replays_recognised"] == 1


def test_idempotency_a_minute_billed_under_another_key_may_be_answered_as_a_replay() -> None:
    h = H()
    minute = {"user": "fan_0", "creator": "creator_0", "call": "c_0", "minute": 2,
              "amount_tokens": 10}
    h.op(F.CALL_CHARGE, minute, Kind.OK, {"charge_id": "ch_1"}, key="k1")
    h.op(F.CALL_CHARGE, minute, Kind.OK, {"replayed": 1}, key="k2")  # deduped by minute
    verdict = check_idempotency(h.input(None, None))
    assert not any(a.kind == "replay_of_nothing" for a in verdict.anomalies), verdict


def test_idempotency_holds_for_after_heal_retries_of_ops_cut_off_by_a_fault() -> None:
    # A 5xx and a timeout during the fault, then each re-sent after the heal: the first
    # answer is the retry's, replayed or not; only two different ids break it, as before.
    h = H()
    h.tip("fan_0", "creator_0", 50, Kind.INFO, key="k1", error="server_error_5xx")
    h.tip("fan_0", "creator_0", 50, Kind.INFO, key="k2", error="read_timeout")
    h.tip("fan_0", "creator_0", 50, Kind.INFO, key="k3", error="server_error_5xx")
    heal = h.wait(100)
    window = FaultWindow(name="f0", kind="kill_service", link=None, description="kill",
                         started_ns=0, healed_ns=heal, recovered_ns=heal)
    _replayed_tip(h, "fan_0", "k1", "t_1")
    h.tip("fan_0", "creator_0", 50, key="k2", tip_id="t_2")
    h.tip("fan_0", "creator_0", 50, key="k3", tip_id="t_3")
    verdict = check_idempotency(h.input(None, None, faults=(window,)))
    assert verdict.valid is True, verdict
    assert verdict.counts["keys_reused"] == 3
    h.tip("fan_0", "creator_0", 50, key="k3", tip_id="t_4")
    assert check_idempotency(h.input(None, None, faults=(window,))).valid is False
