"""exactly_once_credit: acknowledged intents credited once, nothing else credited."""

from __future__ import annotations

import pytest

from harness.checkers.credit import check_exactly_once_credit, never_credited_finding
from harness.model import F, Kind
from tests.unit.conftest import SUCCEEDED, H, T, observe


def _purchases() -> H:
    h = H()
    h.purchase("fan_0", "p_0", 500, "pi_1")
    h.purchase("fan_0", "p_1", 1000, "pi_2")
    return h


def _truth() -> T:
    return T().paid("pi_1", "fan_0", 500).paid("pi_2", "fan_0", 1000)


def test_exactly_once_credit_holds_with_credited_tokens() -> None:
    h = _purchases()
    h.tip("fan_0", "creator_0", 100)
    verdict = check_exactly_once_credit(h.input(observe({"fan_0": 1400},
                                                        credited={"fan_0": 1500}),
                                                _truth().build()))
    assert verdict.valid is True, verdict
    assert verdict.counts["intents_credited"] == 2


def test_exactly_once_credit_holds_from_the_net_of_a_purchase_only_account() -> None:
    verdict = check_exactly_once_credit(_purchases().input(observe({"fan_0": 1500}),
                                                           _truth().build()))
    assert verdict.valid is True, verdict


def test_exactly_once_credit_flags_a_duplicated_credit_naming_purchase_and_deliveries() -> None:
    truth = _truth().deliver("evt_pi_1", SUCCEEDED, "pi_1", 200).build()
    h = _purchases()
    verdict = check_exactly_once_credit(h.input(observe({"fan_0": 2000}), truth))
    assert verdict.valid is False
    anomaly = verdict.anomalies[0]
    assert anomaly.kind == "duplicated_credit"
    assert anomaly.explanation.startswith("Let A be purchase #0 (intent pi_1, 500 tokens")
    assert "acknowledged twice (deliveries 0, 2)" in anomaly.explanation
    assert anomaly.delivery_indexes == (0, 2)
    assert 0 in anomaly.event_indexes


def test_exactly_once_credit_flags_a_lost_credit() -> None:
    verdict = check_exactly_once_credit(_purchases().input(
        observe({"fan_0": 500}, credited={"fan_0": 500}), _truth().build()))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "lost_credit"
    assert "pi_2" in verdict.anomalies[0].explanation


def test_exactly_once_credit_flags_a_phantom_credit_for_a_failed_intent() -> None:
    h = _purchases()
    h.purchase("fan_0", "p_2", 100, None, Kind.FAIL, error="card_declined")
    truth = _truth().intent("pi_3", "fan_0", 100, status="requires_payment_method")
    truth.deliver("evt_3", "payment_intent.payment_failed", "pi_3")
    verdict = check_exactly_once_credit(h.input(observe({"fan_0": 1600},
                                                        credited={"fan_0": 1600}),
                                                truth.build()))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "phantom_credit"
    assert "pi_3" in verdict.anomalies[0].explanation


def test_exactly_once_credit_flags_credit_for_a_success_never_acknowledged() -> None:
    h = H()
    h.purchase("fan_0", "p_0", 500, "pi_1")
    truth = T().paid("pi_1", "fan_0", 500, status=400).build()  # refused, so not applied
    verdict = check_exactly_once_credit(h.input(observe({"fan_0": 500}), truth))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "phantom_credit"


@pytest.mark.parametrize(("credited", "valid"), [(500, True), (1500, True), (1000, False)])
def test_exactly_once_credit_possible_credit_may_or_may_not_count(credited: int,
                                                                  valid: bool) -> None:
    truth = T().paid("pi_1", "fan_0", 500).paid("pi_2", "fan_0", 1000, status=None).build()
    verdict = check_exactly_once_credit(_purchases().input(
        observe({"fan_0": credited}, credited={"fan_0": credited}), truth))
    assert (verdict.valid is True) == valid, verdict


def test_exactly_once_credit_is_unknown_for_a_tipping_account_without_credited_tokens() -> None:
    h = _purchases()
    h.tip("fan_0", "creator_0", 100)
    verdict = check_exactly_once_credit(h.input(observe({"fan_0": 1400, "creator_0": 100}),
                                                _truth().build()))
    assert verdict.valid == "unknown"
    assert verdict.counts["users_undecidable"] == 1


def test_exactly_once_credit_is_unknown_without_intents() -> None:
    h = H()
    h.tip("fan_0", "creator_0", 100)
    verdict = check_exactly_once_credit(h.input(observe({"fan_0": 0}), T().build()))
    assert verdict.valid == "unknown"
    assert check_exactly_once_credit(h.input(observe({"fan_0": 0}), None)).valid == "unknown"


