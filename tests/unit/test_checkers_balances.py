"""non_negative and ledger_drift."""

from __future__ import annotations

from harness.checkers.balances import check_ledger_drift, check_non_negative
from harness.model import Totals
from tests.unit.conftest import H, observe


def test_non_negative_holds_for_reads_answers_and_end_state() -> None:
    h = H()
    h.tip("fan_0", "creator_0", 10, balance=0)
    h.read("fan_0", 0)
    verdict = check_non_negative(h.input(observe({"fan_0": (0, 30), "creator_0": 10}), None))
    assert verdict.valid is True, verdict
    assert verdict.counts == {"answers_checked": 2, "accounts_checked": 2}


def test_non_negative_flags_a_negative_read() -> None:
    h = H()
    index = h.read("fan_0", -5)
    verdict = check_non_negative(h.input(None, None))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "negative_balance"
    assert index in verdict.anomalies[0].event_indexes


def test_non_negative_flags_a_negative_spend_answer_and_end_debt() -> None:
    h = H()
    h.tip("fan_0", "creator_0", 10, balance=-10)
    verdict = check_non_negative(h.input(observe({"fan_0": (0, -3)}), None))
    assert verdict.valid is False
    assert {a.kind for a in verdict.anomalies} == {"negative_balance", "negative_debt"}
    assert verdict.counts["negative_balance"] == 1


def test_non_negative_is_unknown_with_nothing_read() -> None:
    assert check_non_negative(H().input(None, None)).valid == "unknown"


def test_ledger_drift_holds_when_balances_match_their_ledgers() -> None:
    observation = observe({"fan_0": 70, "creator_0": 30}, ledger={"fan_0": 70, "creator_0": 30})
    verdict = check_ledger_drift(H().input(observation, None))
    assert verdict.valid is True
    assert verdict.counts["accounts_checked"] == 2


def test_ledger_drift_flags_a_balance_off_its_ledger() -> None:
    observation = observe({"fan_0": 0, "creator_0": 30}, ledger={"fan_0": -40, "creator_0": 30})
    verdict = check_ledger_drift(H().input(observation, None))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "drift"
    assert verdict.anomalies[0].user == "fan_0"
    assert "40 tokens appeared" in verdict.anomalies[0].explanation


def test_ledger_drift_flags_drift_the_service_reports() -> None:
    totals = Totals(minted_tokens=0, clawed_back_tokens=0, balances_tokens=0, debts_tokens=0,
                    drift_accounts_count=2)
    verdict = check_ledger_drift(H().input(observe({"fan_0": 0}, totals=totals), None))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "drift_reported"


def test_ledger_drift_ignores_drift_the_service_reported_before_the_run() -> None:
    def totals(drift_accounts_count: int) -> Totals:
        return Totals(minted_tokens=0, clawed_back_tokens=0, balances_tokens=0,
                      debts_tokens=0, drift_accounts_count=drift_accounts_count)

    initial = observe({"fan_0": 0}, totals=totals(3))
    same = observe({"fan_0": 0}, ledger={"fan_0": 0}, totals=totals(3))
    verdict = check_ledger_drift(H().input(same, None, initial=initial))
    assert verdict.valid is True, verdict
    more = observe({"fan_0": 0}, ledger={"fan_0": 0}, totals=totals(4))
    verdict = check_ledger_drift(H().input(more, None, initial=initial))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "drift_reported"
    assert (verdict.anomalies[0].expected, verdict.anomalies[0].observed) == (3, 4)
    assert "3 before the run" in verdict.anomalies[0].explanation


def test_ledger_drift_is_unknown_without_a_visible_ledger() -> None:
    assert check_ledger_drift(H().input(observe({"fan_0": 0}), None)).valid == "unknown"
    assert check_ledger_drift(H().input(None, None)).valid == "unknown"
