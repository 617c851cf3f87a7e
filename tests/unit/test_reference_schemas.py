"""Request bodies are strict; webhook events reduce to one operation and its arguments."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from reference_impl.errors import WebhookRejected
from reference_impl.schemas import (
    ChargeRequest,
    EmptyRequest,
    PaymentFacts,
    PurchaseRequest,
    TipRequest,
    describe,
    webhook_call,
)
from reference_impl.testing import charge_object, dispute_object, intent_object, stripe_event


@pytest.mark.parametrize("amount", [0, -1, 1.5, 1.0, "10", True, None, 2**63, 10**12 + 1, [], {}])
def test_tip_amount_must_be_a_json_integer_in_range(amount: Any) -> None:
    with pytest.raises(ValidationError):
        TipRequest.model_validate_json(json.dumps({"to": 7, "amount": amount}))


def test_tip_accepts_the_largest_amount() -> None:
    body = TipRequest.model_validate_json(json.dumps({"to": 7, "amount": 10**12}))
    assert (body.to, body.amount) == (7, 10**12)


def test_unknown_fields_are_refused_with_a_readable_message() -> None:
    with pytest.raises(ValidationError) as caught:
        TipRequest.model_validate_json('{"to": 7, "amount": 5, "memo": "hi"}')
    assert "memo" in describe(caught.value)


@pytest.mark.parametrize("tokens", [0, 99, 101, 1.5, "500", 2**63])
def test_purchase_of_a_non_package_is_refused(tokens: Any) -> None:
    with pytest.raises(ValidationError):
        PurchaseRequest.model_validate_json(
            json.dumps({"tokens": tokens, "payment_method": "pm_card_visa"}))


def test_purchase_payment_method_is_an_identifier() -> None:
    with pytest.raises(ValidationError):
        PurchaseRequest.model_validate_json('{"tokens": 500, "payment_method": "pm card"}')


def test_charge_minute_may_be_zero_but_not_negative() -> None:
    assert ChargeRequest.model_validate_json('{"minute": 0}').minute == 0
    with pytest.raises(ValidationError):
        ChargeRequest.model_validate_json('{"minute": -1}')


def test_empty_request_refuses_any_field() -> None:
    EmptyRequest.model_validate_json("{}")
    with pytest.raises(ValidationError):
        EmptyRequest.model_validate_json('{"now": true}')


def test_a_success_event_maps_to_the_credit_operation_with_its_facts() -> None:
    event = stripe_event("payment_intent.succeeded", intent_object(
        "pi_1", amount_cents=25000, user_id=1001, minted_tokens=5250, purchase_id=7),
        event_id="evt_1")
    name, arguments = webhook_call(event)
    assert name == "apply_payment_succeeded"
    assert arguments == {"event_id": "evt_1", "facts": PaymentFacts(
        event_id="evt_1", event_type="payment_intent.succeeded", intent_id="pi_1",
        purchase_id=7, user_id=1001, minted_tokens=5250, amount_cents=25000,
        currency="usd")}


def test_a_refund_event_carries_the_cumulative_refund() -> None:
    event = stripe_event("charge.refunded", charge_object(
        "pi_1", amount_cents=2500, refunded_cents=1250, user_id=1001, minted_tokens=500))
    name, arguments = webhook_call(event)
    assert name == "apply_charge_refunded"
    assert arguments["refunded_cents"] == 1250
    assert arguments["facts"].amount_cents == 2500


@pytest.mark.parametrize(("status", "won"), [("won", True), ("lost", False),
                                             ("warning_closed", True)])
def test_a_closed_dispute_says_whether_it_was_won(status: str, won: bool) -> None:
    event = stripe_event("charge.dispute.closed", dispute_object(
        "pi_1", status=status, amount_cents=2500, user_id=1001, minted_tokens=500))
    name, arguments = webhook_call(event)
    assert (name, arguments["won"]) == ("apply_dispute_closed", won)


def test_an_unknown_event_type_is_acknowledged() -> None:
    name, arguments = webhook_call(stripe_event("customer.created", {"id": "cus_1"},
                                                event_id="evt_9"))
    assert (name, arguments) == ("acknowledge_event",
                                 {"event_id": "evt_9", "event_type": "customer.created"})


@pytest.mark.parametrize("metadata", [{}, {"user_id": "x", "tokens": "500"},
                                      {"user_id": "-3", "tokens": "500"},
                                      {"user_id": 1001, "tokens": "500"}])
def test_metadata_that_is_not_ours_yields_no_user(metadata: dict[str, Any]) -> None:
    obj = intent_object("pi_1", amount_cents=2500, user_id=None, minted_tokens=None)
    obj["metadata"] = metadata
    _, arguments = webhook_call(stripe_event("payment_intent.succeeded", obj))
    assert arguments["facts"].user_id is None


@pytest.mark.parametrize("event", [
    {"id": "evt_1", "type": "payment_intent.succeeded"},
    {"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {"id": "pi_1"}}},
    {"id": "evt_1", "type": "charge.refunded", "data": {"object": {"id": "ch_1", "amount": 5}}},
    {"type": "customer.created", "data": {"object": {}}},
])
def test_an_event_missing_what_its_type_needs_is_malformed(event: dict[str, Any]) -> None:
    with pytest.raises(WebhookRejected) as caught:
        webhook_call(event)
    assert caught.value.code == "malformed_webhook"
