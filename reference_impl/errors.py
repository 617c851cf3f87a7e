"""What the service answers: expected results as values, and the few real exceptions.

    Result (StrEnum)          an expected outcome of an operation: created, exists,
                              insufficient_funds, ... -> one HTTP status each, in
                              STATUS_BY_RESULT; an operation returns an ``Answer``
    ServiceError              something the caller must hear about as an error, raised
     ├── ApiError             a 4xx/5xx with a code and message, raised by the HTTP layer
     │                        (bad auth, bad input, body too large) or by an operation
     │                        that cannot finish (provider unreachable)
     ├── WebhookRejected      a webhook whose signature, timestamp or shape is wrong (400)
     └── ConfigError          bad settings or flaw names: the service refuses to start

Expected outcomes (TigerBeetle's rule) are never exceptions: insufficient funds, an
unknown recipient, an idempotency key reused with another body are ``Result`` values that
an operation returns, and that are stored with the key so a replay answers the same.
Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

__all__ = [
    "STATUS_BY_RESULT",
    "Answer",
    "ApiError",
    "ConfigError",
    "Result",
    "ServiceError",
    "WebhookRejected",
    "error_body",
]


class Result(StrEnum):
    """Every expected outcome of an operation; the value doubles as the error code."""

    CREATED = "created"  # a new tip, charge, call, user or purchase
    OK = "ok"  # a read, or a call ended
    EXISTS = "exists"  # this call minute was charged before: the first answer again
    INSUFFICIENT_FUNDS = "insufficient_funds"
    CARD_DECLINED = "card_declined"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    CALL_ENDED = "call_ended"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"  # key reused with another body
    INVALID = "invalid"
    UNKNOWN_PAYMENT_METHOD = "unknown_payment_method"  # the provider has no such method
    # Webhooks: every one of these is acknowledged with a 200.
    APPLIED = "applied"  # the event changed the books
    RECORDED = "recorded"  # remembered on the payment, applied when the success arrives
    DUPLICATE_EVENT = "duplicate_event"  # this event id was processed before
    ALREADY_APPLIED = "already_applied"  # another event already did this (a second success)
    IGNORED = "ignored"  # an event type we do not act on, or an object naming no intent
    # An event about an intent this service never recorded, or that disagrees with its
    # record (amount, currency, user, tokens): nothing applied, a webhook anomaly recorded.
    ANOMALY = "anomaly"


STATUS_BY_RESULT: Mapping[Result, int] = MappingProxyType({
    Result.CREATED: 201,
    Result.OK: 200,
    Result.EXISTS: 201,
    Result.INSUFFICIENT_FUNDS: 402,
    Result.CARD_DECLINED: 402,
    Result.NOT_FOUND: 404,
    Result.FORBIDDEN: 403,
    Result.CALL_ENDED: 409,
    Result.IDEMPOTENCY_CONFLICT: 409,
    Result.INVALID: 422,
    Result.UNKNOWN_PAYMENT_METHOD: 422,
    Result.APPLIED: 200,
    Result.RECORDED: 200,
    Result.DUPLICATE_EVENT: 200,
    Result.ALREADY_APPLIED: 200,
    Result.IGNORED: 200,
    Result.ANOMALY: 200,
})
assert set(STATUS_BY_RESULT) == set(Result), "every result needs an HTTP status"


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What an operation returns: a result and the JSON body that goes with it.

    For an error result, ``body`` holds at least ``message``; the HTTP layer wraps it as
    ``{"error": {"code": result, "message": ..., ...}}``. ``replayed`` is True when the
    answer comes from an idempotency key's stored answer.
    """

    result: Result
    body: Mapping[str, Any] = field(default_factory=dict)
    replayed: bool = False

    def __post_init__(self) -> None:
        if self.status_code >= 400:
            assert isinstance(self.body.get("message"), str), self.body

    @property
    def status_code(self) -> int:
        return STATUS_BY_RESULT[self.result]

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400


def error_body(code: str, message: str, **details: Any) -> dict[str, Any]:
    """The one error shape: ``{"error": {"code", "message", ...details}}``."""
    assert code, "an error needs a code"
    assert message, "an error needs a message"
    return {"error": {"code": code, "message": message, **details}}


class ServiceError(Exception):
    """Base of the exceptions this package raises on purpose."""


class ApiError(ServiceError):
    """An error answer: HTTP status, a snake_case code, and a message saying what to do."""

    def __init__(self, status_code: int, code: str, message: str, **details: Any) -> None:
        assert 400 <= status_code <= 599, status_code
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, **self.details)


class WebhookRejected(ServiceError):
    """A webhook that must not be applied: bad or missing signature, stale, malformed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # "bad_signature" | "stale_webhook" | "malformed_webhook"
        self.message = message


class ConfigError(ServiceError):
    """Bad settings or flaw names: the message names the variable and what to set."""
