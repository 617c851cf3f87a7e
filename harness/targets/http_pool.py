"""The ops' HTTP/1.1 client: a bounded pool of keep-alive connections over asyncio.Protocol.

Why our own: aiohttp spends about 140 us of CPU per request in its client machinery; a
request here is one write of bytes built by ``http_wire``, one httptools parse of the
answer and one timer, about a quarter of that. It carries bytes and never judges them.

Per origin (scheme, host, port) the pool keeps at most ``connections_max`` connections,
the idle ones on a free list (a stack: taking and returning one is O(1) whatever the pool
size), and a FIFO of requests waiting for one. An idle connection is kept ``keepalive_s``
at most, below the few seconds after which servers close idle keep-alive connections.

Errors are this module's, one class per meaning (``OUTCOME_BY_EXCEPTION`` in
``http_async`` maps them):

    PoolError
    ├── PoolConnectError     nothing was sent: connecting failed or timed out, or no
    │                        connection came free in time                -> FAIL connect_error
    ├── PoolReadTimeout      sent, no complete answer in time            -> INFO read_timeout
    └── PoolConnectionReset  sent, the connection ended or the answer was malformed
                                                                         -> INFO connection_reset

An idle connection the server closed is a classic race. A request is moved to another
connection only when its first one was already known closed (its peer's FIN, reset or
stray bytes seen while it sat idle) before a byte of the request was written on it; once
a byte was written, whatever happens is the request's outcome, never a resend.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from types import TracebackType
from typing import cast

from harness.protocol import HttpRequest, HttpResponse
from harness.targets.http_wire import (
    InvalidRequest,
    MalformedResponse,
    ResponseReader,
    encode_request,
    split_url,
)

__all__ = ["ORIGINS_MAX", "HttpPool", "PoolConnectError", "PoolConnectionReset", "PoolError",
           "PoolReadTimeout"]

ORIGINS_MAX = 16  # distinct origins one pool talks to: the ops reach a target and a provider


class PoolError(Exception):
    """A request over the pool failed; the subclass says whether anything was sent."""


class PoolConnectError(PoolError):
    """Nothing was sent: connecting failed or timed out, or no connection came free."""


class PoolReadTimeout(PoolError):
    """The request was sent and no complete answer came within the bound."""


class PoolConnectionReset(PoolError):
    """The request was sent, then the connection ended or the answer was not HTTP/1.1."""


class HttpPool:
    """Keep-alive HTTP/1.1 connections, at most ``connections_max`` per origin.

    Use it as an async context manager, inside a running event loop; ``aclose`` closes
    every connection.
    """

    def __init__(self, *, connections_max: int, connect_timeout_s: float,
                 read_timeout_s: float, keepalive_s: float,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        assert connections_max >= 1
        assert 0 < connect_timeout_s <= read_timeout_s
        assert keepalive_s > 0
        self.connections_max = connections_max
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.keepalive_s = keepalive_s
        self._ssl_context = ssl_context
        self._origins: dict[str, _Origin] = {}
        self._closed = False

    async def __aenter__(self) -> HttpPool:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection; requests after this raise ``PoolConnectError``."""
        self._closed = True
        for origin in self._origins.values():
            for connection in origin.idle:
                connection.abort()
            origin.idle.clear()
            for waiter in origin.waiters:
                if not waiter.done():
                    waiter.set_exception(PoolConnectError("the pool was closed"))
            origin.waiters.clear()

    def idle_count(self, url: str) -> int:
        """Idle connections kept for the origin of ``url``, for tests and figures."""
        origin = self._origins.get(split_url(url)[0])
        return 0 if origin is None else len(origin.idle)

    async def request(self, request: HttpRequest, *, body_bytes_max: int,
                      deadline: float | None = None) -> HttpResponse:
        """Send ``request``; its answer, the body cut just past ``body_bytes_max``.

        Args:
            deadline: the event loop's time by which the answer must be complete (the
                op's bound), if sooner than ``read_timeout_s`` from each request's write.

        Raises:
            PoolConnectError, PoolReadTimeout, PoolConnectionReset: see the module.
            InvalidRequest: the request cannot be written; nothing was sent.
        """
        origin_url, target = split_url(request.url)
        origin = self._origin(origin_url)
        data = encode_request(request, host=origin.host_header, target=target)
        loop = asyncio.get_running_loop()
        now = loop.time()
        read_deadline = now + self.read_timeout_s
        if deadline is not None and deadline < read_deadline:
            read_deadline = deadline
        connection = await self._acquire(origin, loop, now=now, deadline=read_deadline)
        try:
            response = await connection.exchange(data, body_bytes_max, loop,
                                                 deadline=read_deadline)
        except BaseException:
            connection.abort()
            self._release(origin, None, now=now)
            raise
        if connection.keep_alive:
            self._release(origin, connection, now=loop.time())
        else:
            connection.abort()  # Connection: close, a body cut at the bound, or ended by EOF
            self._release(origin, None, now=now)
        return response

    # -- the free list -------------------------------------------------------------------

    def _origin(self, origin_url: str) -> _Origin:
        origin = self._origins.get(origin_url)
        if origin is None:
            if self._closed:
                raise PoolConnectError("the pool was closed")
            if len(self._origins) >= ORIGINS_MAX:
                raise PoolConnectError(f"more than ORIGINS_MAX = {ORIGINS_MAX} origins")
            origin = self._origins[origin_url] = _Origin(origin_url, self._ssl_context)
        return origin

    async def _acquire(self, origin: _Origin, loop: asyncio.AbstractEventLoop, *,
                       now: float, deadline: float) -> _Connection:
        """An idle live connection, else a new one, else the next one released."""
        if self._closed:
            raise PoolConnectError("the pool was closed")
        idle = origin.idle
        while idle:  # bounded: each pass drops one connection from the free list
            connection = idle.pop()
            if connection.usable(now - self.keepalive_s):
                return connection
            connection.abort()  # closed while idle, or kept too long: nothing was sent
            origin.open_count -= 1
        if origin.open_count >= self.connections_max:
            waiter: asyncio.Future[_Connection | None] = loop.create_future()
            origin.waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    handed = await waiter
            except BaseException as exc:
                # Handed one just as the bound hit (or the task was cancelled): pass it on.
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._pass_on(origin, waiter.result(), now=now)
                waiter.cancel()
                if isinstance(exc, TimeoutError):
                    raise PoolConnectError(f"no connection of {self.connections_max} came "
                                           "free in time") from None
                raise
            if handed is not None:
                return handed
        origin.open_count += 1  # a waiter woken with None inherits a closed one's slot
        try:
            return await self._connect(origin, loop, deadline=deadline)
        except BaseException:
            self._release(origin, None, now=now)
            raise

    def _release(self, origin: _Origin, connection: _Connection | None, *,
                 now: float) -> None:
        """Give back a connection (None: it was closed, and its slot is free)."""
        if connection is None:
            origin.open_count -= 1
        elif self._closed:
            connection.abort()
            origin.open_count -= 1
            return
        waiters = origin.waiters
        while waiters:  # bounded: each pass drops one waiter
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)  # None: the waiter connects in the free slot
                return
        if connection is not None:
            connection.idle_since = now
            origin.idle.append(connection)

    def _pass_on(self, origin: _Origin, handed: _Connection | None, *, now: float) -> None:
        """A waiter that cannot use what it was handed gives it to the next one."""
        if handed is None:
            origin.open_count += 1  # the slot it was given, freed again below
        self._release(origin, handed, now=now)

    async def _connect(self, origin: _Origin, loop: asyncio.AbstractEventLoop, *,
                       deadline: float) -> _Connection:
        connect_deadline = min(loop.time() + self.connect_timeout_s, deadline)
        try:
            async with asyncio.timeout_at(connect_deadline):
                _, connection = await loop.create_connection(
                    _Connection, origin.host, origin.port, ssl=origin.ssl,
                    server_hostname=origin.host if origin.ssl is not None else None)
        except TimeoutError:
            raise PoolConnectError(f"connecting to {origin.url} timed out") from None
        except OSError as exc:
            raise PoolConnectError(f"connecting to {origin.url}: {exc}") from exc
        return connection


