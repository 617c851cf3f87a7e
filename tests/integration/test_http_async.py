"""The async transport over real loopback sockets: body bound, refused, reset, silent peers.

Each behaviour holds over every client ``drive_async`` takes: the ops' connection pool, an
aiohttp session and the control plane's httpx client.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from harness.limits import Limits
from harness.model import Kind, Outcome
from harness.pg import free_port
from harness.protocol import Flow, HttpRequest, HttpResponse
from harness.targets.http_async import OpsClient, drive_async
from harness.targets.session import make_client, make_ops_client

pytestmark = pytest.mark.integration

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
LIMITS = Limits(op_timeout_s=0.5, connect_timeout_s=0.5, response_body_bytes_max=1000)


def _aiohttp(limits: Limits) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=limits.connect_timeout_s,
                                      sock_read=limits.op_timeout_s),
        cookie_jar=aiohttp.DummyCookieJar())
    session._retry_connection = False  # as httpx and the pool: never resend
    return session


MAKERS: dict[str, Callable[[Limits], OpsClient]] = {
    "pool": make_ops_client, "aiohttp": _aiohttp, "httpx": make_client}


@pytest.fixture(params=sorted(MAKERS))
def make(request: pytest.FixtureRequest) -> Callable[[Limits], OpsClient]:
    """Each test runs over every client."""
    maker: Callable[[Limits], OpsClient] = MAKERS[request.param]
    return maker


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start a raw TCP server on loopback with the given handler; yield its URL."""
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


def _answer(status: int, body: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nContent-Type: application/json"
                     b"\r\n\r\n%s" % (status, len(body), body))
        await writer.drain()
        writer.close()
    return handle


def _flow(url: str, seen: list[HttpResponse]) -> Flow:
    response = yield HttpRequest(method="POST", url=url + "/x", body=b"{}")
    seen.append(response)
    return Outcome(kind=Kind.OK, status_code=response.status_code)


async def _drive(make: Callable[[Limits], OpsClient], url: str,
                 limits: Limits = LIMITS) -> tuple[Outcome, list[HttpResponse]]:
    seen: list[HttpResponse] = []
    async with make(limits) as client:
        outcome = await drive_async(_flow(url, seen), client, limits)
    return outcome, seen


async def test_an_answer_reaches_the_flow_with_status_and_body(serve, make) -> None:
    url = await serve(_answer(201, b'{"ok":1}'))
    outcome, seen = await _drive(make, url)
    assert outcome.kind == Kind.OK
    assert (seen[0].status_code, seen[0].body) == (201, b'{"ok":1}')


async def test_a_body_is_read_only_just_past_the_bound(serve, make) -> None:
    url = await serve(_answer(200, b"x" * 50_000))
    _, seen = await _drive(make, url)
    assert len(seen[0].body) == LIMITS.response_body_bytes_max + 1


async def test_a_refused_connection_is_a_fail_nothing_was_sent(make) -> None:
    outcome, seen = await _drive(make, f"http://127.0.0.1:{free_port()}")
    assert (outcome.kind, outcome.error) == (Kind.FAIL, "connect_error")
    assert seen == []


async def test_a_peer_that_closes_after_reading_the_request_is_info(serve, make) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.close()
    outcome, _ = await _drive(make, await serve(hang_up))
    assert (outcome.kind, outcome.error) == (Kind.INFO, "connection_reset")


async def test_a_peer_that_never_answers_is_info_read_timeout(serve, make) -> None:
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await release.wait()
        writer.close()
    limits = dataclasses.replace(LIMITS, op_timeout_s=0.2, connect_timeout_s=0.2)
    outcome, _ = await _drive(make, await serve(silent), limits)
    release.set()
    assert (outcome.kind, outcome.error) == (Kind.INFO, "read_timeout")


async def test_on_response_sees_every_request_with_its_elapsed_time(serve, make) -> None:
    url = await serve(_answer(200, b"{}"))
    calls: list[tuple[str, int | None, int]] = []
    async with make(LIMITS) as client:
        await drive_async(_flow(url, []), client, LIMITS, on_response=lambda req, resp, ns:
                          calls.append((req.url, resp and resp.status_code, ns)))
    assert [(u, s) for u, s, _ in calls] == [(url + "/x", 200)]
    assert calls[0][2] > 0


async def test_answer_headers_reach_the_flow_with_lower_case_names(serve, make) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 X\r\nContent-Length: 2\r\nIdempotent-Replayed: true\r\n"
                     b"\r\n{}")
        await writer.drain()
        writer.close()
    _, seen = await _drive(make, await serve(handle))
    assert ("idempotent-replayed", "true") in seen[0].headers


async def test_a_request_reaches_the_peer_with_its_method_headers_and_body(serve, make) -> None:
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        received.append(head + await reader.readexactly(2))
        writer.write(b"HTTP/1.1 200 X\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()
    url = await serve(handle)

    def flow() -> Flow:
        yield HttpRequest(method="POST", url=url + "/tips", body=b"{}",
                          headers=(("Authorization", "Bearer t-1"),))
        return Outcome(kind=Kind.OK)
    async with make(LIMITS) as client:
        await drive_async(flow(), client, LIMITS)
    head, _, body = received[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /tips HTTP/1.1\r\n")
    assert b"authorization: bearer t-1" in head.lower()
    assert body == b"{}"
