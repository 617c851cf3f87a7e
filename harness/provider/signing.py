"""Webhook signatures exactly as Stripe makes them, and the forgeries a target must refuse.

Stripe signs ``f"{t}.{body}"`` with HMAC-SHA256, keyed by the whole endpoint secret
string (``whsec_…`` included), and sends ``Stripe-Signature: t=<unix>,v1=<hex>``; the
official ``stripe.Webhook.construct_event(body, header, secret, tolerance=300)`` accepts
exactly that. Each ``DeliveryVariant`` maps to one way of dressing an event's body:

- genuine, duplicate, replay, retry: signed now with the real secret;
- stale: signed with the real secret, but ``t`` older than the tolerance window;
- unsigned: no ``Stripe-Signature`` header at all;
- wrong_secret: a well-formed signature made with another secret;
- tampered: the genuine body is signed, then the body is changed (a new event id, and the
  minted tokens and amounts inflated), so a target that applies it changes state.

Pure: callers pass the time and the random generator; nothing here does I/O.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.model import DeliveryVariant

__all__ = [
    "SIGNATURE_HEADER",
    "SignedWebhook",
    "encode_event",
    "new_webhook_secret",
    "sign_variant",
    "signature_header",
    "stale_timestamp_s",
    "tamper_event",
]

SIGNATURE_HEADER = "Stripe-Signature"
_STALE_MARGIN_S_MIN = 600  # far enough past the window to survive clock skew of minutes
_STALE_MARGIN_S_MAX = 3_600
_TAMPER_TOKENS_FLOOR = 1_000  # what a zero becomes when tampered, so it still changes
_AMOUNT_FIELDS = ("amount", "amount_received", "amount_captured", "amount_refunded")
# Metadata keys that hold quantities (tokens, tokenAmount, bonusTokens); user ids stay, so
# the tampered credit lands on the real user.
_QUANTITY_KEY_PARTS = ("token", "amount", "bonus", "credit", "quantity")
_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedWebhook:
    """A webhook ready to POST: its exact body and its headers."""

    body: str
    headers: Mapping[str, str]
    event_id: str  # the id in the body (a tampered body carries a new one)

    def to_json(self) -> dict[str, Any]:
        return {"body": self.body, "headers": dict(self.headers)}


def signature_header(body: str, secret: str, *, timestamp_s: int) -> str:
    """``t=…,v1=…`` for ``body``, byte for byte what Stripe would send."""
    signed = f"{timestamp_s}.{body}".encode()
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp_s},v1={digest}"


def encode_event(event: Mapping[str, Any]) -> str:
    """The JSON body Stripe sends: pretty-printed, ASCII, one event object."""
    return json.dumps(event, indent=2)


def sign_variant(event: Mapping[str, Any], *, variant: DeliveryVariant, secret: str,
                 now_s: int, tolerance_s: int, rng: random.Random,
                 body: str | None = None) -> SignedWebhook:
    """Dress ``event`` as ``variant`` says; ``body`` reuses an already encoded body.

    ``rng`` supplies the wrong secret, the stale age and the tampered event id, so a
    seeded dispatcher forges the same way every run.
    """
    genuine_body = body if body is not None else encode_event(event)
    event_id = str(event["id"])
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": _USER_AGENT}
    if variant in (DeliveryVariant.GENUINE, DeliveryVariant.DUPLICATE,
                   DeliveryVariant.REPLAY, DeliveryVariant.RETRY):
        headers[SIGNATURE_HEADER] = signature_header(genuine_body, secret, timestamp_s=now_s)
        return SignedWebhook(body=genuine_body, headers=headers, event_id=event_id)
    if variant == DeliveryVariant.STALE:
        timestamp_s = stale_timestamp_s(now_s, tolerance_s, rng)
        headers[SIGNATURE_HEADER] = signature_header(genuine_body, secret,
                                                     timestamp_s=timestamp_s)
        return SignedWebhook(body=genuine_body, headers=headers, event_id=event_id)
    if variant == DeliveryVariant.UNSIGNED:
        return SignedWebhook(body=genuine_body, headers=headers, event_id=event_id)
    if variant == DeliveryVariant.WRONG_SECRET:
        other = new_webhook_secret(rng)
        assert other != secret
        headers[SIGNATURE_HEADER] = signature_header(genuine_body, other, timestamp_s=now_s)
        return SignedWebhook(body=genuine_body, headers=headers, event_id=event_id)
    assert variant == DeliveryVariant.TAMPERED, variant
    headers[SIGNATURE_HEADER] = signature_header(genuine_body, secret, timestamp_s=now_s)
    tampered = tamper_event(event, rng)
    return SignedWebhook(body=encode_event(tampered), headers=headers,
                         event_id=str(tampered["id"]))


def stale_timestamp_s(now_s: int, tolerance_s: int, rng: random.Random) -> int:
    """A signing time well past the tolerance window, as an old captured webhook has."""
    assert tolerance_s >= 0
    return now_s - tolerance_s - rng.randint(_STALE_MARGIN_S_MIN, _STALE_MARGIN_S_MAX)


def tamper_event(event: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
    """A copy with a new event id, and every token count and amount inflated.

    Integer metadata naming a quantity (``tokens``, ``tokenAmount``, ``bonusTokens``…) and
    the object's amounts are multiplied by ten (a zero becomes 1000), so a target that
    believes the tampered body mints, or claws back, what nobody paid for. The user stays.
    """
    tampered = copy.deepcopy(dict(event))
    tampered["id"] = "evt_" + "".join(rng.choices(_ALPHABET, k=24))
    data_object = tampered.get("data", {}).get("object")
    if not isinstance(data_object, dict):
        return tampered
    metadata = data_object.get("metadata")
    if isinstance(metadata, dict):
        for key, value in metadata.items():
            quantity = any(part in key.lower() for part in _QUANTITY_KEY_PARTS)
            if quantity and isinstance(value, str) and value.isdigit():
                metadata[key] = str(_inflate(int(value)))
    for name in _AMOUNT_FIELDS:
        value = data_object.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            data_object[name] = _inflate(value)
    return tampered


def new_webhook_secret(rng: random.Random | None = None) -> str:
    """A ``whsec_…`` secret; from ``rng`` when given (forgeries), else from the OS."""
    source = rng if rng is not None else random.SystemRandom()
    return "whsec_" + "".join(source.choices(_ALPHABET, k=32))


def _inflate(value: int) -> int:
    return value * 10 if value > 0 else _TAMPER_TOKENS_FLOOR