class _Origin:
    """One scheme, host and port: its free list, its waiters, its open connections."""

    __slots__ = ("host", "host_header", "idle", "open_count", "port", "ssl", "url", "waiters")

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None) -> None:
        scheme, _, authority = url.partition("://")
        secure = scheme.lower() == "https"
        host, number = authority, ""
        if authority.startswith("["):  # an IPv6 literal
            host, _, rest = authority[1:].partition("]")
            number = rest[1:] if rest.startswith(":") else ""
        elif ":" in authority:
            host, _, number = authority.rpartition(":")
        if (number and not (number.isdigit() and 0 < int(number) < 65536)) or not host:
            raise InvalidRequest(f"no host and port in {url[:200]!r}")
        port = int(number) if number else 443 if secure else 80
        self.url = url
        self.host = host
        self.port = port
        self.host_header = authority
        self.ssl = (ssl_context or ssl.create_default_context()) if secure else None
        self.idle: list[_Connection] = []
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self.open_count = 0


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request on it at a time."""

    __slots__ = ("_reader", "_reading", "_transport", "_waiter", "closed", "idle_since")

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._reader: ResponseReader | None = None  # one parser for every answer
        self._reading = False  # a request is out and its answer not complete
        self._waiter: asyncio.Future[HttpResponse] | None = None
        self.closed = False
        self.idle_since = 0.0

    @property
    def keep_alive(self) -> bool:
        """The last answer leaves the connection fit for another request."""
        return self._reader is not None and self._reader.keep_alive and not self.closed

    def usable(self, fresh_since: float) -> bool:
        """Known open, and idle since no earlier than ``fresh_since``."""
        return (not self.closed and self._transport is not None
                and not self._transport.is_closing() and self.idle_since >= fresh_since)

    async def exchange(self, data: bytes, body_bytes_max: int,
                       loop: asyncio.AbstractEventLoop, *, deadline: float) -> HttpResponse:
        """Write one request, await its answer; one timer bounds the whole exchange."""
        assert self._transport is not None
        assert not self._reading
        if self._reader is None:
            self._reader = ResponseReader(body_bytes_max=body_bytes_max)
        else:
            self._reader.expect_next(body_bytes_max=body_bytes_max)
        waiter: asyncio.Future[HttpResponse] = loop.create_future()
        self._waiter, self._reading = waiter, True
        timer = loop.call_at(deadline, self._fail, PoolReadTimeout, "no complete answer in time")
        try:
            self._transport.write(data)
            return await waiter
        finally:
            timer.cancel()
            self._waiter, self._reading = None, False

    def abort(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are no asyncio.Transport subclasses, and have its methods.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        if reader is None or not self._reading:  # bytes nobody asked for: not to be trusted
            self.abort()
            return
        try:
            done = reader.feed(data)
        except MalformedResponse as exc:
            self._fail(PoolConnectionReset, str(exc))
            return
        if done:
            self._answer(reader)

    def eof_received(self) -> bool:
        self.closed = True
        reader = self._reader
        if reader is not None and self._reading:
            if reader.feed_eof():
                self._answer(reader)
            else:
                self._fail(PoolConnectionReset, "the peer closed before a complete answer")
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(PoolConnectionReset, f"the connection was lost: {exc or 'closed'}")

    def _answer(self, reader: ResponseReader) -> None:
        self._reading = False  # any byte from here on is one nobody asked for
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(reader.response())

    def _fail(self, error: type[PoolError], message: str) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error(message))