@pytest.mark.parametrize(("kind", "credited", "valid"), [
    (Kind.OK, 500, True), (Kind.OK, 0, False), (Kind.INFO, 0, True), (Kind.FAIL, 500, True)])
def test_exactly_once_credit_counts_a_genuine_webhook_the_harness_resent(
        kind: Kind, credited: int, valid: bool) -> None:
    h = H()
    h.purchase("fan_0", "p_0", 500, "pi_1")
    h.op(F.WEBHOOK, {"purchase": "p_0", "event_type": SUCCEEDED, "variant": "genuine"}, kind,
         {"event_id": "evt_pi_1", "intent_id": "pi_1"},
         error=None if kind == Kind.OK else "read_timeout")
    truth = T().paid("pi_1", "fan_0", 500, status=None).build()  # the provider's got no answer
    verdict = check_exactly_once_credit(h.input(observe({"fan_0": credited},
                                                        credited={"fan_0": credited}), truth))
    assert (verdict.valid is True) == valid, verdict


@pytest.mark.parametrize(("credited", "valid"), [(500, True), (0, False)])
def test_exactly_once_credit_a_purchase_call_that_timed_out_still_credits_by_webhook(
        credited: int, valid: bool) -> None:
    h = H()
    h.purchase("fan_0", "p_0", 500, None, Kind.INFO, error="read_timeout")
    truth = T().paid("pi_1", "fan_0", 500).build()
    verdict = check_exactly_once_credit(h.input(observe({"fan_0": credited},
                                                        credited={"fan_0": credited}), truth))
    assert (verdict.valid is True) == valid, verdict


def test_exactly_once_credit_does_not_blame_credits_for_a_lost_dispute_given_back() -> None:
    h = H()
    h.purchase("fan_0", "p_0", 1000, "pi_1")
    truth = (T().intent("pi_1", "fan_0", 1000, dispute_status="lost")
             .deliver("evt_s", SUCCEEDED, "pi_1")
             .deliver("evt_d", "charge.dispute.created", "pi_1")
             .deliver("evt_c", "charge.dispute.closed", "pi_1").build())
    assert check_exactly_once_credit(h.input(observe({"fan_0": 0}), truth)).valid is True
    verdict = check_exactly_once_credit(h.input(observe({"fan_0": 1000}), truth))
    assert verdict.valid == "unknown", verdict  # a clawback matter, not a double credit
    assert verdict.counts["users_off_by_a_clawback"] == 1
    assert verdict.note is not None
    assert "closed lost" in verdict.note


def _never_crediting(status: int) -> T:
    truth = T()
    for intent in ("pi_1", "pi_2"):
        truth.intent(intent, "fan_0", 500 if intent == "pi_1" else 1000)
        for _ in range(3):
            truth.deliver(f"evt_{intent}", SUCCEEDED, intent, status)
    return truth


@pytest.mark.parametrize("status", [200, 500])
def test_exactly_once_credit_says_first_that_no_purchase_was_ever_credited(
        status: int) -> None:
    truth = _never_crediting(status).build()
    credited = check_exactly_once_credit(_purchases().input(observe({"fan_0": 1500}), truth))
    assert not any(a.kind == "never_credited" for a in credited.anomalies)
    verdict = check_exactly_once_credit(_purchases().input(observe({"fan_0": 0}), truth))
    assert verdict.valid is False
    first = verdict.anomalies[0]
    assert first.kind == "never_credited"
    assert first.explanation.startswith(
        f"No purchase was ever credited: 2 succeeded intents, their success webhooks were "
        f"delivered 6 times and answered {status} (6 times) — the service never credits")
    assert never_credited_finding(verdict) == first.explanation


def test_exactly_once_credit_never_credited_after_4xx_only_is_unknown_not_broken() -> None:
    truth = _never_crediting(400).build()  # e.g. a webhook secret that does not match
    verdict = check_exactly_once_credit(_purchases().input(observe({"fan_0": 0}), truth))
    assert verdict.valid == "unknown", verdict
    finding = never_credited_finding(verdict)
    assert finding is not None
    assert "answered 400 (6 times)" in finding


def test_exactly_once_credit_a_disputed_purchase_at_net_zero_is_no_never_credited() -> None:
    h = H()
    h.purchase("fan_0", "p_0", 1000, "pi_1")
    truth = (T().intent("pi_1", "fan_0", 1000, dispute_status="lost")
             .deliver("evt_s", SUCCEEDED, "pi_1")
             .deliver("evt_d", "charge.dispute.created", "pi_1").build())
    verdict = check_exactly_once_credit(h.input(observe({"fan_0": 0}), truth))
    assert verdict.valid is True, verdict
