"""Webhook envelopes the harness posts itself: real events re-signed, or forgeries made up.

``POST /_tokenchaos/envelope {intent_id | null, event_type, variant}`` answers a webhook
ready to send, which the provider does not send. A genuine variant (genuine, duplicate,
replay, retry) may only carry an event the provider really emitted: the latest of that
type for that intent. A forged variant may also carry an event that never happened: a
success for an intent still waiting for 3-D Secure, or, with ``intent_id`` null, a
payment of an intent that never existed (its metadata copied from the latest real intent,
or given), so a target that accepts it mints tokens nobody paid for. Fabricated events
never enter the provider's event log or its truth.

Pure: reads the state, never changes its records; the caller supplies time and randomness.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from typing import Any

from harness.model import DeliveryVariant
from harness.provider.objects import (
    ChargeRecord,
    DisputeRecord,
    IntentRecord,
    StripeError,
    charge_json,
    dispute_json,
    intent_json,
)
from harness.provider.signing import SignedWebhook, sign_variant
from harness.provider.state import EVENT_TYPES, ProviderState, build_event

__all__ = ["build_envelope", "envelope_event"]

_FABRICATED_AMOUNT_CENTS = 2_500  # when no real intent exists to copy: the 500-token package
_INTENT_STATUS_BY_EVENT = {
    "payment_intent.succeeded": "succeeded",
    "payment_intent.payment_failed": "requires_payment_method",
    "payment_intent.requires_action": "requires_action",
    "payment_intent.canceled": "canceled",
}
assert set(_INTENT_STATUS_BY_EVENT) < set(EVENT_TYPES)


def build_envelope(state: ProviderState, *, intent_id: str | None, event_type: str,
                   variant: DeliveryVariant, secret: str, tolerance_s: int,
                   rng: random.Random, metadata: Mapping[str, str] | None = None
                   ) -> SignedWebhook:
    """The webhook for ``event_type`` of ``intent_id``, dressed as ``variant``.

    Raises:
        StripeError: 400 for an unknown event type, or a genuine variant asked to carry an
            event that was never emitted; 404 for an unknown intent.
    """
    event = envelope_event(state, intent_id=intent_id, event_type=event_type,
                           forged=variant.forged, metadata=metadata)
    return sign_variant(event, variant=variant, secret=secret, now_s=state.now(),
                        tolerance_s=tolerance_s, rng=rng)


def envelope_event(state: ProviderState, *, intent_id: str | None, event_type: str,
                   forged: bool, metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The real event to re-send, or (forged variants only) a fabricated one."""
    if event_type not in EVENT_TYPES:
        raise StripeError(400, f"unknown event_type {event_type!r}; one of "
                          f"{', '.join(EVENT_TYPES)}", param="event_type")
    if intent_id is None:
        if not forged:
            raise StripeError(400, "intent_id null makes up an intent that never existed; "
                              "only a forged variant (stale, unsigned, wrong_secret, "
                              "tampered) may carry it", param="intent_id")
        return _fabricated_event(state, _fabricated_intent(state, metadata), event_type)
    intent = state.intent(intent_id, param="intent_id")
    existing = state.latest_event(intent_id, event_type)
    if existing is not None:
        return existing
    if not forged:
        raise StripeError(400, f"intent {intent_id} has emitted no {event_type} event, and a "
                          f"genuinely signed envelope may only carry a real one; ask for a "
                          "forged variant, or for an event it emitted", param="event_type")
    return _fabricated_event(state, intent, event_type)


def _fabricated_intent(state: ProviderState, metadata: Mapping[str, str] | None
                       ) -> IntentRecord:
    """An intent nobody paid, shaped like the latest real one so its user exists."""
    base = next(reversed(state.intents.values()), None)
    intent_id = state.forge_ids.new("pi")
    if metadata is None:
        metadata = base.metadata if base is not None else {}
    return IntentRecord(
        id=intent_id, amount=base.amount if base is not None else _FABRICATED_AMOUNT_CENTS,
        currency=base.currency if base is not None else "usd",
        status="requires_payment_method", created=state.now(),
        client_secret=f"{intent_id}_secret_{state.forge_ids.token()}",
        metadata=dict(metadata), payment_method="pm_card_visa")


def _fabricated_event(state: ProviderState, intent: IntentRecord,
                      event_type: str) -> dict[str, Any]:
    """An event of ``event_type`` for ``intent`` as if it had happened; records untouched."""
    intent = dataclasses.replace(intent, metadata=dict(intent.metadata))
    charge = _charge_of(state, intent)
    data_object: dict[str, Any]
    if event_type in _INTENT_STATUS_BY_EVENT:
        intent.status = _INTENT_STATUS_BY_EVENT[event_type]
        intent.latest_charge = charge.id if intent.status == "succeeded" else None
        data_object = intent_json(intent)
    elif event_type == "charge.refunded":
        charge.amount_refunded = charge.amount
        data_object = charge_json(charge)
    else:
        assert event_type in ("charge.dispute.created", "charge.dispute.closed"), event_type
        # A forged "won" would hand back tokens; a forged "created" would take them.
        status = "needs_response" if event_type == "charge.dispute.created" else "won"
        dispute = DisputeRecord(id=state.forge_ids.new("dp"), charge_id=charge.id,
                                intent_id=intent.id, amount=charge.amount,
                                currency=charge.currency, created=state.now(), status=status)
        data_object = dispute_json(dispute, metadata=intent.metadata)
    return build_event(state.forge_ids.new("evt"), event_type, {"object": data_object},
                       created=state.now(), pending_webhooks=state.webhook_endpoints_count,
                       request={"id": None, "idempotency_key": None})


def _charge_of(state: ProviderState, intent: IntentRecord) -> ChargeRecord:
    """A copy of the intent's succeeded charge, or a made-up one for a forgery."""
    real = state.charges.get(intent.latest_charge or "")
    if real is not None and real.status == "succeeded":
        return dataclasses.replace(real, metadata=dict(real.metadata))
    return ChargeRecord(id=state.forge_ids.new("ch"), intent_id=intent.id,
                        amount=intent.amount, currency=intent.currency, status="succeeded",
                        created=state.now(), payment_method=intent.payment_method,
                        metadata=dict(intent.metadata))
