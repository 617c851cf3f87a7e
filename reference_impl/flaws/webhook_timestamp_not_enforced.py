"""webhook_timestamp_not_enforced: webhook signatures are verified with no timestamp tolerance.

The SDK is called with ``tolerance=0`` (a setting read from an unset variable), which it
takes as "no limit": the HMAC is checked, the age of the signature is not. An event
captured once (from a log, a proxy, a leaked request dump) can be replayed at any time
later and is accepted as fresh.
"""

from __future__ import annotations

import json
from typing import Any

import stripe

from reference_impl.errors import WebhookRejected
from reference_impl.flaws._flaw import Flaw

__all__ = ["FLAW", "caught_by", "verify_webhook"]

caught_by = ("webhook_auth",)

_TOLERANCE_S_UNSET = 0  # what the configuration holds when nobody set it


def verify_webhook(payload: bytes, signature_header: str | None, *, secret: str,
                   tolerance_s: int) -> dict[str, Any]:
    """Webhook timestamp tolerance not enforced: the HMAC is checked, the signature's age not."""
    del tolerance_s  # the configured tolerance never reaches the SDK
    try:
        stripe.Webhook.construct_event(payload, signature_header, secret,
                                       tolerance=_TOLERANCE_S_UNSET)
    except stripe.SignatureVerificationError as exc:
        raise WebhookRejected("bad_signature", f"the Stripe-Signature does not verify: "
                                               f"{exc.user_message or exc}") from None
    except Exception:  # the SDK parses the body after verifying it, and may fail anywhere
        raise WebhookRejected("malformed_webhook", "the body is not a Stripe event") from None
    event = json.loads(payload)
    if not isinstance(event, dict):
        raise WebhookRejected("malformed_webhook", "the body is not a JSON object")
    return event


FLAW = Flaw(
    name="webhook_timestamp_not_enforced", operation="verify_webhook",
    replacement=verify_webhook, caught_by=caught_by,
    description="webhook signatures are checked with no timestamp tolerance, so a captured "
                "event replayed long after is accepted (webhook_auth)")
