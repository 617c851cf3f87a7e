"""What the foreign service's operations answer: a status, a JSON body, extra headers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Reply", "error"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """An answer: HTTP status, JSON body, extra headers."""

    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


def error(status: int, code: str, detail: str) -> Reply:
    """A refusal: ``{"error": code, "detail": ...}``."""
    return Reply(status=status, body={"error": code, "detail": detail})
