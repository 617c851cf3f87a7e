"""refunds: cumulative clawbacks within what was minted; shortfalls recorded as debt."""

from __future__ import annotations

import pytest

from harness.checkers.refunds import check_refunds
from harness.model import Kind
from tests.unit.conftest import REFUNDED, SUCCEEDED, H, T, observe

DISPUTE_CREATED = "charge.dispute.created"
DISPUTE_CLOSED = "charge.dispute.closed"


def _refunded(refunded_cents: int, refund_events: int = 1, *, dispute: str | None = None) -> T:
    """pi_1: 1000 tokens for 5000 cents, credited, with refund events all acknowledged."""
    truth = (T().intent("pi_1", "fan_0", 1000, refunded_cents=refunded_cents,
                        dispute_status=dispute)
             .deliver("evt_s", SUCCEEDED, "pi_1"))
    for i in range(refund_events):
        truth.deliver(f"evt_r{i}", REFUNDED, "pi_1")
    return truth


def _history(*refunds: int | None) -> H:
    h = H()
    h.purchase("fan_0", "p_0", 1000, "pi_1")
    for cents in refunds:
        h.refund("p_0", cents, "pi_1")
    return h


def test_refunds_hold_for_a_partial_refund_taken_proportionally() -> None:
    verdict = check_refunds(_history(2500).input(observe({"fan_0": 500}, clawed={"fan_0": 500}),
                                                 _refunded(2500).build()))
    assert verdict.valid is True, verdict
    assert verdict.counts["intents_refunded"] == 1


def test_refunds_deduce_the_clawback_of_a_purchase_only_account() -> None:
    truth = _refunded(2500).build()
    assert check_refunds(_history(2500).input(observe({"fan_0": 500}), truth)).valid is True
    verdict = check_refunds(_history(2500).input(observe({"fan_0": 0}), truth))
    assert verdict.valid is False
    assert "whole purchase" in verdict.anomalies[0].explanation


@pytest.mark.parametrize(("clawed", "hint"), [(1300, ""), (1000, "whole purchase")])
def test_refunds_flag_partial_refunds_not_taken_cumulatively(clawed: int, hint: str) -> None:
    truth = _refunded(4000, refund_events=2).build()
    h = _history(2500, 1500)
    good = check_refunds(h.input(observe({"fan_0": 200}, clawed={"fan_0": 800}), truth))
    assert good.valid is True, good
    verdict = check_refunds(h.input(observe({"fan_0": 1000 - clawed if clawed <= 1000 else 0},
                                            clawed={"fan_0": clawed}), truth))
    assert verdict.valid is False
    kinds = {a.kind for a in verdict.anomalies}
    assert kinds <= {"wrong_clawback", "clawback_exceeds_minted"}
    assert hint in verdict.anomalies[0].explanation


def test_refunds_flag_a_refund_applied_twice() -> None:
    verdict = check_refunds(_history(2500).input(observe({"fan_0": 0}, clawed={"fan_0": 1000}),
                                                 _refunded(2500, refund_events=1)
                                                 .deliver("evt_r0", REFUNDED, "pi_1").build()))
    assert verdict.valid is False
    assert "applied twice" in verdict.anomalies[0].explanation


def test_refunds_flag_a_clawback_beyond_what_was_minted() -> None:
    verdict = check_refunds(_history(None).input(observe({"fan_0": (0, 500)},
                                                         clawed={"fan_0": 1500}),
                                                 _refunded(5000).build()))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "clawback_exceeds_minted"


def test_refunds_hold_for_a_refund_into_debt() -> None:
    h = _history()
    h.tip("fan_0", "creator_0", 800)
    h.refund("p_0", None, "pi_1")
    truth = _refunded(5000).build()
    verdict = check_refunds(h.input(observe({"fan_0": (0, 800), "creator_0": 800},
                                            clawed={"fan_0": 1000}), truth))
    assert verdict.valid is True, verdict
    assert verdict.counts["accounts_in_debt"] == 1


def test_refunds_flag_a_shortfall_not_recorded_as_debt() -> None:
    h = _history()
    h.tip("fan_0", "creator_0", 800)
    h.refund("p_0", None, "pi_1")
    truth = _refunded(5000).build()
    verdict = check_refunds(h.input(observe({"fan_0": 0, "creator_0": 800},
                                            clawed={"fan_0": 200}), truth))
    assert verdict.valid is False
    assert {a.kind for a in verdict.anomalies} == {"wrong_clawback", "missing_debt"}


def test_refunds_hold_for_a_refund_delivered_before_the_success() -> None:
    truth = (T().intent("pi_1", "fan_0", 1000, refunded_cents=2500)
             .deliver("evt_r", REFUNDED, "pi_1").deliver("evt_s", SUCCEEDED, "pi_1").build())
    h = _history(2500)
    assert check_refunds(h.input(observe({"fan_0": 500}, clawed={"fan_0": 500}),
                                 truth)).valid is True
    dropped = check_refunds(h.input(observe({"fan_0": 1000}, clawed={"fan_0": 0}), truth))
    assert dropped.valid is False
    assert "dropped" in dropped.anomalies[0].explanation


