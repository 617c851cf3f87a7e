"""idempotency: one request, one answer; a reused key with another body refused."""

from __future__ import annotations

from harness.checkers.idempotency import check_idempotency
from harness.model import Kind
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
