"""debt: never a balance beside a debt; the status says which accounts owe."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from harness.checkers.debt import check_debt
from tests.unit.conftest import H, observe


def test_debt_holds_for_debt_alone_and_balance_alone() -> None:
    h = H()
    h.read("fan_0", 0, debt=40, status="debt")
    h.read("creator_0", 25)
    verdict = check_debt(h.input(observe({"fan_0": (0, 40), "creator_0": 25}), None))
    assert verdict.valid is True, verdict
    assert verdict.counts == {"answers_checked": 2, "accounts_checked": 2,
                              "accounts_in_debt": 1, "statuses_checked": 2}


def test_debt_flags_a_read_holding_both() -> None:
    h = H()
    index = h.read("fan_0", 30, debt=10, status="debt")
    verdict = check_debt(h.input(None, None))
    assert verdict.valid is False
    anomaly = verdict.anomalies[0]
    assert anomaly.kind == "balance_beside_debt"
    assert index in anomaly.event_indexes
    assert anomaly.user == "fan_0"
    assert "balance of 30 tokens beside a debt of 10" in anomaly.explanation


def test_debt_flags_an_end_state_holding_both() -> None:
    verdict = check_debt(H().input(observe({"fan_0": (500, 300)}), None))
    assert verdict.valid is False
    assert [a.kind for a in verdict.anomalies] == ["balance_beside_debt"]
    assert "holding 500 tokens and owing 300" in verdict.anomalies[0].explanation


def test_debt_flags_a_status_that_disagrees_with_the_debt() -> None:
    owing = observe({"fan_0": (0, 800)}, status={"fan_0": "active"})
    verdict = check_debt(H().input(owing, None))
    assert [a.kind for a in verdict.anomalies] == ["debt_status"]
    assert verdict.anomalies[0].expected == "debt"
    clear = observe({"fan_0": 0}, status={"fan_0": "debt"})
    verdict = check_debt(H().input(clear, None))
    assert [a.kind for a in verdict.anomalies] == ["debt_status"]
    assert verdict.anomalies[0].expected == "not debt"


def test_debt_does_not_judge_a_status_the_observer_does_not_report() -> None:
    observation = observe({"fan_0": (0, 800)})
    unreported = replace(observation, accounts={
        user: replace(account, status=None) for user, account in observation.accounts.items()})
    verdict = check_debt(H().input(unreported, None))
    assert verdict.valid is True, verdict
    assert verdict.counts["statuses_checked"] == 0


def test_debt_is_unknown_with_nothing_read_or_observed() -> None:
    assert check_debt(H().input(None, None)).valid == "unknown"


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 1000)), min_size=1, max_size=8))
def test_debt_fires_exactly_when_some_account_holds_both(states: list[tuple[int, int]]) -> None:
    observation = observe({f"user_{i}": state for i, state in enumerate(states)})
    verdict = check_debt(H().input(observation, None))
    both = sum(1 for balance, debt in states if balance > 0 and debt > 0)
    assert verdict.valid is (both == 0)
    assert verdict.counts.get("balance_beside_debt", 0) == both
