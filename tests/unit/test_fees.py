"""Fees: the rule's arithmetic, its profile keys, and checkers that model them.

A service that keeps 20% of every tip is correct when the recipient holds 80% and the
platform account the rest; the same end state without the fee model is a false alarm,
and a platform that received more (or a recipient who kept the fee) is a broken
invariant.
"""

from __future__ import annotations

import copy
import math
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.checkers import check_all
from harness.checkers.conservation import check_conservation
from harness.checkers.reconciliation import check_reconciliation
from harness.errors import UsageError
from harness.fees import NO_FEES, ROUNDINGS, FeeRule, Fees
from harness.history import HistoryWriter, load
from harness.model import F, Kind
from harness.targets.profile import parse_profile
from tests.unit.conftest import H, T, observe
from tests.unit.test_profile_keys import PROBE_PROFILE

GIFT_FEE = Fees({F.TIP: FeeRule(account="platform", percent=Fraction(20), rounding="up")})
MINUTE_FEE = Fees({F.CALL_CHARGE: FeeRule(account="platform", fixed_tokens=2)})


# -- the rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "fee"), [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 2),
                                             (7, 2), (10, 2), (11, 3), (0, 0), (-3, 0)])
def test_a_twenty_percent_fee_rounded_up_leaves_the_recipient_floor_of_eighty(
        amount: int, fee: int) -> None:
    rule = GIFT_FEE.rules[F.TIP]
    assert rule.fee_tokens(amount) == fee
    if amount > 0:
        assert amount - fee == amount * 8 // 10


@given(amount=st.integers(min_value=1, max_value=10**9),
       percent=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99.99"), places=2),
       rounding=st.sampled_from(ROUNDINGS))
def test_a_percentage_fee_agrees_with_decimal_rounding_and_never_exceeds_the_amount(
        amount: int, percent: Decimal, rounding: str) -> None:
    rule = FeeRule(account="platform", percent=Fraction(percent), rounding=rounding)
    exact = Decimal(amount) * percent / 100
    expected = {"down": math.floor(exact), "up": math.ceil(exact),
                "half_up": int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP)),
                "half_even": int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))}
    fee = rule.fee_tokens(amount)
    assert fee == min(expected[rounding], amount)
    assert 0 <= fee <= amount


def test_a_fixed_fee_is_never_more_than_the_amount() -> None:
    rule = MINUTE_FEE.rules[F.CALL_CHARGE]
    assert [rule.fee_tokens(n) for n in (1, 2, 3, 50)] == [1, 2, 2, 2]


@pytest.mark.parametrize("fees", [GIFT_FEE, MINUTE_FEE, NO_FEES,
                                  Fees({F.TIP: FeeRule(account="fees", percent=Fraction("2.5"),
                                                       rounding="half_even")})])
def test_fees_round_trip_through_their_record(fees: Fees) -> None:
    assert Fees.from_record(fees.record() or None) == fees


@pytest.mark.parametrize("record", [[], {"tip": {"percent": "20"}},
                                    {"tip": {"account": "p", "percent": "120"}},
                                    {"tip": {"account": "p", "percent": "x"}},
                                    {"tip": {"account": "p", "fixed_tokens": 0}},
                                    {"read_balance": {"account": "p", "fixed_tokens": 1}}])
def test_a_bad_fees_record_is_refused(record: Any) -> None:
    with pytest.raises(ValueError):
        Fees.from_record(record)


def test_the_history_keeps_the_fees_so_a_rejudgement_agrees(tmp_path: Any) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        writer.begin(name="concurrent-tips", seed=1, params={}, users={"fan_0": "fan"},
                     target_ids={"fan_0": "u1"}, fees=GIFT_FEE)
        writer.end({})
    (run,) = load(path)
    assert run.fees == GIFT_FEE


# -- the profile -------------------------------------------------------------------------

def _profile(fees: dict[str, Any], **observer: Any) -> Any:
    data = copy.deepcopy(PROBE_PROFILE)
    data["observer"].update({"system_accounts": {"platform": "{env:PLATFORM_ID}"}, **observer})
    data["fees"] = fees
    return parse_profile(data, source="probe.toml", environ={"PLATFORM_ID": "acct_9"})


def test_the_profile_reads_fees_and_the_system_accounts_they_go_to() -> None:
    profile = _profile({"tip": {"percent": 20, "rounding": "up", "account": "platform"},
                        "call_charge": {"fixed_tokens": 2, "account": "platform"}})
    assert profile.fees == Fees({**GIFT_FEE.rules, **MINUTE_FEE.rules})
    assert profile.observer.system_accounts == {"platform": "acct_9"}
    assert profile.fees.rules[F.TIP].describe() == "20% rounded up, to platform"


@pytest.mark.parametrize(("fees", "observer", "says"), [
    ({"tip": {"percent": 20, "account": "house"}}, {}, "system_accounts"),
    ({"tip": {"percent": 0, "account": "platform"}}, {}, "more than 0"),
    ({"tip": {"percent": True, "account": "platform"}}, {}, "more than 0"),
    ({"tip": {"percent": 20, "rounding": "nearest", "account": "platform"}}, {}, "half_even"),
    ({"tip": {"percent": 20, "fixed_tokens": 1, "account": "platform"}}, {}, "known"),
    ({"tip": {"fixed_tokens": 1.5, "account": "platform"}}, {}, "whole number"),
    ({"tip": {"account": "platform"}}, {}, "percent"),
    ({"read_balance": {"fixed_tokens": 1, "account": "platform"}}, {}, "known"),
    ({}, {"system_accounts": {"fan_0": "x"}}, "no scenario user"),
    ({}, {"system_accounts": {"platform": "{env:UNSET_ID}"}}, "UNSET_ID"),
])
def test_a_bad_fee_or_system_account_is_refused_with_what_to_write(
        fees: dict[str, Any], observer: dict[str, Any], says: str) -> None:
    with pytest.raises(UsageError) as caught:
        _profile(fees, **observer)
    assert says in str(caught.value)


