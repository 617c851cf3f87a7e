"""reconciliation: end nets explained by one choice of the indeterminate ops; reads bounded."""

from __future__ import annotations

import dataclasses

import pytest

from harness.checkers.reconciliation import EXACT_UNKNOWNS_MAX, check_reconciliation
from harness.model import F, Kind
from tests.unit.conftest import H, T, observe


def _funded() -> tuple[H, T]:
    """fan_0 bought 1000 tokens (pi_1), credited by one acknowledged webhook."""
    h = H()
    h.purchase("fan_0", "p_0", 1000, "pi_1")
    return h, T().paid("pi_1", "fan_0", 1000)


def test_reconciliation_holds_for_acknowledged_tips() -> None:
    h, t = _funded()
    h.tip("fan_0", "creator_0", 300, balance=700)
    h.read("fan_0", 700)
    verdict = check_reconciliation(h.input(observe({"fan_0": 700, "creator_0": 300}), t.build()))
    assert verdict.valid is True, verdict
    assert verdict.counts["reads_checked"] == 2


@pytest.mark.parametrize(("fan", "creator"), [(800, 200), (500, 500)])
def test_reconciliation_holds_whether_the_indeterminate_tip_applied_or_not(
        fan: int, creator: int) -> None:
    h, t = _funded()
    h.tip("fan_0", "creator_0", 200)
    h.tip("fan_0", "creator_0", 300, Kind.INFO)
    verdict = check_reconciliation(h.input(observe({"fan_0": fan, "creator_0": creator}),
                                           t.build()))
    assert verdict.valid is True, verdict
    assert verdict.counts["indeterminate_ops"] == 1


def test_reconciliation_flags_a_net_no_choice_reaches() -> None:
    h, t = _funded()
    h.tip("fan_0", "creator_0", 200)
    h.tip("fan_0", "creator_0", 300, Kind.INFO)
    verdict = check_reconciliation(h.input(observe({"fan_0": 600, "creator_0": 200}),
                                           t.build()))
    assert verdict.valid is False
    kinds = {a.kind for a in verdict.anomalies}
    assert kinds == {"unreconciled_net"}
    anomaly = verdict.anomalies[0]
    assert anomaly.user == "fan_0"
    assert "Let U be fan_0" in anomaly.explanation


def test_reconciliation_flags_a_tip_applied_to_one_side_only() -> None:
    h, t = _funded()
    h.tip("fan_0", "creator_0", 300, Kind.INFO)
    # fan_0 paid the tip, creator_0 never received it: each alone is reachable.
    verdict = check_reconciliation(h.input(observe({"fan_0": 700, "creator_0": 0}), t.build()))
    assert verdict.valid is False
    assert [a.kind for a in verdict.anomalies] == ["unreconciled_jointly"]


def test_reconciliation_flags_a_failed_tip_that_moved_money() -> None:
    h, t = _funded()
    index = h.tip("fan_0", "creator_0", 300, Kind.FAIL, error="insufficient_funds")
    verdict = check_reconciliation(h.input(observe({"fan_0": 700, "creator_0": 300}),
                                           t.build()))
    assert verdict.valid is False
    assert all(a.kind == "unreconciled_net" for a in verdict.anomalies)
    assert {a.user for a in verdict.anomalies} == {"fan_0", "creator_0"}
    fan = next(a for a in verdict.anomalies if a.user == "fan_0")
    assert "no indeterminate op" in fan.explanation
    assert index > 0


def test_reconciliation_names_the_tip_applied_twice() -> None:
    h, t = _funded()
    index = h.tip("fan_0", "creator_0", 300)
    verdict = check_reconciliation(h.input(observe({"fan_0": 400, "creator_0": 600}),
                                           t.build()))
    assert verdict.valid is False
    fan = next(a for a in verdict.anomalies if a.user == "fan_0")
    assert f"tip #{index}" in fan.explanation
    assert "applied twice" in fan.explanation
    assert index in fan.event_indexes


def test_reconciliation_retries_with_one_key_are_one_logical_tip() -> None:
    h, t = _funded()
    h.tip("fan_0", "creator_0", 300, Kind.INFO, key="k1")
    h.tip("fan_0", "creator_0", 300, key="k1", tip_id="t1")
    h.tip("fan_0", "creator_0", 300, key="k1", tip_id="t1")
    good = check_reconciliation(h.input(observe({"fan_0": 700, "creator_0": 300}), t.build()))
    assert good.valid is True, good
    assert good.counts["logical_ops"] == 2  # the purchase and the tip
    twice = check_reconciliation(h.input(observe({"fan_0": 400, "creator_0": 600}), t.build()))
    assert twice.valid is False


