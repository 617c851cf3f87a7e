"""Stripe's object shapes for the simulator: records, their JSON, errors, ids and params.

The provider's state machine (``state.py``) keeps mutable records of PaymentIntents,
Charges, Refunds and Disputes; this module says what each looks like on the wire, so that
the official ``stripe`` SDK parses our answers into its own classes and a webhook handler
written against real Stripe reads our events unchanged. It also holds the Stripe error
value, the seeded id maker, and the validators for form parameters.

Nothing here keeps state across calls, does I/O or reads a clock: renderers are pure
functions of a record, and ``IdMaker`` draws only from the ``random.Random`` it is given.
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "API_VERSION",
    "ChargeRecord",
    "DisputeRecord",
    "IdMaker",
    "IntentRecord",
    "RefundRecord",
    "StripeError",
    "charge_json",
    "dispute_json",
    "expand_param",
    "int_param",
    "intent_json",
    "metadata_param",
    "refund_json",
    "reject_unknown",
    "str_param",
]

# The API version our events claim. Webhook verification does not depend on it.
API_VERSION = "2024-06-20"

_ID_ALPHABET = string.ascii_letters + string.digits
_ID_LENGTH = 24  # characters after the prefix, as in Stripe's "pi_3MtwBwLkdIwHu7ix28a3tqPa"
_METADATA_KEYS_MAX = 50  # Stripe's own limits on metadata
_METADATA_KEY_CHARS_MAX = 40
_METADATA_VALUE_CHARS_MAX = 500
_AMOUNT_CENTS_MAX = 99_999_999  # Stripe's ceiling for an amount in the smallest unit


class StripeError(Exception):
    """An API error in Stripe's shape: ``{error: {type, code, message, param, ...}}``.

    Raised inside the state machine and turned into an answer at its edge; ``extra`` holds
    the fields some errors carry (``decline_code``, ``payment_intent``, ``charge``).
    """

    def __init__(self, status_code: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        assert 400 <= status_code < 600, status_code
        self.status_code = status_code
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.extra = dict(extra or {})

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        error.update(self.extra)
        return {"error": error}


class IdMaker:
    """Stripe-looking ids (``pi_…``, ``ch_…``, ``evt_…``) drawn from one seeded generator.

    The same seed and the same sequence of calls give the same ids, so a run replays. A
    fixed seed therefore repeats ids across provider restarts: against a target whose
    database outlives the provider, use a fresh seed each time.
    """

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def new(self, prefix: str, length: int = _ID_LENGTH) -> str:
        assert prefix and prefix.isalpha(), prefix
        return prefix + "_" + self.token(length)

    def token(self, length: int = _ID_LENGTH) -> str:
        """Letters and digits only, for secrets and the tails of ids."""
        assert 1 <= length <= 64, length
        return "".join(self._rng.choices(_ID_ALPHABET, k=length))


@dataclass(slots=True, kw_only=True)
class IntentRecord:
    id: str
    amount: int
    currency: str
    status: str
    created: int
    client_secret: str
    metadata: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    payment_method: str | None = None
    latest_charge: str | None = None
    last_payment_error: dict[str, Any] | None = None
    next_action: dict[str, Any] | None = None
    canceled_at: int | None = None
    cancellation_reason: str | None = None
    idempotency_key: str | None = None  # the key of the request that created it


@dataclass(slots=True, kw_only=True)
class ChargeRecord:
    id: str
    intent_id: str
    amount: int
    currency: str
    status: str  # "succeeded" | "failed"
    created: int
    payment_method: str | None
    metadata: dict[str, str] = field(default_factory=dict)
    amount_refunded: int = 0
    dispute_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None


@dataclass(slots=True, kw_only=True)
class RefundRecord:
    id: str
    charge_id: str
    intent_id: str
    amount: int
    currency: str
    created: int
    reason: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class DisputeRecord:
    id: str
    charge_id: str
    intent_id: str
    amount: int
    currency: str
    created: int
    status: str = "needs_response"  # then "won" | "lost"
    reason: str = "fraudulent"


def intent_json(intent: IntentRecord, *, charge: Mapping[str, Any] | None = None
                ) -> dict[str, Any]:
    """A PaymentIntent as Stripe renders it; ``charge`` expands ``latest_charge``."""
    succeeded = intent.status == "succeeded"
    return {
        "id": intent.id, "object": "payment_intent", "amount": intent.amount,
        "amount_capturable": 0, "amount_received": intent.amount if succeeded else 0,
        "automatic_payment_methods": None, "canceled_at": intent.canceled_at,
        "cancellation_reason": intent.cancellation_reason, "capture_method": "automatic",
        "client_secret": intent.client_secret, "confirmation_method": "automatic",
        "created": intent.created, "currency": intent.currency, "customer": None,
        "description": intent.description, "last_payment_error": intent.last_payment_error,
        "latest_charge": dict(charge) if charge is not None else intent.latest_charge,
        "livemode": False, "metadata": dict(intent.metadata), "next_action": intent.next_action,
        "payment_method": intent.payment_method, "payment_method_types": ["card"],
        "receipt_email": None, "setup_future_usage": None, "status": intent.status,
    }


def charge_json(charge: ChargeRecord) -> dict[str, Any]:
    """A Charge as Stripe renders it, with the cumulative ``amount_refunded``."""
    succeeded = charge.status == "succeeded"
    return {
        "id": charge.id, "object": "charge", "amount": charge.amount,
        "amount_captured": charge.amount if succeeded else 0,
        "amount_refunded": charge.amount_refunded, "balance_transaction": None,
        "captured": succeeded, "created": charge.created, "currency": charge.currency,
        "disputed": charge.dispute_id is not None, "failure_code": charge.failure_code,
        "failure_message": charge.failure_message, "livemode": False,
        "metadata": dict(charge.metadata),
        "outcome": {"network_status": "approved_by_network" if succeeded else "declined_by_network",
                    "type": "authorized" if succeeded else "issuer_declined"},
        "paid": succeeded, "payment_intent": charge.intent_id,
        "payment_method": charge.payment_method,
        "refunded": succeeded and charge.amount_refunded == charge.amount,
        "status": charge.status,
    }


def refund_json(refund: RefundRecord) -> dict[str, Any]:
    return {
        "id": refund.id, "object": "refund", "amount": refund.amount, "balance_transaction": None,
        "charge": refund.charge_id, "created": refund.created, "currency": refund.currency,
        "metadata": dict(refund.metadata), "payment_intent": refund.intent_id,
        "reason": refund.reason, "status": "succeeded",
    }


def dispute_json(dispute: DisputeRecord, *, metadata: Mapping[str, str]) -> dict[str, Any]:
    """A Dispute; ``metadata`` is the intent's, copied in so a handler finds its user."""
    return {
        "id": dispute.id, "object": "dispute", "amount": dispute.amount,
        "balance_transactions": [], "charge": dispute.charge_id, "created": dispute.created,
        "currency": dispute.currency, "is_charge_refundable": False, "livemode": False,
        "metadata": dict(metadata), "payment_intent": dispute.intent_id,
        "reason": dispute.reason, "status": dispute.status,
    }


