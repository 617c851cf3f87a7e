"""The provider's operations: one function per Stripe call, and the tables that route to them.

Each operation takes ``(state, object_id, params)``, validates the form parameters as
Stripe does, changes the records of ``state`` and emits at most one event through
``state.emit``; it returns the JSON body of a 200 or raises ``StripeError``. Only
``ProviderState.call`` runs them, which is what makes idempotency and atomicity hold.
Test payment methods are data (``CARDS``), not branches. No I/O here, no clock but the
state's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.provider.objects import (
    ChargeRecord,
    DisputeRecord,
    IntentRecord,
    RefundRecord,
    StripeError,
    charge_json,
    expand_param,
    int_param,
    intent_json,
    metadata_param,
    reject_unknown,
    str_param,
)

if TYPE_CHECKING:
    from harness.provider.state import ProviderState

__all__ = ["CARDS", "OPERATIONS", "READERS", "Card"]

Params = Mapping[str, Any]
Operation = Callable[["ProviderState", "str | None", Params], dict[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Card:
    """What confirming with a test payment method does."""

    outcome: str  # "succeed" | "requires_action" | "decline"
    code: str | None = None  # decline: Stripe's error code
    decline_code: str | None = None
    message: str | None = None


_DECLINED = "Your card was declined."
CARDS: Mapping[str, Card] = {
    "pm_card_visa": Card(outcome="succeed"),
    "pm_card_mastercard": Card(outcome="succeed"),
    "pm_card_amex": Card(outcome="succeed"),
    "pm_card_visa_debit": Card(outcome="succeed"),
    "pm_card_threeDSecure2Required": Card(outcome="requires_action"),
    "pm_card_threeDSecureRequired": Card(outcome="requires_action"),
    "pm_card_authenticationRequired": Card(outcome="requires_action"),
    "pm_card_chargeDeclined": Card(outcome="decline", code="card_declined",
                                   decline_code="generic_decline", message=_DECLINED),
    "pm_card_visa_chargeDeclined": Card(outcome="decline", code="card_declined",
                                        decline_code="generic_decline", message=_DECLINED),
    "pm_card_chargeDeclinedInsufficientFunds": Card(
        outcome="decline", code="card_declined", decline_code="insufficient_funds",
        message="Your card has insufficient funds."),
    "pm_card_chargeDeclinedExpiredCard": Card(
        outcome="decline", code="expired_card", decline_code="expired_card",
        message="Your card has expired."),
}

_INTENT_EXPANDABLE = frozenset({"latest_charge"})
_LINKED_EXPANDABLE = frozenset({"charge", "payment_intent"})
_CONFIRMABLE = frozenset({"requires_payment_method", "requires_confirmation"})
_CANCELABLE = frozenset({"requires_payment_method", "requires_confirmation", "requires_action"})
_REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
_DISPUTE_REASONS = frozenset({"fraudulent", "duplicate", "product_not_received", "general",
                              "subscription_canceled", "unrecognized", "credit_not_processed",
                              "product_unacceptable"})
_BLOCKING_DISPUTE = frozenset({"needs_response", "lost"})
# Parameters real Stripe knows and the simulator accepts (and mostly ignores).
_CREATE_INTENT = frozenset({
    "amount", "currency", "payment_method", "confirm", "metadata", "description", "expand",
    "payment_method_types", "automatic_payment_methods", "capture_method", "customer",
    "confirmation_method", "receipt_email", "return_url", "off_session", "use_stripe_sdk",
    "setup_future_usage", "statement_descriptor", "statement_descriptor_suffix",
    "payment_method_options", "mandate_data", "shipping"})
_CONFIRM_INTENT = frozenset({
    "payment_method", "expand", "return_url", "off_session", "use_stripe_sdk",
    "receipt_email", "setup_future_usage", "payment_method_options", "mandate_data",
    "payment_method_types", "shipping"})


# -- PaymentIntents --------------------------------------------------------------------------


def create_intent(state: ProviderState, _: str | None, params: Params) -> dict[str, Any]:
    """POST /v1/payment_intents, with ``confirm=true`` confirming at once."""
    reject_unknown(params, _CREATE_INTENT)
    amount = int_param(params, "amount", required=True, minimum=50)
    assert amount is not None
    currency = _currency(params)
    metadata = metadata_param(params) or {}
    payment_method = _payment_method(params)
    confirm = _bool(params, "confirm")
    str_param(params, "capture_method", choices=frozenset({"automatic", "automatic_async"}))
    expand = expand_param(params, _INTENT_EXPANDABLE)
    description = str_param(params, "description")
    if confirm and payment_method is None:
        raise StripeError(400, "You cannot confirm this PaymentIntent because it's missing a "
                          "payment method. Pass payment_method with confirm=true.",
                          code="payment_intent_unexpected_state", param="payment_method")
    intent_id = state.ids.new("pi")
    intent = IntentRecord(
        id=intent_id, amount=amount, currency=currency, created=state.now(),
        status="requires_confirmation" if payment_method else "requires_payment_method",
        client_secret=f"{intent_id}_secret_{state.ids.token()}",
        metadata=metadata, description=description, payment_method=payment_method,
        idempotency_key=state.request_idempotency_key)
    state.intents[intent.id] = intent
    if confirm:
        assert payment_method is not None
        _confirm(state, intent, payment_method)
    return state.intent_view(intent, expand)


def confirm_intent(state: ProviderState, intent_id: str | None,
                   params: Params) -> dict[str, Any]:
    """POST /v1/payment_intents/{id}/confirm."""
    reject_unknown(params, _CONFIRM_INTENT)
    intent = state.intent(intent_id)
    expand = expand_param(params, _INTENT_EXPANDABLE)
    _require_status(intent, _CONFIRMABLE, "confirm")
    payment_method = _payment_method(params) or intent.payment_method
    if payment_method is None:
        raise StripeError(400, "You cannot confirm this PaymentIntent because it's missing a "
                          "payment method.", code="payment_intent_unexpected_state",
                          param="payment_method")
    _confirm(state, intent, payment_method)
    return state.intent_view(intent, expand)


def update_intent(state: ProviderState, intent_id: str | None,
                  params: Params) -> dict[str, Any]:
    """POST /v1/payment_intents/{id}: metadata (merged; an empty value unsets) and description."""
    reject_unknown(params, frozenset({"metadata", "description", "expand"}))
    intent = state.intent(intent_id)
    expand = expand_param(params, _INTENT_EXPANDABLE)
    raw = params.get("metadata")
    metadata_param(params)  # validates the limits
    if isinstance(raw, Mapping):
        for key, value in raw.items():
            if value == "":
                intent.metadata.pop(key, None)
            else:
                intent.metadata[key] = value
    if "description" in params:
        intent.description = str_param(params, "description")
    return state.intent_view(intent, expand)


def cancel_intent(state: ProviderState, intent_id: str | None, params: Params) -> dict[str, Any]:
    """POST /v1/payment_intents/{id}/cancel, before it succeeded."""
    reject_unknown(params, frozenset({"cancellation_reason", "expand"}))
    intent = state.intent(intent_id)
    reason = str_param(params, "cancellation_reason", choices=frozenset(
        {"duplicate", "fraudulent", "requested_by_customer", "abandoned"}))
    expand = expand_param(params, _INTENT_EXPANDABLE)
    _require_status(intent, _CANCELABLE, "cancel")
    intent.status = "canceled"
    intent.canceled_at = state.now()
    intent.cancellation_reason = reason
    intent.next_action = None
    state.emit("payment_intent.canceled", intent_json(intent), intent_id=intent.id)
    return state.intent_view(intent, expand)


def authenticate_intent(state: ProviderState, intent_id: str | None,
                        params: Params) -> dict[str, Any]:
    """Test helper: the card holder finishes (``succeed``) or fails (``fail``) 3-D Secure."""
    reject_unknown(params, frozenset({"outcome", "expand"}))
    intent = state.intent(intent_id)
    outcome = str_param(params, "outcome", choices=frozenset({"succeed", "fail"})) or "succeed"
    expand = expand_param(params, _INTENT_EXPANDABLE)
    _require_status(intent, frozenset({"requires_action"}), "authenticate")
    intent.next_action = None
    if outcome == "succeed":
        _succeed(state, intent)
    else:
        intent.status = "requires_payment_method"
        intent.last_payment_error = {
            "type": "invalid_request_error", "code": "payment_intent_authentication_failure",
            "message": "The provided PaymentMethod has failed authentication. You can provide "
                       "payment_method_data or a new PaymentMethod to attempt to fulfill this "
                       "PaymentIntent again.",
            "payment_method": _pm_json(intent.payment_method)}
        state.emit("payment_intent.payment_failed", intent_json(intent), intent_id=intent.id)
    return state.intent_view(intent, expand)


def _confirm(state: ProviderState, intent: IntentRecord, payment_method: str) -> None:
    """Attempt the payment with a test card: succeed, ask for 3-D Secure, or decline (402)."""
    card = CARDS[payment_method]
    intent.payment_method = payment_method
    intent.last_payment_error = None
    intent.next_action = None
    if card.outcome == "succeed":
        _succeed(state, intent)
    elif card.outcome == "requires_action":
        intent.status = "requires_action"
        intent.next_action = {"type": "use_stripe_sdk", "use_stripe_sdk": {
            "type": "three_d_secure_redirect", "source": state.ids.new("src")}}
        state.emit("payment_intent.requires_action", intent_json(intent), intent_id=intent.id)
    else:
        assert card.outcome == "decline", card
        _decline(state, intent, card)


def _succeed(state: ProviderState, intent: IntentRecord) -> None:
    charge = ChargeRecord(id=state.ids.new("ch"), intent_id=intent.id, amount=intent.amount,
                          currency=intent.currency, status="succeeded", created=state.now(),
                          payment_method=intent.payment_method, metadata=dict(intent.metadata))
    state.charges[charge.id] = charge
    intent.latest_charge = charge.id
    intent.status = "succeeded"
    state.emit("payment_intent.succeeded", intent_json(intent), intent_id=intent.id)


def _decline(state: ProviderState, intent: IntentRecord, card: Card) -> None:
    """A failed charge, the intent back to requires_payment_method, an event, and a 402."""
    assert card.code is not None
    assert card.message is not None
    charge = ChargeRecord(id=state.ids.new("ch"), intent_id=intent.id, amount=intent.amount,
                          currency=intent.currency, status="failed", created=state.now(),
                          payment_method=intent.payment_method, metadata=dict(intent.metadata),
                          failure_code=card.code, failure_message=card.message)
    state.charges[charge.id] = charge
    intent.latest_charge = charge.id
    intent.status = "requires_payment_method"
    error = StripeError(402, card.message, type="card_error", code=card.code)
    intent.last_payment_error = {**error.to_json()["error"], "decline_code": card.decline_code,
                                 "charge": charge.id,
                                 "payment_method": _pm_json(intent.payment_method)}
    state.emit("payment_intent.payment_failed", intent_json(intent), intent_id=intent.id)
    raise StripeError(402, card.message, type="card_error", code=card.code, extra={
        "decline_code": card.decline_code, "charge": charge.id,
        "payment_method": _pm_json(intent.payment_method),
        "payment_intent": intent_json(intent)})


# -- Refunds and disputes --------------------------------------------------------------------


def create_refund(state: ProviderState, _: str | None, params: Params) -> dict[str, Any]:
    """POST /v1/refunds: full (no amount) or partial; never past what is left to refund."""
    reject_unknown(params, frozenset({"payment_intent", "charge", "amount", "reason",
                                      "metadata", "expand", "instructions_email"}))
    charge = _succeeded_charge(state, params, "refund")
    expand = expand_param(params, _LINKED_EXPANDABLE)
    dispute = state.disputes.get(charge.dispute_id or "")
    if dispute is not None and dispute.status in _BLOCKING_DISPUTE:
        raise StripeError(400, f"Charge {charge.id} has been charged back; cannot issue a "
                          "refund.", code="charge_disputed")
    remaining = charge.amount - charge.amount_refunded
    if remaining <= 0:
        raise StripeError(400, f"Charge {charge.id} has already been refunded.",
                          code="charge_already_refunded")
    amount = int_param(params, "amount") or remaining
    if amount > remaining:
        raise StripeError(400, f"Refund amount ({amount}) is greater than unrefunded amount on "
                          f"charge ({remaining})", code="amount_too_large", param="amount")
    refund = RefundRecord(id=state.ids.new("re"), charge_id=charge.id,
                          intent_id=charge.intent_id, amount=amount, currency=charge.currency,
                          created=state.now(), metadata=metadata_param(params) or {},
                          reason=str_param(params, "reason", choices=_REFUND_REASONS))
    state.refunds[refund.id] = refund
    previous: dict[str, Any] = {"amount_refunded": charge.amount_refunded}
    charge.amount_refunded += amount
    assert 0 < charge.amount_refunded <= charge.amount, charge
    if charge.amount_refunded == charge.amount:
        previous["refunded"] = False
    state.emit("charge.refunded", charge_json(charge), intent_id=charge.intent_id,
               previous_attributes=previous)
    return state.refund_view(refund, expand)


def create_dispute(state: ProviderState, _: str | None, params: Params) -> dict[str, Any]:
    """Test helper: the bank opens a dispute on a succeeded payment (optional ``amount``)."""
    reject_unknown(params, frozenset({"payment_intent", "charge", "amount", "reason",
                                      "expand"}))
    charge = _succeeded_charge(state, params, "dispute")
    expand = expand_param(params, _LINKED_EXPANDABLE)
    if charge.dispute_id is not None:
        raise StripeError(400, f"Charge {charge.id} is already disputed ({charge.dispute_id}).",
                          code="charge_already_disputed")
    disputable = charge.amount - charge.amount_refunded
    amount = int_param(params, "amount", maximum=charge.amount) or disputable
    if amount <= 0:
        raise StripeError(400, f"Charge {charge.id} has been refunded in full; nothing is left "
                          "to dispute.", code="charge_already_refunded")
    dispute = DisputeRecord(
        id=state.ids.new("dp"), charge_id=charge.id, intent_id=charge.intent_id, amount=amount,
        currency=charge.currency, created=state.now(),
        reason=str_param(params, "reason", choices=_DISPUTE_REASONS) or "fraudulent")
    state.disputes[dispute.id] = dispute
    charge.dispute_id = dispute.id
    state.emit("charge.dispute.created", state.dispute_view(dispute, frozenset()),
               intent_id=dispute.intent_id)
    return state.dispute_view(dispute, expand)


def close_dispute(state: ProviderState, dispute_id: str | None,
                  params: Params) -> dict[str, Any]:
    """Test helper: the bank decides the dispute, ``outcome=won`` or ``outcome=lost``."""
    reject_unknown(params, frozenset({"outcome", "expand"}))
    dispute = _dispute(state, dispute_id)
    outcome = str_param(params, "outcome", required=True, choices=frozenset({"won", "lost"}))
    assert outcome is not None
    expand = expand_param(params, _LINKED_EXPANDABLE)
    if dispute.status != "needs_response":
        raise StripeError(400, f"Dispute {dispute.id} is already closed ({dispute.status}).",
                          code="dispute_already_closed")
    previous = {"status": dispute.status}
    dispute.status = outcome
    state.emit("charge.dispute.closed", state.dispute_view(dispute, frozenset()),
               intent_id=dispute.intent_id, previous_attributes=previous)
    return state.dispute_view(dispute, expand)


def _succeeded_charge(state: ProviderState, params: Params, action: str) -> ChargeRecord:
    """The succeeded charge named by ``payment_intent`` or ``charge``; 400/404 otherwise."""
    intent_id = str_param(params, "payment_intent")
    charge_id = str_param(params, "charge")
    if intent_id is None and charge_id is None:
        raise StripeError(400, "Missing required param: payment_intent or charge.",
                          code="parameter_missing", param="payment_intent")
    if intent_id is not None:
        intent = state.intent(intent_id, param="payment_intent")
        if intent.status != "succeeded":
            raise StripeError(400, f"This PaymentIntent ({intent.id}) does not have a "
                              f"successful charge to {action}; its status is {intent.status}.",
                              code="payment_intent_unexpected_state", param="payment_intent")
        assert intent.latest_charge is not None
        charge_id_of_intent = intent.latest_charge
        if charge_id is not None and charge_id != charge_id_of_intent:
            raise StripeError(400, f"Charge {charge_id} does not belong to {intent.id}.",
                              param="charge")
        charge_id = charge_id_of_intent
    charge = state.charges.get(charge_id or "")
    if charge is None:
        raise StripeError(404, f"No such charge: '{charge_id}'", code="resource_missing",
                          param="charge")
    if charge.status != "succeeded":
        raise StripeError(400, f"Charge {charge.id} did not succeed; there is nothing to "
                          f"{action}.", code="charge_not_refundable", param="charge")
    return charge


# -- Reads -----------------------------------------------------------------------------------


def _read_intent(state: ProviderState, object_id: str, params: Params) -> dict[str, Any]:
    reject_unknown(params, frozenset({"expand", "client_secret"}))
    return state.intent_view(state.intent(object_id), expand_param(params, _INTENT_EXPANDABLE))


def _read_charge(state: ProviderState, object_id: str, params: Params) -> dict[str, Any]:
    reject_unknown(params, frozenset({"expand"}))
    expand_param(params, frozenset())
    charge = state.charges.get(object_id)
    if charge is None:
        raise StripeError(404, f"No such charge: '{object_id}'", code="resource_missing",
                          param="id")
    return charge_json(charge)


def _read_refund(state: ProviderState, object_id: str, params: Params) -> dict[str, Any]:
    reject_unknown(params, frozenset({"expand"}))
    refund = state.refunds.get(object_id)
    if refund is None:
        raise StripeError(404, f"No such refund: '{object_id}'", code="resource_missing",
                          param="id")
    return state.refund_view(refund, expand_param(params, _LINKED_EXPANDABLE))


def _read_dispute(state: ProviderState, object_id: str, params: Params) -> dict[str, Any]:
    reject_unknown(params, frozenset({"expand"}))
    return state.dispute_view(_dispute(state, object_id),
                              expand_param(params, _LINKED_EXPANDABLE))


def _read_event(state: ProviderState, object_id: str, params: Params) -> dict[str, Any]:
    reject_unknown(params, frozenset({"expand"}))
    return state.event(object_id)


# -- Helpers ---------------------------------------------------------------------------------


def _dispute(state: ProviderState, dispute_id: str | None) -> DisputeRecord:
    dispute = state.disputes.get(dispute_id or "")
    if dispute is None:
        raise StripeError(404, f"No such dispute: '{dispute_id}'", code="resource_missing",
                          param="dispute")
    return dispute


def _require_status(intent: IntentRecord, allowed: frozenset[str], action: str) -> None:
    if intent.status not in allowed:
        raise StripeError(
            400, f"You cannot {action} this PaymentIntent because it has a status of "
            f"{intent.status}.", code="payment_intent_unexpected_state",
            extra={"payment_intent": intent_json(intent)})


def _currency(params: Params) -> str:
    currency = str_param(params, "currency", required=True)
    assert currency is not None
    if len(currency) != 3 or not currency.isalpha():
        raise StripeError(400, f"Invalid currency: {currency}", param="currency")
    return currency.lower()


def _payment_method(params: Params) -> str | None:
    payment_method = str_param(params, "payment_method")
    if payment_method is not None and payment_method not in CARDS:
        raise StripeError(404, f"No such PaymentMethod: '{payment_method}'; the simulator knows "
                          f"{', '.join(sorted(CARDS))}", code="resource_missing",
                          param="payment_method")
    return payment_method


def _bool(params: Params, name: str) -> bool:
    value = str_param(params, name, choices=frozenset({"true", "false"}))
    return value == "true"


def _pm_json(payment_method: str | None) -> dict[str, Any] | None:
    if payment_method is None:
        return None
    return {"id": payment_method, "object": "payment_method", "type": "card"}


OPERATIONS: Mapping[str, Operation] = {
    "create_intent": create_intent,
    "confirm_intent": confirm_intent,
    "update_intent": update_intent,
    "cancel_intent": cancel_intent,
    "authenticate_intent": authenticate_intent,
    "create_refund": create_refund,
    "create_dispute": create_dispute,
    "close_dispute": close_dispute,
}
READERS: Mapping[str, Callable[[ProviderState, str, Params], dict[str, Any]]] = {
    "payment_intent": _read_intent,
    "charge": _read_charge,
    "refund": _read_refund,
    "dispute": _read_dispute,
    "event": _read_event,
}