def test_reconciliation_retried_key_all_indeterminate_is_at_most_once() -> None:
    h, t = _funded()
    h.tip("fan_0", "creator_0", 300, Kind.INFO, key="k1")
    h.tip("fan_0", "creator_0", 300, Kind.INFO, key="k1")
    for fan, ok in ((1000, True), (700, True), (400, False)):
        verdict = check_reconciliation(h.input(observe({"fan_0": fan, "creator_0": 1000 - fan}),
                                               t.build()))
        assert (verdict.valid is True) == ok, (fan, verdict)


def test_reconciliation_possibly_credited_purchase_may_or_may_not_count() -> None:
    h = H()
    h.purchase("fan_0", "p_0", 500, "pi_1")
    truth = T().paid("pi_1", "fan_0", 500, status=None).build()  # no answer to the webhook
    for balance, ok in ((0, True), (500, True), (1000, False)):
        verdict = check_reconciliation(h.input(observe({"fan_0": balance}), truth))
        assert (verdict.valid is True) == ok, (balance, verdict)


def test_reconciliation_charges_of_one_minute_are_one_charge() -> None:
    h, t = _funded()
    h.call_open("fan_0", "creator_0", "c1", 60)
    h.charge("fan_0", "creator_0", "c1", 1, 60, key="a")
    h.charge("fan_0", "creator_0", "c1", 1, 60, key="b")
    good = check_reconciliation(h.input(observe({"fan_0": 940, "creator_0": 60}), t.build()))
    assert good.valid is True, good
    bad = check_reconciliation(h.input(observe({"fan_0": 880, "creator_0": 120}), t.build()))
    assert bad.valid is False


def test_reconciliation_flags_a_read_above_what_could_be_there() -> None:
    h, t = _funded()
    h.tip("fan_0", "creator_0", 300, balance=700)
    index = h.read("fan_0", 1000)
    verdict = check_reconciliation(h.input(observe({"fan_0": 700, "creator_0": 300}), t.build()))
    assert verdict.valid is False
    assert [a.kind for a in verdict.anomalies] == ["impossible_read"]
    assert index in verdict.anomalies[0].event_indexes


def test_reconciliation_flags_a_read_of_credit_before_any_purchase() -> None:
    h, t = _funded()
    h.events.clear()
    h.read("fan_0", 1000)  # before the purchase was even made
    h.purchase("fan_0", "p_0", 1000, "pi_1")
    verdict = check_reconciliation(h.input(observe({"fan_0": 1000}), t.build()))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "impossible_read"


def test_reconciliation_read_during_an_indeterminate_tip_may_see_either() -> None:
    for seen in (1000, 700):
        h, t = _funded()
        op = h.invoke(F.TIP, {"sender": "fan_0", "recipient": "creator_0",
                              "amount_tokens": 300})
        h.read("fan_0", seen)
        h.complete(op, Kind.INFO, error="read_timeout")
        verdict = check_reconciliation(h.input(observe({"fan_0": seen,
                                                        "creator_0": 1000 - seen}), t.build()))
        assert verdict.valid is True, (seen, verdict)


def test_reconciliation_flags_a_spend_balance_below_what_surely_remained() -> None:
    h = H()
    h.tip("fan_0", "creator_0", 300, balance=100)  # 1000 − 300 is 700
    verdict = check_reconciliation(h.input(observe({"fan_0": 700, "creator_0": 300}), None,
                                           initial=observe({"fan_0": 1000})))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "impossible_read"


def test_reconciliation_is_unknown_without_an_observation() -> None:
    h, t = _funded()
    verdict = check_reconciliation(h.input(None, t.build()))
    assert verdict.valid == "unknown"
    assert verdict.note


def test_reconciliation_is_unknown_for_purchases_without_truth() -> None:
    h, _ = _funded()
    verdict = check_reconciliation(h.input(observe({"fan_0": 1000}), None))
    assert verdict.valid == "unknown"
    assert "truth" in (verdict.note or "")


def test_reconciliation_counts_initial_balances() -> None:
    h = H()
    h.tip("fan_0", "creator_0", 300)
    start = observe({"fan_0": 500, "creator_0": 0})
    verdict = check_reconciliation(h.input(observe({"fan_0": 200, "creator_0": 300}), None,
                                           initial=start))
    assert verdict.valid is True, verdict


