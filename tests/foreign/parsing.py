"""Parsing request fields of the foreign service: whole numbers, strings, and tips.

A field that does not parse raises ``Refused`` carrying the 400 that answers it; nothing
has been changed when it is raised. ``read_tip`` is an operation of the registry (a flaw
replaces it), so it answers the refusal instead of raising it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.foreign.replies import Reply, error
from tests.foreign.wallets import TOKENS_MAX

__all__ = ["TEXT_CHARS_MAX", "Refused", "read_tip", "text", "whole"]

TEXT_CHARS_MAX = 200


class Refused(Exception):
    """A request that cannot be parsed: answered 4xx, nothing changed."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.body.get("detail"))
        self.reply = reply


def whole(body: Mapping[str, Any], name: str, *, low: int, high: int) -> int:
    """A JSON integer field within [low, high] (a bool, a float or a string is refused)."""
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Refused(error(400, "bad_field", f"{name} must be a whole number from {low} to "
                            f"{high}, got {value!r}"))
    return value


def text(body: Mapping[str, Any], name: str, *, optional: bool = False) -> str | None:
    """A non-empty JSON string field of at most ``TEXT_CHARS_MAX`` characters."""
    value = body.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= TEXT_CHARS_MAX:
        raise Refused(error(400, "bad_field", f"{name} must be a string of 1 to "
                            f"{TEXT_CHARS_MAX} characters, got {value!r}"))
    return value


def read_tip(body: Mapping[str, Any], *, sender: str) -> tuple[str, int] | Reply:
    """``(recipient, tokens)`` of a tip body, or the 400 ``Reply`` that refuses it."""
    try:
        to_owner = text(body, "to")
        tokens = whole(body, "tokens", low=1, high=TOKENS_MAX)
    except Refused as refused:
        return refused.reply
    assert to_owner is not None
    if to_owner == sender:
        return error(400, "self_tip", "you cannot tip yourself")
    return to_owner, tokens
