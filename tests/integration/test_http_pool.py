"""The ops' connection pool over real loopback sockets: reuse, bounds, servers that hang up.

What matters most here: a request is never sent twice. A connection the server closed
while it sat idle is replaced before a byte is written on it; once a byte was written,
a lost connection is the request's outcome (INFO), never a resend. Every test runs on
asyncio's own loop and on uvloop, which the runner uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import uvloop

from harness.limits import Limits
from harness.model import Kind, Outcome
from harness.protocol import Flow, HttpRequest
from harness.targets.http_async import drive_async
from harness.targets.http_pool import HttpPool, PoolConnectError, PoolConnectionReset
from harness.targets.http_wire import InvalidRequest

# The loop is chosen per test by overriding ``event_loop_policy``: the hook pytest-asyncio
# now prefers would change the loop of every test in the suite, not of these alone.
pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings(
    "ignore:Overriding the \"event_loop_policy\" fixture:DeprecationWarning")]

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
LIMITS = Limits(op_timeout_s=2.0, connect_timeout_s=1.0, response_body_bytes_max=1000)
POLLS_MAX = 2000  # event-loop turns a test waits for a close to reach the client
OK_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


@pytest.fixture(params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    if request.param == "uvloop":
        return uvloop.EventLoopPolicy()
    return asyncio.DefaultEventLoopPolicy()


def _pool(connections_max: int = 4) -> HttpPool:
    return HttpPool(connections_max=connections_max, connect_timeout_s=1.0,
                    read_timeout_s=2.0, keepalive_s=30.0)


class Server:
    """A raw HTTP server on loopback that counts connections and requests."""

    def __init__(self, answer: Callable[[Server, int], Awaitable[bytes | None]]) -> None:
        self.answer = answer
        self.connections_count = 0
        self.requests_count = 0
        self.open_count = 0
        self.open_count_max = 0
        self.url = ""
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_count += 1
        self.open_count += 1
        self.open_count_max = max(self.open_count_max, self.open_count)
        self.writers.append(writer)
        try:
            while True:  # bounded: the client's requests on this connection
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                self.requests_count += 1
                data = await self.answer(self, self.requests_count)
                if data is None:  # hang up without answering
                    return
                writer.write(data)
                await writer.drain()
        finally:
            self.open_count -= 1
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Callable[[Server, int], Awaitable[bytes | None]]],
                                            Awaitable[Server]]]:
    servers: list[asyncio.Server] = []

    async def start(answer: Callable[[Server, int], Awaitable[bytes | None]]) -> Server:
        server = Server(answer)
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(listening)
        server.url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}"
        return server

    yield start
    for listening in servers:
        listening.close()


async def _ok(server: Server, index: int) -> bytes | None:
    return OK_ANSWER


def _flow(url: str) -> Flow:
    response = yield HttpRequest(method="POST", url=url + "/tips", body=b"{}")
    return Outcome(kind=Kind.OK, status_code=response.status_code)


async def _wait_closed(pool: HttpPool, url: str) -> None:
    """Let the loop run until the pool has seen its idle connection close."""
    for _ in range(POLLS_MAX):
        if not pool._origins[url].idle[0].usable(0.0):
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the server's close never reached the client")


async def test_sequential_requests_share_one_kept_alive_connection(serve) -> None:
    server = await serve(_ok)
    async with _pool() as pool:
        outcomes = [await drive_async(_flow(server.url), pool, LIMITS) for _ in range(5)]
        assert pool.idle_count(server.url) == 1
    assert {o.kind for o in outcomes} == {Kind.OK}
    assert (server.connections_count, server.requests_count) == (1, 5)


async def test_an_idle_connection_the_server_closed_is_replaced_before_sending(serve) -> None:
    server = await serve(_ok)
    async with _pool() as pool:
        assert (await drive_async(_flow(server.url), pool, LIMITS)).kind == Kind.OK
        server.writers[0].close()  # the server's keep-alive timeout, say
        await _wait_closed(pool, server.url)
        outcome = await drive_async(_flow(server.url), pool, LIMITS)
    assert outcome.kind == Kind.OK
    assert (server.connections_count, server.requests_count) == (2, 2)


async def test_a_connection_lost_after_the_request_was_written_is_info_never_resent(
        serve) -> None:
    async def second_hangs_up(server: Server, index: int) -> bytes | None:
        return OK_ANSWER if index == 1 else None
    server = await serve(second_hangs_up)
    async with _pool() as pool:
        assert (await drive_async(_flow(server.url), pool, LIMITS)).kind == Kind.OK
        outcome = await drive_async(_flow(server.url), pool, LIMITS)
    assert (outcome.kind, outcome.error) == (Kind.INFO, "connection_reset")
    assert server.requests_count == 2  # the lost one reached the server once, no more


async def test_a_server_that_drops_every_connection_gives_info_or_fail_and_no_resend(
        serve) -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(1)
        writer.transport.abort()
    seen: list[int] = []
    listening = await asyncio.start_server(drop, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}"
    try:
        async with _pool() as pool:
            outcomes = [await drive_async(_flow(url), pool, LIMITS) for _ in range(3)]
    finally:
        listening.close()
    for outcome in outcomes:
        assert (outcome.kind, outcome.error) in ((Kind.INFO, "connection_reset"),
                                                 (Kind.FAIL, "connect_error"))
    assert len(seen) == 3  # one connection per request: none was sent again


async def test_connection_close_answers_are_followed_by_a_fresh_connection(serve) -> None:
    async def closing(server: Server, index: int) -> bytes | None:
        return b"HTTP/1.1 201 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    server = await serve(closing)
    async with _pool() as pool:
        outcomes = [await drive_async(_flow(server.url), pool, LIMITS) for _ in range(3)]
        assert pool.idle_count(server.url) == 0
    assert [o.status_code for o in outcomes] == [201, 201, 201]
    assert server.connections_count == 3


async def test_a_chunked_answer_arrives_whole_over_the_wire(serve) -> None:
    async def chunked(server: Server, index: int) -> bytes | None:
        return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n")
    server = await serve(chunked)
    async with _pool() as pool:
        responses = [await pool.request(HttpRequest(method="GET", url=server.url + "/"),
                                        body_bytes_max=100) for _ in range(2)]
    assert [r.body for r in responses] == [b'{"a":1}', b'{"a":1}']
    assert server.connections_count == 1


async def test_an_answer_past_the_body_bound_closes_its_connection(serve) -> None:
    async def large(server: Server, index: int) -> bytes | None:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000
    server = await serve(large)
    async with _pool() as pool:
        response = await pool.request(HttpRequest(method="GET", url=server.url + "/"),
                                      body_bytes_max=11)
        assert pool.idle_count(server.url) == 0
    assert response.body == b"x" * 11


async def test_the_pool_never_opens_more_than_its_bound(serve) -> None:
    release = asyncio.Event()

    async def held(server: Server, index: int) -> bytes | None:
        if server.requests_count >= 2:
            release.set()
        await release.wait()
        return OK_ANSWER
    server = await serve(held)
    async with _pool(connections_max=2) as pool:
        outcomes = await asyncio.gather(*(drive_async(_flow(server.url), pool, LIMITS)
                                          for _ in range(8)))
    assert {o.kind for o in outcomes} == {Kind.OK}
    assert server.requests_count == 8
    assert server.open_count_max <= 2


async def test_waiting_past_the_bound_for_a_connection_is_a_fail_nothing_sent(serve) -> None:
    release = asyncio.Event()

    async def held(server: Server, index: int) -> bytes | None:
        await release.wait()
        return OK_ANSWER
    server = await serve(held)
    async with _pool(connections_max=1) as pool:
        first = asyncio.ensure_future(pool.request(
            HttpRequest(method="GET", url=server.url + "/"), body_bytes_max=100))
        for _ in range(POLLS_MAX):  # until the first request holds the one connection
            if server.requests_count:
                break
            await asyncio.sleep(0.001)
        loop = asyncio.get_running_loop()
        with pytest.raises(PoolConnectError):
            await pool.request(HttpRequest(method="GET", url=server.url + "/"),
                               body_bytes_max=100, deadline=loop.time() + 0.05)
        release.set()
        assert (await first).status_code == 200
    assert server.requests_count == 1


async def test_a_peer_that_answers_garbage_is_a_reset(serve) -> None:
    async def garbage(server: Server, index: int) -> bytes | None:
        return b"SSH-2.0-OpenSSH_9\r\n\r\n"
    server = await serve(garbage)
    async with _pool() as pool:
        with pytest.raises(PoolConnectionReset):
            await pool.request(HttpRequest(method="GET", url=server.url + "/"),
                               body_bytes_max=100)
        assert pool.idle_count(server.url) == 0


@pytest.mark.parametrize("url", ["http://127.0.0.1:0x50/", "http://127.0.0.1:99999/",
                                 "http://:80/", "http://[::1]:port/"])
async def test_an_origin_without_a_host_and_port_is_refused_unsent(url: str) -> None:
    async with _pool() as pool:
        with pytest.raises(InvalidRequest):
            await pool.request(HttpRequest(method="GET", url=url), body_bytes_max=100)
