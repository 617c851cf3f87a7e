"""The shapes of what comes in: request bodies (strict) and webhook events (lenient).

Request bodies are pydantic models with ``extra="forbid"`` and strict types: an amount
is a JSON integer in 1..10**12, never a float, a string or a boolean. Webhook events are
Stripe objects with many fields we do not use, so their models ignore extras; they are
reduced to ``PaymentFacts`` and the keyword arguments of one webhook operation by
``webhook_call``.

Nothing here does I/O or knows HTTP status codes: the routes turn a ``ValidationError``
into a 422 and a ``WebhookRejected`` into a 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from reference_impl.errors import WebhookRejected
from reference_impl.money import AMOUNT_TOKENS_MAX, PACKAGES

__all__ = [
    "ID_MAX",
    "ChargeRequest",
    "CreateUserRequest",
    "EmptyRequest",
    "OpenCallRequest",
    "PaymentFacts",
    "PurchaseRequest",
    "TipRequest",
    "describe",
    "webhook_call",
]

ID_MAX = 2**63 - 1  # ids are BIGINT
MINUTE_MAX = 10_000_000  # a call minute; far beyond any call, far within INTEGER
CENTS_MAX = 10**15  # a payment or refund amount, far within BIGINT

AccountId = Annotated[int, Field(ge=1, le=ID_MAX)]
AmountTokens = Annotated[int, Field(ge=1, le=AMOUNT_TOKENS_MAX)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class EmptyRequest(_Request):
    """A body that must be empty or ``{}`` (ending a call)."""


class CreateUserRequest(_Request):
    kind: Literal["fan", "creator"]


class PurchaseRequest(_Request):
    tokens: int
    payment_method: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_]+$")

    @field_validator("tokens")
    @classmethod
    def _a_package(cls, tokens: int) -> int:
        if tokens not in PACKAGES:
            sizes = ", ".join(str(size) for size in PACKAGES)
            raise ValueError(f"tokens must be a package size: one of {sizes}")
        return tokens


class TipRequest(_Request):
    to: AccountId
    amount: AmountTokens


class OpenCallRequest(_Request):
    creator: AccountId
    rate_per_minute: AmountTokens


class ChargeRequest(_Request):
    minute: Annotated[int, Field(ge=0, le=MINUTE_MAX)]


# ---------------------------------------------------------------------------------------
# Webhooks.


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentFacts:
    """What one event says about its PaymentIntent; None where it does not say.

    ``purchase_id``, ``user_id`` and ``minted_tokens`` come from the metadata the service
    set on the intent. The service never trusts them to decide what to credit: it finds
    its own record of the purchase (by intent id, else by purchase id) and checks that the
    event agrees with it.
    """

    event_id: str
    event_type: str
    intent_id: str
    purchase_id: int | None
    user_id: int | None
    minted_tokens: int | None
    amount_cents: int | None
    currency: str | None


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


Cents = Annotated[int, Field(ge=0, le=CENTS_MAX)]


class _Object(_Lenient):
    id: str = Field(min_length=1, max_length=255)
    metadata: dict[str, Any] = Field(default_factory=dict)


class _Intent(_Object):
    amount: Cents
    currency: str | None = Field(default=None, max_length=16)


class _Charge(_Object):
    payment_intent: str | None = None
    amount: Cents
    amount_refunded: Cents
    currency: str | None = Field(default=None, max_length=16)


class _Dispute(_Object):
    payment_intent: str | None = None
    status: str


class _Data(_Lenient):
    object: dict[str, Any]


class _Event(_Lenient):
    id: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=255)
    data: _Data


# A dispute closed in the payer's favour gives the tokens back; any other closing keeps them.
_DISPUTE_WON_STATUSES = frozenset({"won", "warning_closed"})


def webhook_call(event: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The webhook operation for a verified event, and its keyword arguments.

    Returns:
        ``(operation name, kwargs)``; an event type we do not act on maps to
        ``acknowledge_event``.

    Raises:
        WebhookRejected: ``malformed_webhook`` when the event or its object lacks a field
        the operation needs.
    """
    try:
        envelope = _Event.model_validate(event)
        obj = envelope.data.object
        if envelope.type == "payment_intent.succeeded":
            intent = _Intent.model_validate(obj)
            return "apply_payment_succeeded", {
                "event_id": envelope.id, "facts": _facts(
                    envelope, intent.id, intent.metadata, amount_cents=intent.amount,
                    currency=intent.currency)}
        if envelope.type == "charge.refunded":
            charge = _Charge.model_validate(obj)
            return "apply_charge_refunded", {
                "event_id": envelope.id, "refunded_cents": charge.amount_refunded,
                "facts": _facts(envelope, charge.payment_intent, charge.metadata,
                                amount_cents=charge.amount, currency=charge.currency)}
        if envelope.type in ("charge.dispute.created", "charge.dispute.closed"):
            dispute = _Dispute.model_validate(obj)
            facts = _facts(envelope, dispute.payment_intent, dispute.metadata,
                           amount_cents=None, currency=None)
            if envelope.type == "charge.dispute.created":
                return "apply_dispute_created", {"event_id": envelope.id, "facts": facts,
                                                 "dispute_id": dispute.id}
            return "apply_dispute_closed", {"event_id": envelope.id, "facts": facts,
                                            "dispute_id": dispute.id,
                                            "won": dispute.status in _DISPUTE_WON_STATUSES}
        return "acknowledge_event", {"event_id": envelope.id, "event_type": envelope.type}
    except ValidationError as exc:
        raise WebhookRejected("malformed_webhook",
                              f"the event lacks what its type needs: {describe(exc)}") from None


def _facts(envelope: _Event, intent_id: str | None, metadata: Mapping[str, Any], *,
           amount_cents: int | None, currency: str | None) -> PaymentFacts | None:
    """PaymentFacts, or None when the object names no intent (nothing we can apply)."""
    if not intent_id:
        return None
    return PaymentFacts(event_id=envelope.id, event_type=envelope.type, intent_id=intent_id,
                        purchase_id=_metadata_int(metadata, "purchase_id", value_max=ID_MAX),
                        user_id=_metadata_int(metadata, "user_id", value_max=ID_MAX),
                        minted_tokens=_metadata_int(metadata, "tokens"),
                        amount_cents=amount_cents or None,
                        currency=currency.lower() if currency else None)


def _metadata_int(metadata: Mapping[str, Any], key: str, *,
                  value_max: int = AMOUNT_TOKENS_MAX) -> int | None:
    """A positive integer from Stripe metadata (where every value is a string), or None."""
    value = metadata.get(key)
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        return None
    if len(value) > 19:  # longer than any BIGINT; never parse an unbounded string
        return None
    number = int(value)
    return number if 1 <= number <= value_max else None


def describe(exc: ValidationError) -> str:
    """A readable one-line summary of a pydantic error: ``field: problem; ...``."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False)[:10]:
        location = ".".join(str(part) for part in error["loc"]) or "body"
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{location}: {message}")
    return "; ".join(problems) or "invalid input"
