"""The pure arithmetic of the reference service: packages, debt-first credits, clawbacks."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_impl.money import (
    PACKAGES,
    DisputeStatus,
    clawback_target_tokens,
    package_for,
    split_clawback,
    split_credit,
)


@pytest.mark.parametrize(("tokens", "amount_cents", "minted_tokens"), [
    (100, 500, 100), (500, 2500, 500), (1000, 5000, 1000),
    (5000, 25000, 5250), (10000, 50000, 10500),
])
def test_package_prices_and_bonuses_follow_the_price_table(
        tokens: int, amount_cents: int, minted_tokens: int) -> None:
    package = package_for(tokens)
    assert package is not None
    assert (package.amount_cents, package.minted_tokens) == (amount_cents, minted_tokens)


@pytest.mark.parametrize("tokens", [0, -100, 99, 101, 2**63, 250, True, 1.5, "500", None])
def test_package_for_anything_but_a_package_size_is_none(tokens: object) -> None:
    assert package_for(tokens) is None  # type: ignore[arg-type]


def test_there_are_exactly_five_packages() -> None:
    assert sorted(PACKAGES) == [100, 500, 1000, 5000, 10000]


def test_a_credit_pays_debt_first_then_the_balance() -> None:
    split = split_credit(amount_tokens=500, debt_tokens=400)
    assert (split.balance_tokens, split.debt_tokens) == (100, 400)
    split = split_credit(amount_tokens=100, debt_tokens=400)
    assert (split.balance_tokens, split.debt_tokens) == (0, 100)


def test_a_clawback_takes_the_balance_first_and_the_rest_becomes_debt() -> None:
    split = split_clawback(amount_tokens=500, balance_tokens=100)
    assert (split.balance_tokens, split.debt_tokens) == (100, 400)
    split = split_clawback(amount_tokens=50, balance_tokens=100)
    assert (split.balance_tokens, split.debt_tokens) == (50, 0)


@given(amount=st.integers(0, 10**12), debt=st.integers(0, 10**12))
def test_a_credit_never_loses_or_invents_tokens(amount: int, debt: int) -> None:
    split = split_credit(amount_tokens=amount, debt_tokens=debt)
    assert split.balance_tokens + split.debt_tokens == amount
    assert split.debt_tokens <= debt
    if split.balance_tokens > 0:
        assert split.debt_tokens == debt  # nothing reaches the balance while debt remains


@given(amount=st.integers(0, 10**12), balance=st.integers(0, 10**12))
def test_a_clawback_never_takes_more_than_the_balance(amount: int, balance: int) -> None:
    split = split_clawback(amount_tokens=amount, balance_tokens=balance)
    assert split.balance_tokens + split.debt_tokens == amount
    assert split.balance_tokens <= balance
    if split.debt_tokens > 0:
        assert split.balance_tokens == balance  # debt only once the balance is gone


def test_refund_target_is_floor_of_minted_times_refunded_over_amount() -> None:
    target = clawback_target_tokens(minted_tokens=5250, amount_cents=25000,
                                    refunded_cents=1001, dispute_status=None)
    assert target == 5250 * 1001 // 25000 == 210


def test_a_refund_beyond_the_amount_takes_back_at_most_everything() -> None:
    assert clawback_target_tokens(minted_tokens=500, amount_cents=2500,
                                  refunded_cents=9999, dispute_status=None) == 500


@pytest.mark.parametrize(("status", "expected"), [
    (None, 100), (DisputeStatus.OPEN, 500), (DisputeStatus.LOST, 500), (DisputeStatus.WON, 100),
])
def test_a_dispute_takes_everything_while_open_or_lost_and_gives_it_back_when_won(
        status: DisputeStatus | None, expected: int) -> None:
    assert clawback_target_tokens(minted_tokens=500, amount_cents=2500, refunded_cents=500,
                                  dispute_status=status) == expected


def test_nothing_is_taken_back_before_the_amount_is_known() -> None:
    assert clawback_target_tokens(minted_tokens=500, amount_cents=None, refunded_cents=0,
                                  dispute_status=None) == 0


@st.composite
def _payment_and_refund_events(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    """A payment, and the cumulative ``amount_refunded`` of each refund event, shuffled."""
    amount_cents = draw(st.integers(1, 10**7))
    minted_tokens = draw(st.integers(1, 10**6))
    increments = draw(st.lists(st.integers(1, amount_cents), min_size=1, max_size=8))
    cumulative = list(itertools.accumulate(increments))
    cumulative = [min(value, amount_cents) for value in cumulative]
    delivered = draw(st.permutations(cumulative + draw(st.lists(st.sampled_from(cumulative),
                                                                max_size=4))))
    return amount_cents, minted_tokens, list(delivered)


@settings(max_examples=300)
@given(_payment_and_refund_events())
def test_partial_refunds_in_any_order_claw_back_floor_of_the_largest_total(
        case: tuple[int, int, list[int]]) -> None:
    """What the service does per event: R = max(R, event's R); take target − taken."""
    amount_cents, minted_tokens, delivered = case
    refunded_cents = taken_tokens = 0
    for event_refunded_cents in delivered:
        refunded_cents = max(refunded_cents, event_refunded_cents)
        target = clawback_target_tokens(minted_tokens=minted_tokens, amount_cents=amount_cents,
                                        refunded_cents=refunded_cents, dispute_status=None)
        assert target >= taken_tokens, "a refund event never gives tokens back"
        taken_tokens = target
        assert taken_tokens <= minted_tokens
    assert taken_tokens == minted_tokens * max(delivered) // amount_cents
