"""An asyncio TCP fault proxy: one listener, one upstream, Toxiproxy's toxics.

``FaultProxy`` accepts connections on ``listen`` and opens one upstream connection for
each; bytes flow through two directions, ``upstream`` (client to server) and
``downstream`` (server to client). Toxics (``harness.faults.toxics``) act on one direction
of every connection, new and existing, with Toxiproxy's semantics:

- ``latency``: each chunk leaves ``latency`` ms (+- a seeded ``jitter``) after it arrived;
  chunks are pipelined, so throughput is kept.
- ``bandwidth``: a chunk of n bytes takes n / ``rate`` ms (``rate`` in KB/s).
- ``slow_close``: the end of the stream is passed on ``delay`` ms late.
- ``timeout``: data is dropped, and the connection closed ``timeout`` ms after the toxic
  took effect on it (0: held until the toxic is removed).
- ``reset_peer``: data is dropped; ``timeout`` ms after the first chunk both sockets are
  reset (RST, ``SO_LINGER`` 0).
- ``limit_data``: the connection is closed once ``bytes`` bytes have passed.

Disabled (``enabled = False``, the ``down`` fault), the proxy closes every connection and
*stops listening*, as Toxiproxy does: a client gets an immediate "connection refused",
which it can tell apart from a timeout and which proves nothing was sent. Enabled again, it
listens on the same port.

Everything it holds is bounded (``ProxyLimits``): connections (past the bound one is
accepted and reset at once), bytes held per direction (a bounded queue between reader and
writer, and a bounded write buffer: a slow reader stops our reads, never grows memory),
toxics, and the chunk size. ``close()`` leaves no task, socket or port behind.

This module knows nothing of HTTP; ``proxy_server`` puts an API on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from harness.faults.toxics import Toxic, latency_delay_ms

__all__ = ["DuplicateToxic", "FaultProxy", "ProxyLimits", "ProxyRefusal", "TooManyToxics",
           "UnknownToxic"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyLimits:
    """Bounds of one proxy. ``buffer_bytes_max`` bounds, per direction of a connection,
    every byte the proxy holds: read and not yet written, plus its socket write buffer."""

    connections_max: int = 256
    buffer_bytes_max: int = 256 * 1024
    chunk_bytes_max: int = 16 * 1024
    toxics_max: int = 16
    connect_timeout_s: float = 5.0
    close_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        assert self.connections_max >= 1
        assert self.chunk_bytes_max >= 1
        assert self.toxics_max >= 1
        # The queue holds (buffer / chunk - 4) chunks; the other four are the reader's and
        # the writer's chunk in hand and the write buffer's high mark plus one write.
        assert self.buffer_bytes_max >= 5 * self.chunk_bytes_max
        assert self.connect_timeout_s > 0
        assert self.close_timeout_s > 0

    @property
    def queue_chunks_max(self) -> int:
        return self.buffer_bytes_max // self.chunk_bytes_max - 4


class ProxyRefusal(Exception):
    """A toxic change the proxy refuses; the message says why."""


class DuplicateToxic(ProxyRefusal):
    pass


class UnknownToxic(ProxyRefusal):
    pass


class TooManyToxics(ProxyRefusal):
    pass


class FaultProxy:
    """One listener forwarding to one upstream, with toxics. ``await start()`` first."""

    def __init__(self, *, name: str, listen_host: str, listen_port: int, upstream_host: str,
                 upstream_port: int, rng: random.Random,
                 limits: ProxyLimits | None = None) -> None:
        self.name = name
        self.limits = limits or ProxyLimits()
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self._listen_host = listen_host
        self._listen_port = listen_port
        self._rng = rng
        self._toxics: dict[str, Toxic] = {}
        self._changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.refused_count = 0
        self.accepted_count = 0

    # -- state ---------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self._server is not None

    @property
    def listen(self) -> str:
        return _join(self._listen_host, self._listen_port)

    @property
    def listen_port(self) -> int:
        return self._listen_port

    @property
    def upstream(self) -> str:
        return _join(self.upstream_host, self.upstream_port)

    @property
    def toxics(self) -> tuple[Toxic, ...]:
        return tuple(self._toxics.values())

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def buffered_bytes_max(self) -> int:
        """The most bytes held by any one direction of any connection, right now."""
        return max((c.buffered_bytes_max for c in self._connections), default=0)

    def to_json(self) -> dict[str, object]:
        """Toxiproxy's proxy object."""
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream,
                "enabled": self.enabled, "toxics": [t.to_json() for t in self.toxics]}

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Listen (port 0 picks a free one, kept across disable and enable). Idempotent.

        Raises:
            OSError: the port cannot be bound.
        """
        if self._server is not None:
            return
        family = socket.AF_INET6 if ":" in self._listen_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._listen_host, self._listen_port))
            self._server = await asyncio.start_server(
                self._accept, sock=sock, limit=self.limits.chunk_bytes_max,
                backlog=min(self.limits.connections_max, 1024))
        except BaseException:
            sock.close()
            raise
        self._listen_port = int(sock.getsockname()[1])

    async def set_enabled(self, enabled: bool) -> None:
        """Enable (listen again) or disable (stop listening and cut every connection)."""
        if enabled:
            await self.start()
            return
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self._cut_all()
        if server is not None:
            await server.wait_closed()

    async def close(self) -> None:
        """Stop listening, cut every connection and wait for its tasks. Idempotent."""
        await self.set_enabled(False)
        self._toxics.clear()
        self._signal_change()

    # -- toxics --------------------------------------------------------------------------

    def add_toxic(self, toxic: Toxic) -> None:
        """Add a toxic; it acts on existing connections at once.

        Raises:
            DuplicateToxic: one with that name exists.
            TooManyToxics: the proxy already has ``toxics_max``.
        """
        if toxic.name in self._toxics:
            raise DuplicateToxic(f"toxic already exists: {toxic.name}")
        if len(self._toxics) >= self.limits.toxics_max:
            raise TooManyToxics(f"proxy {self.name} already has {self.limits.toxics_max} "
                                "toxics, the most it takes; remove one first")
        self._toxics[toxic.name] = toxic
        self._signal_change()

    def update_toxic(self, toxic: Toxic) -> None:
        """Replace the toxic of that name (its attributes or toxicity).

        Raises:
            UnknownToxic: there is none of that name.
        """
        if toxic.name not in self._toxics:
            raise UnknownToxic(f"toxic not found: {toxic.name}")
        self._toxics[toxic.name] = toxic
        self._signal_change()

    def remove_toxic(self, name: str) -> None:
        """Remove a toxic; held data flows again at once.

        Raises:
            UnknownToxic: there is none of that name.
        """
        if self._toxics.pop(name, None) is None:
            raise UnknownToxic(f"toxic not found: {name}")
        self._signal_change()

    def remove_all_toxics(self) -> None:
        self._toxics.clear()
        self._signal_change()

    # -- internals -----------------------------------------------------------------------

    def _signal_change(self) -> None:
        # A fresh event per change: every waiter on the old one wakes, none misses it.
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    async def _cut_all(self) -> None:
        for connection in list(self._connections):
            connection.cut(reset=False)
        tasks = set(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.limits.close_timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def _accept(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._server is None or len(self._connections) >= self.limits.connections_max:
            self.refused_count += 1
            _reset(writer)
            return
        self.accepted_count += 1
        connection = _Connection(self, reader, writer)
        self._connections.add(connection)
        self._tasks.add(task)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)
            self._tasks.discard(task)


@dataclass(slots=True)
class _ToxicState:
    """One toxic as one connection sees it."""

    toxic: Toxic
    selected: bool  # drawn once against toxicity
    activated_s: float  # monotonic, when it took effect on this connection
    passed_bytes: int = 0  # limit_data
    reset_at_s: float | None = None  # reset_peer, armed by the first chunk


@dataclass(slots=True)
class _Direction:
    stream: str  # "upstream" or "downstream"
    source: asyncio.StreamReader
    sink: asyncio.StreamWriter
    queue: asyncio.Queue[tuple[float, bytes] | None]
    held_bytes: int = 0  # read and not yet handed to the sink's transport
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def buffered_bytes(self) -> int:
        return self.held_bytes + self.sink.transport.get_write_buffer_size()


class _Connection:
    """One client connection and its upstream connection."""

    def __init__(self, proxy: FaultProxy, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self._proxy = proxy
        self._client_reader = reader
        self._client_writer = writer
        self._upstream_writer: asyncio.StreamWriter | None = None
        self._states: dict[str, _ToxicState] = {}
        self._directions: list[_Direction] = []
        self._done = asyncio.Event()
        self._reset = False

    @property
    def buffered_bytes_max(self) -> int:
        return max((d.buffered_bytes for d in self._directions), default=0)

    def cut(self, *, reset: bool) -> None:
        self._reset = self._reset or reset
        self._done.set()

    async def run(self) -> None:
        limits = self._proxy.limits
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self._proxy.upstream_host, self._proxy.upstream_port,
                                        limit=limits.chunk_bytes_max),
                timeout=limits.connect_timeout_s)
        except (OSError, TimeoutError):
            _reset(self._client_writer)  # as Toxiproxy: no upstream, no connection
            return
        self._upstream_writer = up_writer
        for writer in (self._client_writer, up_writer):
            writer.transport.set_write_buffer_limits(high=limits.chunk_bytes_max)
        self._directions = [
            _Direction("upstream", self._client_reader, up_writer,
                       asyncio.Queue(limits.queue_chunks_max)),
            _Direction("downstream", up_reader, self._client_writer,
                       asyncio.Queue(limits.queue_chunks_max))]
        tasks = [asyncio.create_task(self._supervise())]
        for d in self._directions:
            d.tasks = [asyncio.create_task(self._read(d)), asyncio.create_task(self._write(d))]
            tasks.extend(d.tasks)
        try:
            await self._done.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._close_sockets()

    async def _close_sockets(self) -> None:
        writers = [self._client_writer]
        if self._upstream_writer is not None:
            writers.append(self._upstream_writer)
        for writer in writers:
            if self._reset:
                _reset(writer)
            else:
                writer.close()
        for writer in writers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(),
                                       timeout=self._proxy.limits.close_timeout_s)

    # -- toxics as this connection sees them --------------------------------------------

    def _active(self, stream: str) -> Iterator[_ToxicState]:
        """The selected toxics on a stream, in the order they were added."""
        self._sync()
        for state in self._states.values():
            if state.selected and state.toxic.stream == stream:
                yield state

    def _sync(self) -> None:
        current = self._proxy._toxics
        for name in list(self._states):
            if name not in current:
                del self._states[name]
        for name, toxic in current.items():
            state = self._states.get(name)
            if state is None:
                selected = self._proxy._rng.random() < toxic.toxicity
                self._states[name] = _ToxicState(toxic, selected, time.monotonic())
            elif state.toxic is not toxic:
                state.toxic = toxic

    async def _until(self, deadline_s: float | None) -> bool:
        """Wait until the deadline (None: forever) or a toxic change; True at the deadline."""
        changed = self._proxy._changed
        timeout = None if deadline_s is None else max(0.0, deadline_s - time.monotonic())
        if timeout == 0.0:
            return True
        try:
            await asyncio.wait_for(changed.wait(), timeout=timeout)
        except TimeoutError:
            return True
        return False

    async def _supervise(self) -> None:
        """Close on a timeout toxic's deadline, reset on a reset_peer's."""
        while not self._done.is_set():
            deadline, reset = None, False
            for stream in ("upstream", "downstream"):
                for state in self._active(stream):
                    at, is_reset = _deadline(state)
                    if at is not None and (deadline is None or at < deadline):
                        deadline, reset = at, is_reset
            if await self._until(deadline):
                self.cut(reset=reset)
                return

    # -- the two directions -------------------------------------------------------------

    async def _read(self, d: _Direction) -> None:
        try:
            while True:
                data = await d.source.read(self._proxy.limits.chunk_bytes_max)
                if not data:
                    break
                d.held_bytes += len(data)
                await d.queue.put((time.monotonic(), data))
        except OSError:
            pass
        await d.queue.put(None)

    async def _write(self, d: _Direction) -> None:
        try:
            while True:
                item = await d.queue.get()
                if item is None:
                    await self._slow_close(d.stream)
                    break
                arrived_s, data = item
                out = await self._through_toxics(d.stream, arrived_s, data)
                d.held_bytes -= len(data)
                if out is None:
                    break
                if out:
                    d.sink.write(out)
                    await d.sink.drain()
        except OSError:
            pass
        self.cut(reset=False)

    async def _through_toxics(self, stream: str, arrived_s: float,
                              data: bytes) -> bytes | None:
        """The bytes to pass on after the toxics of ``stream``; None ends the connection."""
        for state in list(self._active(stream)):
            toxic = state.toxic
            if toxic.type == "latency":
                delay_ms = latency_delay_ms(toxic, self._proxy._rng)
                await self._hold(state, arrived_s + delay_ms / 1000)
            elif toxic.type == "bandwidth" and toxic.attribute("rate") > 0:
                await self._hold(state, time.monotonic()
                                 + len(data) / (toxic.attribute("rate") * 1000))
            elif toxic.type in ("timeout", "reset_peer"):
                if toxic.type == "reset_peer" and state.reset_at_s is None:
                    state.reset_at_s = time.monotonic() + toxic.attribute("timeout") / 1000
                    self._proxy._signal_change()  # the supervisor arms the reset
                return b""  # dropped, as Toxiproxy drops it
            elif toxic.type == "limit_data":
                remaining = toxic.attribute("bytes") - state.passed_bytes
                data = data[:max(0, remaining)]
                state.passed_bytes += len(data)
                if state.passed_bytes >= toxic.attribute("bytes"):
                    if data:
                        await self._last(stream, data)
                    return None
        return data

    async def _last(self, stream: str, data: bytes) -> None:
        """Write the last bytes limit_data lets through, then end the connection."""
        for d in self._directions:
            if d.stream == stream:
                d.sink.write(data)
                await d.sink.drain()
        return None

    async def _hold(self, state: _ToxicState, deadline_s: float) -> None:
        """Hold a chunk until the deadline, or until the toxic is removed."""
        while not await self._until(deadline_s):
            self._sync()
            if self._states.get(state.toxic.name) is not state:
                return

    async def _slow_close(self, stream: str) -> None:
        delays = [s.toxic.attribute("delay") for s in self._active(stream)
                  if s.toxic.type == "slow_close"]
        if delays:
            await self._until(time.monotonic() + max(delays) / 1000)


def _deadline(state: _ToxicState) -> tuple[float | None, bool]:
    """When a toxic ends the connection on its own, and whether by reset."""
    toxic = state.toxic
    if toxic.type == "timeout" and toxic.attribute("timeout") > 0:
        return state.activated_s + toxic.attribute("timeout") / 1000, False
    if toxic.type == "reset_peer":
        return state.reset_at_s, True
    return None, False


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST: SO_LINGER on, 0 s, then close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