def test_refunds_take_nothing_before_a_success_that_never_came() -> None:
    truth = (T().intent("pi_1", "fan_0", 1000, refunded_cents=2500)
             .deliver("evt_r", REFUNDED, "pi_1").build())
    assert check_refunds(_history(2500).input(observe({"fan_0": 0}, clawed={"fan_0": 0}),
                                              truth)).valid is True


@pytest.mark.parametrize(("status", "clawed", "valid"), [
    ("lost", 1000, True), ("lost", 0, False), ("won", 0, True), ("won", 1000, True)])
def test_refunds_disputes_take_everything_and_a_won_one_gives_it_back(
        status: str, clawed: int, valid: bool) -> None:
    truth = (T().intent("pi_1", "fan_0", 1000, dispute_status=status)
             .deliver("evt_s", SUCCEEDED, "pi_1").deliver("evt_d", DISPUTE_CREATED, "pi_1")
             .deliver("evt_c", DISPUTE_CLOSED, "pi_1").build())
    verdict = check_refunds(_history().input(observe({"fan_0": 1000 - clawed},
                                                     clawed={"fan_0": clawed}), truth))
    assert (verdict.valid is True) == valid, verdict


def test_refunds_are_unknown_without_refunds_or_debt() -> None:
    verdict = check_refunds(_history().input(observe({"fan_0": 1000}),
                                             T().paid("pi_1", "fan_0", 1000).build()))
    assert verdict.valid == "unknown"
    assert check_refunds(_history().input(observe({"fan_0": 0}), None)).valid == "unknown"


@pytest.mark.parametrize(("fan", "creator"), [((0, 500), 500), ((0, 800), 800)])
def test_refunds_hold_whether_an_indeterminate_tip_before_the_refund_applied(
        fan: tuple[int, int], creator: int) -> None:
    h = _history()
    h.tip("fan_0", "creator_0", 500)
    h.tip("fan_0", "creator_0", 300, Kind.INFO)
    h.refund("p_0", None, "pi_1")
    verdict = check_refunds(h.input(observe({"fan_0": fan, "creator_0": creator},
                                            clawed={"fan_0": 1000}), _refunded(5000).build()))
    assert verdict.valid is True, verdict


def _disputed(status: str) -> T:
    """pi_1: 1000 tokens, credited, disputed, the dispute closed ``status``."""
    return (T().intent("pi_1", "fan_0", 1000, dispute_status=status)
            .deliver("evt_s", SUCCEEDED, "pi_1").deliver("evt_d", DISPUTE_CREATED, "pi_1")
            .deliver("evt_c", DISPUTE_CLOSED, "pi_1"))


def test_refunds_name_a_lost_dispute_given_back_not_a_dropped_refund() -> None:
    truth = _disputed("lost").build()
    # Measured by net change (no clawed-back column): lost keeps the 1000 taken.
    assert check_refunds(_history().input(observe({"fan_0": (0, 0)}), truth)).valid is True
    verdict = check_refunds(_history().input(observe({"fan_0": 1000}), truth))
    assert verdict.valid is False
    text = verdict.anomalies[0].explanation
    assert "closed lost" in text
    assert "given back" in text
    assert "refund" not in text.split("allow")[-1]  # no refund was involved


def _bonus_refunded(refunded_cents: int) -> tuple[H, T]:
    """A 5000-token package minting 5250 for 25000 cents, refunded ``refunded_cents``."""
    h = H()
    h.purchase("fan_0", "p_0", 5000, "pi_1")
    h.refund("p_0", refunded_cents, "pi_1")
    truth = (T().intent("pi_1", "fan_0", 5250, amount_cents=25000,
                        refunded_cents=refunded_cents)
             .deliver("evt_s", SUCCEEDED, "pi_1").deliver("evt_r", REFUNDED, "pi_1"))
    return h, truth


def test_refunds_name_the_bonus_tokens_not_clawed_back() -> None:
    h, truth = _bonus_refunded(25000)
    good = check_refunds(h.input(observe({"fan_0": 0}, clawed={"fan_0": 5250}), truth.build()))
    assert good.valid is True, good
    verdict = check_refunds(h.input(observe({"fan_0": 250}, clawed={"fan_0": 5000}),
                                    truth.build()))
    assert verdict.valid is False
    assert ("the 250 bonus tokens of the 5000-token package were not clawed back"
            in verdict.anomalies[0].explanation)


def test_refunds_name_the_bonus_share_of_a_partial_refund() -> None:
    h, truth = _bonus_refunded(10000)  # 40%: 2100 tokens, of which 100 are bonus
    good = check_refunds(h.input(observe({"fan_0": 3150}, clawed={"fan_0": 2100}),
                                 truth.build()))
    assert good.valid is True, good
    verdict = check_refunds(h.input(observe({"fan_0": 3250}, clawed={"fan_0": 2000}),
                                    truth.build()))
    assert verdict.valid is False
    assert "the bonus share (100 of the 250 bonus tokens of the 5000-token package)" in (
        verdict.anomalies[0].explanation)
