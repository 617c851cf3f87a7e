"""Webhook verification: Stripe's signature scheme and timestamp tolerance, via the SDK."""

from __future__ import annotations

import json
import time

import pytest

from reference_impl.errors import WebhookRejected
from reference_impl.payments import verify_webhook
from reference_impl.testing import intent_object, sign, stripe_event

SECRET = "whsec_unit"
PAYLOAD = json.dumps(stripe_event("payment_intent.succeeded", intent_object(
    "pi_1", amount_cents=500, user_id=1001, minted_tokens=100))).encode()


def _verify(payload: bytes, header: str | None) -> dict[str, object]:
    return verify_webhook(payload, header, secret=SECRET, tolerance_s=300)


def test_a_correctly_signed_event_is_returned_as_plain_data() -> None:
    event = _verify(PAYLOAD, sign(PAYLOAD, SECRET))
    assert event == json.loads(PAYLOAD)


# The ids are fixed: a clock in an id makes xdist workers collect different tests.
@pytest.mark.parametrize("header", [None, "", "garbage", "t=abc,v1=00", "v1=00",
                                    f"t={int(time.time())}"],
                         ids=["none", "empty", "garbage", "bad_t", "no_t", "no_v1"])
def test_a_missing_or_malformed_signature_is_a_bad_signature(header: str | None) -> None:
    with pytest.raises(WebhookRejected) as caught:
        _verify(PAYLOAD, header)
    assert caught.value.code == "bad_signature"


def test_a_wrong_secret_is_a_bad_signature() -> None:
    with pytest.raises(WebhookRejected) as caught:
        _verify(PAYLOAD, sign(PAYLOAD, "whsec_other"))
    assert caught.value.code == "bad_signature"


def test_a_tampered_body_is_a_bad_signature() -> None:
    header = sign(PAYLOAD, SECRET)
    with pytest.raises(WebhookRejected) as caught:
        _verify(PAYLOAD.replace(b'"100"', b'"900"'), header)
    assert caught.value.code == "bad_signature"


def test_a_signature_older_than_the_tolerance_is_stale() -> None:
    with pytest.raises(WebhookRejected) as caught:
        _verify(PAYLOAD, sign(PAYLOAD, SECRET, timestamp=int(time.time()) - 301))
    assert caught.value.code == "stale_webhook"


def test_a_signature_within_the_tolerance_is_accepted() -> None:
    assert _verify(PAYLOAD, sign(PAYLOAD, SECRET, timestamp=int(time.time()) - 200))


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_a_signed_body_that_is_not_an_event_is_malformed(payload: bytes) -> None:
    with pytest.raises(WebhookRejected) as caught:
        _verify(payload, sign(payload, SECRET))
    assert caught.value.code == "malformed_webhook"
