"""The asyncio transport: runs a sans-IO flow over ``httpx.AsyncClient``.

It sends, times, caps the body it reads, and maps transport exceptions to outcomes in one
table (``OUTCOME_BY_EXCEPTION``), through one context manager, as httpx maps httpcore's.
It never judges an answer: that is ``harness.protocol``'s job.

    nothing was sent         ConnectError, ConnectTimeout, PoolTimeout     -> FAIL connect_error
    it may have been applied ReadTimeout, WriteTimeout, ReadError, WriteError,
                             RemoteProtocolError, any other httpx error     -> INFO
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from harness.limits import Limits
from harness.model import Kind, Outcome
from harness.protocol import FLOW_STEPS_MAX, Flow, HttpRequest, HttpResponse

__all__ = ["OUTCOME_BY_EXCEPTION", "OnResponse", "drive_async", "map_transport_errors",
           "outcome_for_exception"]

# Most specific first: ConnectTimeout and PoolTimeout are TimeoutExceptions, not
# ConnectErrors, and must be matched before any broader class.
OUTCOME_BY_EXCEPTION: tuple[tuple[type[httpx.HTTPError], Kind, str], ...] = (
    (httpx.ConnectTimeout, Kind.FAIL, "connect_error"),
    (httpx.PoolTimeout, Kind.FAIL, "connect_error"),
    (httpx.ConnectError, Kind.FAIL, "connect_error"),
    (httpx.ReadTimeout, Kind.INFO, "read_timeout"),
    (httpx.WriteTimeout, Kind.INFO, "write_timeout"),
    (httpx.ReadError, Kind.INFO, "connection_reset"),
    (httpx.WriteError, Kind.INFO, "connection_reset"),
    (httpx.RemoteProtocolError, Kind.INFO, "connection_reset"),
    (httpx.HTTPError, Kind.INFO, "transport_error"),  # anything else: assume it may have landed
)

OnResponse = Callable[[HttpRequest, HttpResponse | None, int], None]
"""Called after each request with its response (None on a transport error) and elapsed ns."""


def outcome_for_exception(exc: httpx.HTTPError) -> Outcome:
    """The Outcome a transport exception means, from ``OUTCOME_BY_EXCEPTION``."""
    for exception_type, kind, error in OUTCOME_BY_EXCEPTION:
        if isinstance(exc, exception_type):
            assert kind in (Kind.FAIL, Kind.INFO)
            return Outcome(kind=kind, error=error)
    raise AssertionError(f"unmapped {type(exc).__name__}")  # HTTPError closes the table


@dataclass(slots=True)
class _Mapped:
    outcome: Outcome | None = None


@contextmanager
def map_transport_errors() -> Iterator[_Mapped]:
    """Turn an httpx error raised in the block into ``mapped.outcome``; nothing escapes."""
    mapped = _Mapped()
    try:
        yield mapped
    except httpx.HTTPError as exc:
        mapped.outcome = outcome_for_exception(exc)


async def drive_async(flow: Flow, client: httpx.AsyncClient, limits: Limits, *,
                      on_response: OnResponse | None = None) -> Outcome:
    """Run ``flow`` over ``client``; return its Outcome, or the one a transport error means.

    Bodies are read up to one byte past ``limits.response_body_bytes_max`` and no further,
    so the protocol can see that an answer was too large without us holding all of it.
    Timeouts are the client's (set them from ``Limits``; see ``TargetSession``).
    """
    request = next(flow)
    for _ in range(FLOW_STEPS_MAX):
        started_ns = time.monotonic_ns()
        response: HttpResponse | None = None
        with map_transport_errors() as mapped:
            response = await _send(client, request, limits.response_body_bytes_max + 1)
        if on_response is not None:
            on_response(request, response, time.monotonic_ns() - started_ns)
        if mapped.outcome is not None:
            flow.close()
            return mapped.outcome
        assert response is not None
        try:
            request = flow.send(response)
        except StopIteration as stop:
            outcome: Outcome = stop.value
            return outcome
    raise AssertionError(f"a flow made more than {FLOW_STEPS_MAX} requests")


async def _send(client: httpx.AsyncClient, request: HttpRequest,
                body_bytes_max: int) -> HttpResponse:
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