# ---------------------------------------------------------------------------------------
# Form parameters, validated with Stripe's messages.


def reject_unknown(params: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """Stripe refuses parameters it does not know; so do we, naming the first one."""
    for name in sorted(params):
        if name not in allowed:
            raise StripeError(400, f"Received unknown parameter: {name}",
                              code="parameter_unknown", param=name)


def str_param(params: Mapping[str, Any], name: str, *, required: bool = False,
              choices: frozenset[str] | None = None) -> str | None:
    """A string parameter; ``None`` when absent or empty and not required."""
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise StripeError(400, f"Missing required param: {name}.",
                              code="parameter_missing", param=name)
        return None
    if not isinstance(value, str):
        raise StripeError(400, f"Invalid string: {name}", code="parameter_invalid_string",
                          param=name)
    if choices is not None and value not in choices:
        raise StripeError(400, f"Invalid {name}: must be one of {', '.join(sorted(choices))}",
                          code="parameter_invalid_string", param=name)
    return value


def int_param(params: Mapping[str, Any], name: str, *, required: bool = False,
              minimum: int = 1, maximum: int = _AMOUNT_CENTS_MAX) -> int | None:
    """A positive integer parameter, as Stripe reads ``amount``."""
    text = str_param(params, name, required=required)
    if text is None:
        return None
    if not text.isdigit() or len(text) > 12:
        raise StripeError(400, f"Invalid integer: {text}", code="parameter_invalid_integer",
                          param=name)
    value = int(text)
    if value < minimum:
        code = "amount_too_small" if name == "amount" else "parameter_invalid_integer"
        raise StripeError(400, f"{name} must be at least {minimum}", code=code, param=name)
    if value > maximum:
        code = "amount_too_large" if name == "amount" else "parameter_invalid_integer"
        raise StripeError(400, f"{name} must be at most {maximum}", code=code, param=name)
    return value


def metadata_param(params: Mapping[str, Any]) -> dict[str, str] | None:
    """``metadata[key]=value`` pairs, within Stripe's limits; ``None`` when absent."""
    value = params.get("metadata")
    if value is None or value == "":
        return None if value is None else {}
    if not isinstance(value, Mapping):
        raise StripeError(400, "Invalid metadata: must be a hash of key-value pairs",
                          param="metadata")
    if len(value) > _METADATA_KEYS_MAX:
        raise StripeError(400, f"Invalid metadata: at most {_METADATA_KEYS_MAX} keys",
                          param="metadata")
    metadata: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str) or len(key) > _METADATA_KEY_CHARS_MAX \
                or len(item) > _METADATA_VALUE_CHARS_MAX:
            raise StripeError(400, f"Invalid metadata[{key}]: keys up to "
                              f"{_METADATA_KEY_CHARS_MAX} and values up to "
                              f"{_METADATA_VALUE_CHARS_MAX} characters",
                              param=f"metadata[{key}]")
        if item:  # Stripe unsets a key given an empty value
            metadata[str(key)] = item
    return metadata


def expand_param(params: Mapping[str, Any], expandable: frozenset[str]) -> frozenset[str]:
    """The fields to expand (``expand[]=latest_charge``); others are refused as Stripe does."""
    value = params.get("expand")
    if value is None:
        return frozenset()
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, str) or item not in expandable:
            raise StripeError(400, f"This property cannot be expanded ({item}).",
                              param="expand")
    return frozenset(items)

