"""The provider's truth JSON (``GET /_tokenchaos/truth``) read into ``ProviderTruth``.

The provider knows intents by the metadata the target set on them; a target profile says
which metadata key names the user and which keys add up to the tokens an intent mints
(the reference service: ``user_id`` and ``tokens``; the seed's API: ``userId`` and
``tokenAmount`` + ``bonusTokens``). Users are mapped from the target's ids to logical
names; an intent of a user the run does not know (another run's, a forgery's) is kept
with ``user=None`` so money totals stay complete.

Pure: what the target wrote into metadata is data, never an exception. A token count that
is not an integer counts as zero, and the checkers then see the shortfall.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.errors import ProviderError
from harness.model import Delivery, DeliveryVariant, IntentTruth, ProviderTruth

__all__ = ["minted_tokens", "truth_from_json"]


def truth_from_json(data: Mapping[str, Any], *, user_key: str = "user_id",
                    tokens_keys: tuple[str, ...] = ("tokens",),
                    user_by_target_id: Mapping[str, str]) -> ProviderTruth:
    """Read the control API's truth.

    Args:
        data: ``{intents, events, deliveries, pending_deliveries}``.
        user_key: the metadata key holding the target's user id.
        tokens_keys: metadata keys whose integer values sum to the tokens minted.
        user_by_target_id: the target's user id (as a string) -> logical name.

    Raises:
        ProviderError: ``data`` does not have the shape the control API promises (a bug or
            version skew of the provider, not a misbehaving target).
    """
    assert tokens_keys, "name at least one metadata key holding tokens"
    try:
        intents = {intent.intent_id: intent for intent in (
            _intent(item, user_key=user_key, tokens_keys=tokens_keys,
                    user_by_target_id=user_by_target_id) for item in data["intents"])}
        deliveries = tuple(_delivery(item) for item in data.get("deliveries", ()))
        events = list(data.get("events", ()))
        event_types = {str(e["id"]): str(e["type"]) for e in events}
        event_intents = {str(e["id"]): str(e["intent_id"]) for e in events
                         if e.get("intent_id") is not None}
        pending = int(data.get("pending_deliveries", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProviderError(f"the provider's truth is not in the shape this harness reads "
                            f"({type(exc).__name__}: {exc}); are the harness and the "
                            "provider the same version?") from exc
    return ProviderTruth(intents=intents, deliveries=deliveries, event_types=event_types,
                         event_intents=event_intents, pending_deliveries_count=pending)


def minted_tokens(metadata: Mapping[str, Any], tokens_keys: tuple[str, ...]) -> int:
    """The sum of the integer values under ``tokens_keys``; anything else counts as 0."""
    total = 0
    for key in tokens_keys:
        value = metadata.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            total += value
        elif isinstance(value, str) and _is_integer(value):
            total += int(value)
    return total


def _intent(item: Mapping[str, Any], *, user_key: str, tokens_keys: tuple[str, ...],
            user_by_target_id: Mapping[str, str]) -> IntentTruth:
    metadata = item.get("metadata") or {}
    target_user = metadata.get(user_key)
    dispute = item.get("dispute")
    return IntentTruth(
        intent_id=str(item["id"]),
        user=user_by_target_id.get(str(target_user)) if target_user is not None else None,
        amount_cents=int(item["amount"]),
        minted_tokens=minted_tokens(metadata, tokens_keys),
        status=str(item["status"]),
        refunded_cents=int(item.get("amount_refunded") or 0),
        dispute_status=str(dispute["status"]) if dispute else None,
        disputed_cents=int(dispute["amount"]) if dispute else 0,
        idempotency_key=item.get("idempotency_key"),
    )


def _delivery(item: Mapping[str, Any]) -> Delivery:
    status_code = item.get("status_code")
    return Delivery(
        index=int(item["index"]), event_id=str(item["event_id"]),
        event_type=str(item["event_type"]), intent_id=item.get("intent_id"),
        variant=DeliveryVariant(item["variant"]),
        status_code=int(status_code) if status_code is not None else None,
        started_ns=int(item["started_ns"]), finished_ns=int(item["finished_ns"]),
        error=item.get("error"))


def _is_integer(text: str) -> bool:
    stripped = text.strip()
    if stripped.startswith("-"):
        stripped = stripped[1:]
    return stripped.isdigit() and len(stripped) <= 18
