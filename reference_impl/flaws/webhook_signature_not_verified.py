"""webhook_signature_not_verified: a webhook needs a Stripe-Signature header, never a valid one.

The handler checks that the header is there (so a request without it is refused, which
makes the check look alive in a quick manual test) and then parses and trusts the body.
Anyone who knows the endpoint can post ``payment_intent.succeeded`` for any user with any
amount, or tamper with a genuine event on the way.
"""

from __future__ import annotations

import json
from typing import Any

from reference_impl.errors import WebhookRejected
from reference_impl.flaws._flaw import Flaw

__all__ = ["FLAW", "caught_by", "verify_webhook"]

caught_by = ("webhook_auth",)


def verify_webhook(payload: bytes, signature_header: str | None, *, secret: str,
                   tolerance_s: int) -> dict[str, Any]:
    """Webhook signature not verified: the header must be present, its HMAC is never checked."""
    del secret, tolerance_s  # configured, never used
    if not signature_header:
        raise WebhookRejected("bad_signature", "the Stripe-Signature header is missing")
    try:
        event = json.loads(payload)
    except ValueError:
        raise WebhookRejected("malformed_webhook", "the body is not JSON") from None
    if not isinstance(event, dict):
        raise WebhookRejected("malformed_webhook", "the body is not a JSON object")
    return event


FLAW = Flaw(
    name="webhook_signature_not_verified", operation="verify_webhook",
    replacement=verify_webhook, caught_by=caught_by,
    description="webhooks need a Stripe-Signature header but its HMAC is never checked, so "
                "forged and tampered events are applied (webhook_auth)")
