"""The asyncio transport: runs a sans-IO flow over the ops' HTTP pool, aiohttp or httpx.

It sends, times, caps the body it reads, and maps transport exceptions to outcomes in one
table (``OUTCOME_BY_EXCEPTION``), through one context manager, as httpx maps httpcore's.
It never judges an answer: that is ``harness.protocol``'s job.

    nothing was sent         PoolConnectError (http_pool);
                             httpx ConnectError, ConnectTimeout, PoolTimeout;
                             aiohttp ClientConnectorError, ConnectionTimeoutError
                             (connecting, or waiting for a pooled connection) -> FAIL connect_error
    it may have been applied PoolReadTimeout -> read_timeout, PoolConnectionReset;
                             httpx ReadTimeout, WriteTimeout, ReadError, WriteError,
                             RemoteProtocolError; aiohttp SocketTimeoutError (no byte read
                             within the read timeout: aiohttp has no write timeout, so a
                             stalled write ends here too), ServerDisconnectedError,
                             ClientOSError, ClientPayloadError, ClientResponseError;
                             any other httpx or aiohttp error              -> INFO

The runner's ops go over ``http_pool.HttpPool`` (``session.make_ops_client``): keep-alive
HTTP/1.1 over httptools, about a quarter of aiohttp's CPU per request, and a cost per
request that does not grow with the pool, where httpcore's pool assignment does (every
request scans every connection). The control plane (provisioning, observers, health
checks, ``doctor``) stays on ``httpx.AsyncClient``; ``drive_async`` takes any of the three.
A flow's own bound (``timeout_s``) is one timer per request over the pool, and an
``asyncio.timeout`` around the flow over the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import aiohttp
import httpx

from harness.limits import Limits
from harness.model import Kind, Outcome
from harness.protocol import FLOW_STEPS_MAX, Flow, HttpRequest, HttpResponse
from harness.targets.http_pool import (
    HttpPool,
    PoolConnectError,
    PoolConnectionReset,
    PoolError,
    PoolReadTimeout,
)

__all__ = ["OUTCOME_BY_EXCEPTION", "OnResponse", "OpsClient", "drive_async",
           "map_transport_errors", "outcome_for_exception"]

TransportException = PoolError | httpx.HTTPError | aiohttp.ClientError
OpsClient = HttpPool | httpx.AsyncClient | aiohttp.ClientSession
_TRANSPORT_ERRORS = (PoolError, httpx.HTTPError, aiohttp.ClientError)

# Most specific first: ConnectTimeout and PoolTimeout are TimeoutExceptions, not
# ConnectErrors, and must be matched before any broader class; aiohttp's
# ConnectionTimeoutError is a ServerTimeoutError, matched before the read timeouts.
OUTCOME_BY_EXCEPTION: tuple[tuple[type[BaseException], Kind, str], ...] = (
    (PoolConnectError, Kind.FAIL, "connect_error"),
    (PoolReadTimeout, Kind.INFO, "read_timeout"),
    (PoolConnectionReset, Kind.INFO, "connection_reset"),
    (PoolError, Kind.INFO, "transport_error"),
    (httpx.ConnectTimeout, Kind.FAIL, "connect_error"),
    (httpx.PoolTimeout, Kind.FAIL, "connect_error"),
    (httpx.ConnectError, Kind.FAIL, "connect_error"),
    (httpx.ReadTimeout, Kind.INFO, "read_timeout"),
    (httpx.WriteTimeout, Kind.INFO, "write_timeout"),
    (httpx.ReadError, Kind.INFO, "connection_reset"),
    (httpx.WriteError, Kind.INFO, "connection_reset"),
    (httpx.RemoteProtocolError, Kind.INFO, "connection_reset"),
    (httpx.HTTPError, Kind.INFO, "transport_error"),  # anything else: assume it may have landed
    (aiohttp.ConnectionTimeoutError, Kind.FAIL, "connect_error"),
    (aiohttp.ClientConnectorError, Kind.FAIL, "connect_error"),
    (aiohttp.ServerTimeoutError, Kind.INFO, "read_timeout"),
    (aiohttp.ServerDisconnectedError, Kind.INFO, "connection_reset"),
    (aiohttp.ClientOSError, Kind.INFO, "connection_reset"),
    (aiohttp.ClientConnectionResetError, Kind.INFO, "connection_reset"),
    (aiohttp.ClientPayloadError, Kind.INFO, "connection_reset"),
    (aiohttp.ClientResponseError, Kind.INFO, "connection_reset"),  # a malformed answer
    (aiohttp.ClientError, Kind.INFO, "transport_error"),
)

OnResponse = Callable[[HttpRequest, HttpResponse | None, int], None]
"""Called after each request with its response (None on a transport error) and elapsed ns."""


def outcome_for_exception(exc: TransportException) -> Outcome:
    """The Outcome a transport exception means, from ``OUTCOME_BY_EXCEPTION``."""
    for exception_type, kind, error in OUTCOME_BY_EXCEPTION:
        if isinstance(exc, exception_type):
            assert kind in (Kind.FAIL, Kind.INFO)
            return Outcome(kind=kind, error=error)
    raise AssertionError(f"unmapped {type(exc).__name__}")  # the base classes close the table


@dataclass(slots=True)
class _Mapped:
    outcome: Outcome | None = None


@contextmanager
def map_transport_errors() -> Iterator[_Mapped]:
    """Turn a pool, httpx or aiohttp error raised in the block into ``mapped.outcome``."""
    mapped = _Mapped()
    try:
        yield mapped
    except _TRANSPORT_ERRORS as exc:
        mapped.outcome = outcome_for_exception(exc)


async def drive_async(flow: Flow, client: OpsClient, limits: Limits, *,
                      on_response: OnResponse | None = None,
                      timeout_s: float | None = None) -> Outcome:
    """Run ``flow`` over ``client``; return its Outcome, or the one a transport error means.

    Bodies are read up to one byte past ``limits.response_body_bytes_max`` and no further,
    so the protocol can see that an answer was too large without us holding all of it.
    Each request's timeouts are the client's (set from ``Limits``; see ``TargetSession``);
    ``timeout_s`` bounds the whole flow, past which it is INFO ``read_timeout``.
    """
    body_bytes_max = limits.response_body_bytes_max + 1
    if isinstance(client, HttpPool):
        deadline = None
        if timeout_s is not None:
            deadline = asyncio.get_running_loop().time() + timeout_s
        return await _drive(flow, lambda request: client.request(
            request, body_bytes_max=body_bytes_max, deadline=deadline), on_response)
    send = _send_aiohttp if isinstance(client, aiohttp.ClientSession) else _send_httpx
    try:
        async with asyncio.timeout(timeout_s):
            return await _drive(flow, lambda request: send(client, request, body_bytes_max),
                                on_response)
    except TimeoutError:
        flow.close()
        return Outcome(kind=Kind.INFO, error="read_timeout")


async def _drive(flow: Flow, send: Callable[[HttpRequest], Awaitable[HttpResponse]],
                 on_response: OnResponse | None) -> Outcome:
    request = next(flow)
    for _ in range(FLOW_STEPS_MAX):
        started_ns = time.monotonic_ns()
        # ``map_transport_errors``, inlined: a context manager per request costs more here.
        try:
            response = await send(request)
        except _TRANSPORT_ERRORS as exc:
            if on_response is not None:
                on_response(request, None, time.monotonic_ns() - started_ns)
            flow.close()
            return outcome_for_exception(exc)
        if on_response is not None:
            on_response(request, response, time.monotonic_ns() - started_ns)
        try:
            request = flow.send(response)
        except StopIteration as stop:
            outcome: Outcome = stop.value
            return outcome
    raise AssertionError(f"a flow made more than {FLOW_STEPS_MAX} requests")


async def _send_aiohttp(client: OpsClient, request: HttpRequest,
                        body_bytes_max: int) -> HttpResponse:
    assert isinstance(client, aiohttp.ClientSession)
    async with client.request(request.method, request.url, headers=list(request.headers),
                              data=request.body or None, allow_redirects=False) as answer:
        chunks: list[bytes] = []
        size = 0
        async for chunk in answer.content.iter_any():
            chunks.append(chunk)
            size += len(chunk)
            if size >= body_bytes_max:
                break
        body = b"".join(chunks)[:body_bytes_max]
        # Lower-case names, as httpx's ``multi_items`` gives them to the protocol.
        headers = tuple((name.lower(), value) for name, value in answer.headers.items())
        return HttpResponse(status_code=answer.status, headers=headers, body=body)


async def _send_httpx(client: OpsClient, request: HttpRequest,
                      body_bytes_max: int) -> HttpResponse:
    assert isinstance(client, httpx.AsyncClient)
    async with client.stream(request.method, request.url, headers=list(request.headers),
                             content=request.body or None) as answer:
        chunks: list[bytes] = []
        size = 0
        async for chunk in answer.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= body_bytes_max:
                break
        body = b"".join(chunks)[:body_bytes_max]
        return HttpResponse(status_code=answer.status_code,
                            headers=tuple(answer.headers.multi_items()), body=body)
