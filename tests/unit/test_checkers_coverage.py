"""coverage: one predicate per tag; missing tags make the run "unknown", never False."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from harness.checkers.base import CheckInput
from harness.checkers.coverage import PROVOCATIONS, check_coverage, validate_tags
from harness.errors import UsageError
from harness.model import DeliveryVariant, F, FaultWindow, Kind
from tests.unit.conftest import REFUNDED, SUCCEEDED, H, T, observe

DISPUTE_CREATED = "charge.dispute.created"


def _quiet() -> CheckInput:
    """A run that provokes nothing: one purchase, one delivery, one read."""
    h = H()
    h.purchase("fan_0", "p_0", 500, "pi_1")
    h.read("fan_0", 500)
    return h.input(observe({"fan_0": 500}), T().paid("pi_1", "fan_0", 500).build())


def _overlapping(first: dict[str, object], second: dict[str, object],
                 f: F = F.TIP) -> CheckInput:
    h = H()
    a = h.invoke(F.TIP, first)  # type: ignore[arg-type]
    b = h.invoke(f, second)  # type: ignore[arg-type]
    h.complete(a)
    h.complete(b)
    return h.input(None, None)


def _tip(kind: Kind, error: str | None = None) -> CheckInput:
    h = H()
    h.tip("fan_0", "creator_0", 10, kind, error=error)
    return h.input(None, None)


def _purchase(kind: Kind, status: str = "succeeded", error: str | None = None) -> CheckInput:
    h = H()
    h.purchase("fan_0", "p_0", 500, "pi_1", kind, status=status, error=error)
    return h.input(None, None)


def _deliveries(*steps: tuple[str, str, int | None, DeliveryVariant]) -> CheckInput:
    truth = T().intent("pi_1", "fan_0", 1000, refunded_cents=1000)
    for event_id, event_type, status, variant in steps:
        truth.deliver(event_id, event_type, "pi_1", status, variant)
    return H().input(None, truth.build())


def _refunds(*cents: int | None) -> CheckInput:
    h = H()
    h.purchase("fan_0", "p_0", 1000, "pi_1")
    for amount in cents:
        h.refund("p_0", amount, "pi_1")
    return h.input(None, None)


def _dispute_closed(outcome: str) -> CheckInput:
    h = H()
    h.op(F.DISPUTE_CLOSE, {"dispute": "d_0", "outcome": outcome})
    return h.input(None, None)


def _webhook(variant: DeliveryVariant) -> CheckInput:
    h = H()
    h.webhook(None, SUCCEEDED, variant, Kind.FAIL, status=400)
    return h.input(None, None)


def _keyed(second_amount: int, kind: Kind = Kind.OK, error: str | None = None) -> CheckInput:
    h = H()
    h.tip("fan_0", "creator_0", 10, key="k", tip_id="t_1")
    h.tip("fan_0", "creator_0", second_amount, kind, key="k", tip_id="t_1", error=error)
    return h.input(None, None)


def _charges(*steps: tuple[int, Kind, str | None]) -> CheckInput:
    h = H()
    h.call_open("fan_0", "creator_0", "c1", 10)
    for minute, kind, error in steps:
        h.charge("fan_0", "creator_0", "c1", minute, 10, kind, error=error)
    return h.input(None, None)


def _refund_mid_call() -> CheckInput:
    h = H()
    h.purchase("fan_0", "p_0", 1000, "pi_1")
    h.call_open("fan_0", "creator_0", "c1", 10)
    h.refund("p_0", None, "pi_1")
    h.call_end("fan_0", "c1")
    return h.input(None, None)


_G = DeliveryVariant.GENUINE
EXAMPLES: dict[str, Callable[[], CheckInput]] = {
    "tip_succeeded": lambda: _tip(Kind.OK),
    "tip_refused_for_funds": lambda: _tip(Kind.FAIL, "insufficient_funds"),
    "spend_race": lambda: _overlapping(
        {"sender": "fan_0", "recipient": "creator_0", "amount_tokens": 1},
        {"user": "fan_0", "creator": "creator_1", "call": "c1", "minute": 1,
         "amount_tokens": 1}, F.CALL_CHARGE),
    "mutual_tips": lambda: _overlapping(
        {"sender": "fan_0", "recipient": "fan_1", "amount_tokens": 1},
        {"sender": "fan_1", "recipient": "fan_0", "amount_tokens": 1}),
    "requires_action": lambda: _purchase(Kind.OK, status="requires_action"),
    "card_declined": lambda: _purchase(Kind.FAIL, error="card_declined"),
    "duplicate_delivery_absorbed": lambda: _deliveries(("e1", SUCCEEDED, 200, _G),
                                                       ("e1", SUCCEEDED, 200,
                                                        DeliveryVariant.DUPLICATE)),
    "replay_absorbed": lambda: _deliveries(("e1", SUCCEEDED, 200, _G),
                                           ("e1", SUCCEEDED, 200, DeliveryVariant.REPLAY)),
    "refund_before_success": lambda: _deliveries(("e2", REFUNDED, 200, _G),
                                                 ("e1", SUCCEEDED, 200, _G)),
    "dispute_before_success": lambda: _deliveries(("e2", DISPUTE_CREATED, 200, _G),
                                                  ("e1", SUCCEEDED, 200, _G)),
    "partial_refund": lambda: _refunds(1000),
    "multiple_partial_refunds": lambda: _refunds(1000, 1000),
    "refund_into_debt": lambda: H().input(observe({"fan_0": (0, 40)}), None),
    "dispute_opened": lambda: _deliveries(("e1", SUCCEEDED, 200, _G),
                                          ("e2", DISPUTE_CREATED, 200, _G)),
    "dispute_won": lambda: _dispute_closed("won"),
    "dispute_lost": lambda: _dispute_closed("lost"),
    "forgery_rejected": lambda: _webhook(DeliveryVariant.TAMPERED),
    "stale_rejected": lambda: _webhook(DeliveryVariant.STALE),
    "idempotent_replay": lambda: _keyed(10),
    "key_reuse_rejected": lambda: _keyed(20, Kind.FAIL, "idempotency_conflict"),
    "call_charged": lambda: _charges((1, Kind.OK, None)),
    "call_ended_for_funds": lambda: _charges((1, Kind.FAIL, "insufficient_funds")),
    "charge_after_end_rejected": lambda: _charges((1, Kind.FAIL, "call_ended")),
    "duplicate_minute_absorbed": lambda: _charges((1, Kind.OK, None), (1, Kind.OK, None)),
    "refund_mid_call": _refund_mid_call,
    "retry_with_same_key": lambda: _keyed(10, Kind.INFO),
    "indeterminate_op": lambda: _tip(Kind.INFO),
    "fault_healed": lambda: _faulted(recovered=True),
    "op_during_fault": lambda: _faulted(recovered=False),
}


def _faulted(*, recovered: bool) -> CheckInput:
    """A tip in flight across a kill that the target recovered from (or never did)."""
    h = H()
    h.tip("fan_0", "creator_0", 10, Kind.INFO, error="connection_reset")
    window = FaultWindow(name="f0", kind="kill_service", link=None, description="kill service",
                         started_ns=0, healed_ns=1, recovered_ns=2 if recovered else None)
    return dataclasses.replace(h.input(None, None), faults=(window,))


def test_coverage_a_fault_that_never_recovered_is_not_healed() -> None:
    assert PROVOCATIONS["fault_healed"](_faulted(recovered=False)) is False


def test_coverage_every_tag_has_an_example() -> None:
    assert set(EXAMPLES) == set(PROVOCATIONS)


@pytest.mark.parametrize("tag", sorted(PROVOCATIONS))
def test_coverage_predicate_sees_its_tag(tag: str) -> None:
    assert PROVOCATIONS[tag](EXAMPLES[tag]()) is True


@pytest.mark.parametrize("tag", sorted(PROVOCATIONS))
def test_coverage_predicate_is_false_on_a_quiet_run(tag: str) -> None:
    assert PROVOCATIONS[tag](_quiet()) is False


def test_coverage_sequential_tips_are_not_a_race() -> None:
    h = H()
    h.tip("fan_0", "fan_1", 1)
    h.tip("fan_1", "fan_0", 1)
    h.tip("fan_0", "creator_0", 1)
    assert PROVOCATIONS["mutual_tips"](h.input(None, None)) is False
    assert PROVOCATIONS["spend_race"](h.input(None, None)) is False


def test_coverage_refund_after_the_call_ended_is_not_mid_call() -> None:
    h = H()
    h.purchase("fan_0", "p_0", 1000, "pi_1")
    h.call_open("fan_0", "creator_0", "c1", 10)
    h.call_end("fan_0", "c1")
    h.refund("p_0", None, "pi_1")
    assert PROVOCATIONS["refund_mid_call"](h.input(None, None)) is False


def test_coverage_holds_when_every_tag_happened() -> None:
    inp = EXAMPLES["tip_succeeded"]()
    verdict = check_coverage(CheckInput(history=inp.history, observation=None, truth=None,
                                        provokes=("tip_succeeded", "tip_succeeded")))
    assert verdict.valid is True
    assert verdict.counts == {"tags": 1, "tags_provoked": 1, "tags_missing": 0}


def test_coverage_is_unknown_naming_the_missing_tags() -> None:
    inp = EXAMPLES["tip_succeeded"]()
    verdict = check_coverage(CheckInput(history=inp.history, observation=None, truth=None,
                                        provokes=("tip_succeeded", "spend_race", "mutual_tips")))
    assert verdict.valid == "unknown"
    assert verdict.note == "never provoked: spend_race, mutual_tips"
    assert not verdict.anomalies


def test_coverage_with_nothing_to_provoke_is_unknown_not_a_vacuous_pass() -> None:
    assert check_coverage(_quiet()).valid == "unknown"


def test_coverage_unknown_tags_raise_naming_them() -> None:
    with pytest.raises(UsageError, match="no_such_tag"):
        validate_tags(["tip_succeeded", "no_such_tag"])
    with pytest.raises(UsageError, match="known tags"):
        check_coverage(CheckInput(history=[], observation=None, truth=None,
                                  provokes=("typo",)))
