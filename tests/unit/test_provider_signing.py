"""Webhook signatures: the official SDK accepts ours and refuses every forgery."""

from __future__ import annotations

import json
import random
import time

import pytest
import stripe

from harness.model import DeliveryVariant
from harness.provider.envelopes import build_envelope
from harness.provider.objects import StripeError
from harness.provider.signing import (
    SIGNATURE_HEADER,
    sign_variant,
    signature_header,
    tamper_event,
)
from harness.provider.state import ProviderState

SECRET = "whsec_test_secret_for_signing"
_FORGED = [v for v in DeliveryVariant if v.forged]
_GENUINE = [v for v in DeliveryVariant if not v.forged]


def _success_event() -> dict[str, object]:
    state = ProviderState(seed=11)
    answer = state.call("create_intent", {
        "amount": "25000", "currency": "usd", "payment_method": "pm_card_visa",
        "confirm": "true", "metadata": {"user_id": "3", "tokens": "5250"}})
    return dict(answer.events[0])


def _verify(body: str, headers: dict[str, str]) -> stripe.Event:
    return stripe.Webhook.construct_event(body, headers.get(SIGNATURE_HEADER), SECRET,
                                          tolerance=300)


def test_our_header_is_byte_for_byte_the_one_the_sdk_computes() -> None:
    body = '{"id": "evt_1"}'
    ours = signature_header(body, SECRET, timestamp_s=1_700_000_000)
    theirs = stripe.WebhookSignature.generate_signature_header(body, SECRET,
                                                               timestamp=1_700_000_000)
    assert ours == theirs


@pytest.mark.parametrize("variant", _GENUINE)
def test_the_sdk_accepts_every_genuinely_signed_variant(variant: DeliveryVariant) -> None:
    event = _success_event()
    signed = sign_variant(event, variant=variant, secret=SECRET, now_s=int(time.time()),
                          tolerance_s=300, rng=random.Random(1))
    verified = _verify(signed.body, dict(signed.headers))
    assert verified.id == event["id"]
    assert verified.type == "payment_intent.succeeded"
    assert signed.event_id == event["id"]


@pytest.mark.parametrize("variant", _FORGED)
def test_the_sdk_refuses_every_forged_variant(variant: DeliveryVariant) -> None:
    signed = sign_variant(_success_event(), variant=variant, secret=SECRET,
                          now_s=int(time.time()), tolerance_s=300, rng=random.Random(1))
    with pytest.raises(stripe.SignatureVerificationError):
        _verify(signed.body, dict(signed.headers))


def test_a_stale_copy_has_a_genuine_signature_older_than_the_tolerance() -> None:
    event = _success_event()
    now_s = int(time.time())
    signed = sign_variant(event, variant=DeliveryVariant.STALE, secret=SECRET, now_s=now_s,
                          tolerance_s=300, rng=random.Random(2))
    header = signed.headers[SIGNATURE_HEADER]
    timestamp_s = int(header.split(",")[0].removeprefix("t="))
    assert timestamp_s < now_s - 300
    assert stripe.WebhookSignature.verify_header(signed.body, header, SECRET, tolerance=None)


def test_a_tampered_body_has_a_new_event_id_and_inflated_tokens_and_amount() -> None:
    event = _success_event()
    signed = sign_variant(event, variant=DeliveryVariant.TAMPERED, secret=SECRET,
                          now_s=int(time.time()), tolerance_s=300, rng=random.Random(3))
    tampered = json.loads(signed.body)
    assert tampered["id"] != event["id"]
    assert signed.event_id == tampered["id"]
    assert tampered["data"]["object"]["metadata"] == {"user_id": "3", "tokens": "52500"}
    assert tampered["data"]["object"]["amount"] == 250000
    assert tampered["data"]["object"]["id"] == event["data"]["object"]["id"]  # type: ignore[index]


def test_tampering_turns_zero_tokens_into_some() -> None:
    event = {"id": "evt_1", "data": {"object": {"metadata": {"tokens": "0"}, "amount": 0}}}
    tampered = tamper_event(event, random.Random(0))
    assert tampered["data"]["object"]["metadata"]["tokens"] == "1000"
    assert tampered["data"]["object"]["amount"] == 1000


def test_a_genuine_envelope_carries_only_an_event_that_was_emitted() -> None:
    state = ProviderState(seed=5)
    pending = state.call("create_intent", {
        "amount": "2500", "currency": "usd", "payment_method": "pm_card_threeDSecure2Required",
        "confirm": "true", "metadata": {"user_id": "3", "tokens": "500"}}).body["id"]
    with pytest.raises(StripeError):
        build_envelope(state, intent_id=pending, event_type="payment_intent.succeeded",
                       variant=DeliveryVariant.REPLAY, secret=SECRET, tolerance_s=300,
                       rng=random.Random(0))
    replay = build_envelope(state, intent_id=pending, event_type="payment_intent.requires_action",
                            variant=DeliveryVariant.REPLAY, secret=SECRET, tolerance_s=300,
                            rng=random.Random(0))
    assert _verify(replay.body, dict(replay.headers)).id == state.events[0]["id"]


def test_a_forged_envelope_may_claim_a_success_that_never_happened() -> None:
    state = ProviderState(seed=5)
    state.call("create_intent", {
        "amount": "2500", "currency": "usd", "payment_method": "pm_card_visa",
        "confirm": "true", "metadata": {"user_id": "3", "tokens": "500"}})
    events_before = list(state.events)
    forged = build_envelope(state, intent_id=None, event_type="payment_intent.succeeded",
                            variant=DeliveryVariant.WRONG_SECRET, secret=SECRET,
                            tolerance_s=300, rng=random.Random(0))
    body = json.loads(forged.body)
    assert body["data"]["object"]["status"] == "succeeded"
    assert body["data"]["object"]["metadata"] == {"user_id": "3", "tokens": "500"}
    assert body["data"]["object"]["id"] not in state.intents
    assert state.events == events_before
    with pytest.raises(stripe.SignatureVerificationError):
        _verify(forged.body, dict(forged.headers))
    with pytest.raises(StripeError):
        build_envelope(state, intent_id=None, event_type="payment_intent.succeeded",
                       variant=DeliveryVariant.GENUINE, secret=SECRET, tolerance_s=300,
                       rng=random.Random(0))