# -- the checkers ------------------------------------------------------------------------


def _tips() -> tuple[H, Any]:
    """A fan buys 1000 tokens and tips 7 and 300: fees of 2 and 60 at 20% rounded up."""
    h = H()
    h.purchase("fan_0", "p_0", 1000, "pi_1")
    h.tip("fan_0", "creator_0", 7)
    h.tip("fan_0", "creator_0", 300)
    return h, T().paid("pi_1", "fan_0", 1000).build()


def test_a_service_that_keeps_its_declared_fee_passes_every_checker() -> None:
    h, truth = _tips()
    start = observe({"fan_0": 0, "creator_0": 0, "platform": 40})
    end = observe({"fan_0": 693, "creator_0": 5 + 240, "platform": 40 + 2 + 60})
    verdicts = check_all(h.input(end, truth, initial=start, fees=GIFT_FEE))
    assert not [name for name, v in verdicts.items() if v.valid is False], verdicts
    held = ("non_negative", "conservation", "reconciliation", "debt")
    assert all(verdicts[name].valid is True for name in held), verdicts


def test_the_same_end_state_without_the_fee_declared_breaks_conservation() -> None:
    h, truth = _tips()
    end = observe({"fan_0": 693, "creator_0": 245})  # the platform account is not read
    verdict = check_conservation(h.input(end, truth))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "tokens_destroyed"


def test_a_fee_account_that_is_not_observed_makes_conservation_unknown() -> None:
    h, truth = _tips()
    end = observe({"fan_0": 693, "creator_0": 245})
    verdict = check_conservation(h.input(end, truth, fees=GIFT_FEE))
    assert verdict.valid == "unknown"
    assert "platform" in (verdict.note or "")


def test_a_fee_rounded_the_recipients_way_creates_tokens() -> None:
    h, truth = _tips()
    # The recipient got round-half-up(80%) of 7 (6, not 5) and the platform still 2.
    end = observe({"fan_0": 693, "creator_0": 6 + 240, "platform": 62})
    inp = h.input(end, truth, fees=GIFT_FEE)
    assert check_conservation(inp).valid is False
    assert check_conservation(inp).anomalies[0].kind == "tokens_created"
    verdict = check_reconciliation(inp)
    assert verdict.valid is False
    assert "creator_0" in verdict.anomalies[0].explanation


def test_a_fee_that_never_reached_the_platform_destroys_tokens() -> None:
    h, truth = _tips()
    end = observe({"fan_0": 693, "creator_0": 245, "platform": 0})
    verdict = check_conservation(h.input(end, truth, fees=GIFT_FEE))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "tokens_destroyed"


def test_a_call_charge_fee_goes_to_the_platform_too() -> None:
    h = H()
    h.purchase("fan_0", "p_0", 1000, "pi_1")
    h.call_open("fan_0", "creator_0", "c1", 10)
    h.charge("fan_0", "creator_0", "c1", 1, 10)
    h.charge("fan_0", "creator_0", "c1", 2, 10)
    truth = T().paid("pi_1", "fan_0", 1000).build()
    end = observe({"fan_0": 980, "creator_0": 16, "platform": 4})
    inp = h.input(end, truth, fees=MINUTE_FEE)
    assert check_conservation(inp).valid is True
    assert check_reconciliation(inp).valid is True
    assert check_reconciliation(h.input(observe({"fan_0": 980, "creator_0": 20,
                                                 "platform": 4}), truth,
                                        fees=MINUTE_FEE)).valid is False


def test_an_indeterminate_tip_may_or_may_not_have_paid_its_fee() -> None:
    h, truth = _tips()
    h.tip("fan_0", "creator_0", 100, Kind.INFO)
    for applied in (False, True):
        end = observe({"fan_0": 693 - 100 * applied, "creator_0": 245 + 80 * applied,
                       "platform": 62 + 20 * applied})
        inp = h.input(end, truth, fees=GIFT_FEE)
        assert check_conservation(inp).valid is True
        assert check_reconciliation(inp).valid is True


def test_run_json_says_the_fees_in_words_and_reads_them_back() -> None:
    import dataclasses
    import json

    from harness.report.record import RunRecord
    from tests.unit.test_report_record import SCHEMA_PATH, make_record, validate

    record = make_record()
    record = dataclasses.replace(record, target=dataclasses.replace(
        record.target, fees=Fees({**GIFT_FEE.rules, **MINUTE_FEE.rules}).describe()))
    data = json.loads(json.dumps(record.to_json()))
    assert data["target"]["fees"] == {"tip": "20% rounded up, to platform",
                                      "call_charge": "2 tokens each, to platform"}
    assert RunRecord.from_json(data) == record
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert validate(data, schema, schema) == []
    assert "fees" not in make_record().to_json()["target"]
