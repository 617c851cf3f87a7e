"""HTTP plumbing: the body-size limit, the exception handlers, and JSON answers.

Every answer the service gives is JSON, and every error is ``{"error": {"code",
"message"}}``: the handlers installed here turn our own errors, framework errors (unknown
route, wrong method), database outages and even unexpected exceptions into that shape, so
no traceback ever reaches a client (it goes to the log). Bad input is a 4xx, never a 5xx.

This module knows nothing of tokens; it does not call operations.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import psycopg
import psycopg.errors
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reference_impl.db import ConnectionLost, DatabaseUnreachable
from reference_impl.errors import Answer, ApiError, WebhookRejected, error_body

__all__ = ["BodyLimitMiddleware", "answer_response", "install_error_handlers"]

log = logging.getLogger(__name__)

# A body arriving in more pieces than this is refused even if small: a client trickling
# empty chunks must not hold a request open forever.
_BODY_CHUNKS_MAX = 4096
# Of a body refused as too large, at most this much more is read before answering.
_DRAIN_BYTES_MAX = 1 << 20
_CODE_BY_STATUS = {400: "bad_request", 401: "unauthorized", 403: "forbidden",
                   404: "not_found", 405: "method_not_allowed", 413: "body_too_large",
                   415: "unsupported_media_type", 422: "invalid"}


def answer_response(answer: Answer) -> JSONResponse:
    """The HTTP response for an operation's answer: its status and body, errors wrapped."""
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    if answer.is_error:
        details = {key: value for key, value in answer.body.items() if key != "message"}
        content: Any = error_body(str(answer.result), str(answer.body["message"]), **details)
    else:
        content = dict(answer.body)
    return JSONResponse(status_code=answer.status_code, content=content, headers=headers)


def _error(status_code: int, code: str, message: str,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status_code, content=error_body(code, message),
                        headers=dict(headers) if headers else None)


class BodyLimitMiddleware:
    """Refuse a request body over ``body_bytes_max`` with 413, before anything parses it.

    A declared ``Content-Length`` over the limit is refused without reading; a chunked
    body is read up to the limit and refused as soon as it passes it. A body within the
    limit is handed to the application whole.
    """

    def __init__(self, app: ASGIApp, *, body_bytes_max: int) -> None:
        self.app = app
        self.body_bytes_max = body_bytes_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit()
                                     or int(declared) > self.body_bytes_max):
            await _drain(receive)
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size_bytes = 0
        for _ in range(_BODY_CHUNKS_MAX):
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away; nothing to answer
            body = message.get("body", b"")
            size_bytes += len(body)
            if size_bytes > self.body_bytes_max:
                if message.get("more_body", False):
                    await _drain(receive)
                await self._too_large(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        else:
            await self._too_large(scope, receive, send)
            return
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _error(413, "body_too_large",
                          f"the request body is over {self.body_bytes_max} bytes",
                          headers={"Connection": "close"})
        await response(scope, receive, send)


async def _drain(receive: Receive) -> None:
    """Read and drop the rest of a refused body (bounded), so the client sees our 413.

    A client still sending when the server answers and closes gets a connection reset
    instead of the answer; reading what it sends, up to a bound, lets it read the 413.
    """
    drained_bytes = 0
    for _ in range(_BODY_CHUNKS_MAX):
        message = await receive()
        drained_bytes += len(message.get("body", b""))
        if (message["type"] == "http.disconnect" or not message.get("more_body", False)
                or drained_bytes > _DRAIN_BYTES_MAX):
            return


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the buffered body once, then waits on the real one."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception to the JSON error shape; log the ones that are our fault."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(WebhookRejected, _webhook_rejected)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(PoolTimeout, _database_busy)
    app.add_exception_handler(psycopg.errors.LockNotAvailable, _database_busy)
    app.add_exception_handler(psycopg.errors.QueryCanceled, _database_busy)
    app.add_exception_handler(psycopg.errors.DeadlockDetected, _database_busy)
    app.add_exception_handler(psycopg.errors.SerializationFailure, _database_busy)
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)
    app.add_exception_handler(ConnectionLost, _database_unavailable)
    app.add_exception_handler(DatabaseUnreachable, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    if exc.status_code >= 500:
        log.warning("%s %s: %s %s", request.method, request.url.path, exc.code, exc.message)
    return JSONResponse(status_code=exc.status_code, content=exc.body())


async def _webhook_rejected(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WebhookRejected)
    log.info("webhook rejected: %s (%s)", exc.code, exc.message)
    return _error(400, exc.code, exc.message)


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg')}"
        for error in exc.errors()[:10])
    return _error(422, "invalid", problems or "invalid request")


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODE_BY_STATUS.get(exc.status_code, f"http_{exc.status_code}")
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else code
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}"
    return _error(exc.status_code, code, message, headers=exc.headers)


async def _database_busy(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: database busy: %s", request.method, request.url.path, exc)
    return _error(503, "database_busy", "the database is busy; retry with the same "
                                        "Idempotency-Key", headers={"Retry-After": "1"})


class _OutageLog:
    """One warning per outage, not one per request: while the database is down every
    request answers 503, and a line for each would bury the log. A warning names the
    first request of an outage; the next one comes ``quiet_s`` after, with the count of
    the requests answered 503 in between."""

    def __init__(self, quiet_s: float = 5.0) -> None:
        self._quiet_s = quiet_s
        self._last_s: float | None = None
        self._since = 0

    def __call__(self, request: Request, exc: Exception) -> None:
        now_s = time.monotonic()
        if self._last_s is not None and now_s - self._last_s < self._quiet_s:
            self._since += 1
            return
        since = f" ({self._since} more answered 503 since the last warning)" \
            if self._since else ""
        log.warning("%s %s: database unavailable: %s%s", request.method, request.url.path,
                    exc, since)
        self._last_s, self._since = now_s, 0


_log_outage = _OutageLog()


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    _log_outage(request, exc)
    return _error(503, "database_unavailable", "the database is unavailable; retry with the "
                                               "same Idempotency-Key",
                  headers={"Retry-After": "1"})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _error(500, "internal_error", "the service failed unexpectedly; the request may "
                                         "or may not have been applied, so retry it with the "
                                         "same Idempotency-Key")
