"""conservation: the accounts change by what was minted minus what was clawed back."""

from __future__ import annotations

import pytest

from harness.checkers.conservation import check_conservation
from harness.model import Kind, Totals
from tests.unit.conftest import REFUNDED, H, T, observe


def _history() -> H:
    h = H()
    h.purchase("fan_0", "p_0", 1000, "pi_1")
    h.tip("fan_0", "creator_0", 300)
    return h


def _totals(minted: int, clawed: int, balances: int, debts: int = 0) -> Totals:
    return Totals(minted_tokens=minted, clawed_back_tokens=clawed, balances_tokens=balances,
                  debts_tokens=debts, drift_accounts_count=0)


def test_conservation_holds_when_tips_only_move_minted_tokens() -> None:
    truth = T().paid("pi_1", "fan_0", 1000).build()
    verdict = check_conservation(_history().input(observe({"fan_0": 700, "creator_0": 300}),
                                                  truth))
    assert verdict.valid is True, verdict
    assert verdict.counts["minted_tokens"] == 1000


@pytest.mark.parametrize(("fan", "creator"), [(700, 300), (500, 500)])
def test_conservation_ignores_whether_an_indeterminate_tip_applied(fan: int,
                                                                   creator: int) -> None:
    h = _history()
    h.tip("fan_0", "creator_0", 200, Kind.INFO)
    truth = T().paid("pi_1", "fan_0", 1000).build()
    verdict = check_conservation(h.input(observe({"fan_0": fan, "creator_0": creator}), truth))
    assert verdict.valid is True, verdict


def test_conservation_flags_a_credit_applied_twice_and_names_the_deliveries() -> None:
    truth = (T().paid("pi_1", "fan_0", 1000)
             .deliver("evt_pi_1", "payment_intent.succeeded", "pi_1", 200).build())
    verdict = check_conservation(_history().input(observe({"fan_0": 1700, "creator_0": 300}),
                                                  truth))
    assert verdict.valid is False
    anomaly = verdict.anomalies[0]
    assert anomaly.kind == "tokens_created"
    assert anomaly.delivery_indexes == (0, 1)
    assert "pi_1" in anomaly.explanation
    assert "acknowledged twice" in anomaly.explanation
    assert anomaly.expected == "1000"
    assert anomaly.observed == 2000


def test_conservation_flags_a_credit_never_applied() -> None:
    truth = T().paid("pi_1", "fan_0", 1000).build()
    verdict = check_conservation(_history().input(observe({"fan_0": 0, "creator_0": 0}), truth))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "tokens_destroyed"
    assert "never credited" in verdict.anomalies[0].explanation


@pytest.mark.parametrize(("balance", "valid"), [(0, True), (500, True), (1000, False)])
def test_conservation_accepts_either_outcome_of_an_unanswered_webhook(balance: int,
                                                                       valid: bool) -> None:
    h = H()
    h.purchase("fan_0", "p_0", 500, "pi_1")
    truth = T().paid("pi_1", "fan_0", 500, status=None).build()
    verdict = check_conservation(h.input(observe({"fan_0": balance}), truth))
    assert (verdict.valid is True) == valid, verdict


def test_conservation_subtracts_an_acknowledged_partial_refund() -> None:
    h = H()
    h.purchase("fan_0", "p_0", 1000, "pi_1")
    h.refund("p_0", 2500, "pi_1")
    truth = (T().intent("pi_1", "fan_0", 1000, refunded_cents=2500)
             .deliver("evt_1", "payment_intent.succeeded", "pi_1")
             .deliver("evt_2", REFUNDED, "pi_1").build())
    assert check_conservation(h.input(observe({"fan_0": 500}), truth)).valid is True
    whole = check_conservation(h.input(observe({"fan_0": 0}), truth))
    assert whole.valid is False
    assert whole.anomalies[0].kind == "tokens_destroyed"


def test_conservation_is_unknown_when_an_account_was_not_observed() -> None:
    truth = T().paid("pi_1", "fan_0", 1000).build()
    verdict = check_conservation(_history().input(observe({"fan_0": 700}), truth))
    assert verdict.valid == "unknown"
    assert "creator_0" in (verdict.note or "")


def test_conservation_is_unknown_without_truth_or_totals() -> None:
    verdict = check_conservation(_history().input(observe({"fan_0": 700, "creator_0": 300}),
                                                  None))
    assert verdict.valid == "unknown"


def test_conservation_checks_the_services_own_totals() -> None:
    good = observe({"fan_0": 700, "creator_0": 300}, totals=_totals(1000, 0, 1000))
    assert check_conservation(_history().input(good, None)).valid is True
    bad = observe({"fan_0": 700, "creator_0": 300}, totals=_totals(1000, 0, 1300))
    verdict = check_conservation(_history().input(bad, None))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "totals_inconsistent"


def test_conservation_compares_minted_totals_with_the_truth_since_the_start() -> None:
    truth = T().paid("pi_1", "fan_0", 1000).build()
    before = observe({}, totals=_totals(5000, 0, 5000))
    after = observe({"fan_0": 700, "creator_0": 300}, totals=_totals(7000, 0, 7000))
    verdict = check_conservation(_history().input(after, truth, initial=before))
    assert verdict.valid is False
    assert [a.kind for a in verdict.anomalies] == ["totals_disagree"]
    after = observe({"fan_0": 700, "creator_0": 300}, totals=_totals(6000, 0, 6000))
    assert check_conservation(_history().input(after, truth, initial=before)).valid is True


def test_conservation_names_the_bonus_tokens_not_clawed_back() -> None:
    h = H()
    h.purchase("fan_0", "p_0", 5000, "pi_1")
    h.refund("p_0", 25000, "pi_1")
    truth = (T().intent("pi_1", "fan_0", 5250, amount_cents=25000, refunded_cents=25000)
             .deliver("evt_s", "payment_intent.succeeded", "pi_1")
             .deliver("evt_r", REFUNDED, "pi_1").build())
    assert check_conservation(h.input(observe({"fan_0": 0}), truth)).valid is True
    verdict = check_conservation(h.input(observe({"fan_0": 250}), truth))
    assert verdict.valid is False
    assert ("the 250 bonus tokens of the 5000-token package were not clawed back"
            in verdict.anomalies[0].explanation)