def test_reconciliation_many_unknowns_fall_back_to_per_account_checks() -> None:
    h = H()
    count = EXACT_UNKNOWNS_MAX + 4
    for i in range(count):
        h.tip(f"fan_{i % 3}", f"creator_{i % 2}", 10 + i, Kind.INFO)
    start = observe({f"fan_{i}": 10_000 for i in range(3)})
    end = {f"fan_{i}": 10_000 for i in range(3)} | {"creator_0": 0, "creator_1": 0}
    good = check_reconciliation(h.input(observe(end), None, initial=start))
    assert good.valid is True, good
    assert good.counts["components_bounded"] == 1
    assert "no joint assignment" in (good.note or "")
    end["creator_0"] = 5  # below every tip: no subset reaches it
    bad = check_reconciliation(h.input(observe(end), None, initial=start))
    assert bad.valid is False


def test_reconciliation_read_without_a_debt_field_is_not_bounded_above_once_debt_can_exist(
        ) -> None:
    h = H()
    h.purchase("fan_0", "p_0", 1000, "pi_1")
    h.tip("fan_0", "creator_0", 800)
    h.refund("p_0", None, "pi_1")
    # A service that reports no debt: 200 − 1000 leaves balance 0 and a hidden debt of 800.
    h.op(F.READ_BALANCE, {"user": "fan_0"}, Kind.OK, {"balance_tokens": 0})
    truth = (T().intent("pi_1", "fan_0", 1000, refunded_cents=5000)
             .deliver("evt_s", "payment_intent.succeeded", "pi_1")
             .deliver("evt_r", "charge.refunded", "pi_1").build())
    verdict = check_reconciliation(h.input(observe({"fan_0": (0, 800), "creator_0": 800}),
                                           truth))
    assert verdict.valid is True, verdict
    assert verdict.counts["reads_checked"] == 1


def test_reconciliation_notes_deliveries_still_pending() -> None:
    h, t = _funded()
    truth = dataclasses.replace(t.build(), pending_deliveries_count=2)
    verdict = check_reconciliation(h.input(observe({"fan_0": 1000}), truth))
    assert verdict.valid is True
    assert "2 deliverys" not in (verdict.note or "")
    assert "pending" in (verdict.note or "")


@pytest.mark.parametrize("replayed", [True, False])
def test_reconciliation_a_replayed_retry_is_applied_once_and_a_double_apply_is_caught(
        replayed: bool) -> None:
    h, t = _funded()
    h.tip("fan_0", "creator_0", 300, key="k1", tip_id="t1")
    h.op(F.TIP, {"sender": "fan_0", "recipient": "creator_0", "amount_tokens": 300}, Kind.OK,
         {"replayed": 1} if replayed else {"tip_id": "t1"}, key="k1")
    once = check_reconciliation(h.input(observe({"fan_0": 700, "creator_0": 300}), t.build()))
    assert once.valid is True, once
    # The service said "replay" (or answered alike) but moved the money twice.
    twice = check_reconciliation(h.input(observe({"fan_0": 400, "creator_0": 600}), t.build()))
    assert twice.valid is False
    assert {a.kind for a in twice.anomalies} == {"unreconciled_net"}


def test_reconciliation_names_a_lost_dispute_given_back_not_a_double_credit() -> None:
    h, _ = _funded()
    truth = (T().intent("pi_1", "fan_0", 1000, dispute_status="lost")
             .deliver("evt_s", "payment_intent.succeeded", "pi_1")
             .deliver("evt_d", "charge.dispute.created", "pi_1")
             .deliver("evt_c", "charge.dispute.closed", "pi_1").build())
    assert check_reconciliation(h.input(observe({"fan_0": 0}), truth)).valid is True
    verdict = check_reconciliation(h.input(observe({"fan_0": 1000}), truth))
    assert verdict.valid is False
    text = verdict.anomalies[0].explanation
    assert "dispute" in text
    assert "closed lost" in text
    assert "credited twice" not in text


def test_reconciliation_names_a_won_dispute_not_reinstated() -> None:
    h, _ = _funded()
    truth = (T().intent("pi_1", "fan_0", 1000, dispute_status="won")
             .deliver("evt_s", "payment_intent.succeeded", "pi_1")
             .deliver("evt_d", "charge.dispute.created", "pi_1")
             .deliver("evt_c", "charge.dispute.closed", "pi_1").build())
    assert check_reconciliation(h.input(observe({"fan_0": 1000}), truth)).valid is True
    verdict = check_reconciliation(h.input(observe({"fan_0": 0}), truth))
    assert verdict.valid is False
    assert "closed won" in verdict.anomalies[0].explanation
    assert "not reinstated" in verdict.anomalies[0].explanation
