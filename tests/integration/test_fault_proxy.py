"""The fault proxy over real loopback sockets: each toxic, disable, and every bound held.

Times are lower bounds only (a toxic delays at least so much); nothing asserts that
something was fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import AsyncIterator

import pytest

from harness.faults.proxy import FaultProxy, ProxyLimits, TooManyToxics
from harness.faults.toxics import Toxic

_READ_TIMEOUT_S = 10.0


@contextlib.asynccontextmanager
async def _server(handler: object) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)  # type: ignore[arg-type]
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def _proxy(upstream_port: int, limits: ProxyLimits | None = None
                 ) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(name="test", listen_host="127.0.0.1", listen_port=0,
                       upstream_host="127.0.0.1", upstream_port=upstream_port,
                       rng=random.Random(7), limits=limits)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


@pytest.fixture
async def echo_proxy() -> AsyncIterator[FaultProxy]:
    async with _server(_echo) as port, _proxy(port) as proxy:
        yield proxy


async def _connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.listen_port)


async def _roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     payload: bytes) -> tuple[bytes, float]:
    started = time.monotonic()
    writer.write(payload)
    await writer.drain()
    data = await asyncio.wait_for(reader.readexactly(len(payload)), _READ_TIMEOUT_S)
    return data, time.monotonic() - started


async def _read_to_end(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), _READ_TIMEOUT_S)


async def test_proxy_passes_bytes_both_ways(echo_proxy: FaultProxy) -> None:
    reader, writer = await _connect(echo_proxy)
    data, _ = await _roundtrip(reader, writer, b"x" * 100_000)
    assert data == b"x" * 100_000
    writer.close()


async def test_latency_delays_bytes_at_least_the_latency(echo_proxy: FaultProxy) -> None:
    echo_proxy.add_toxic(Toxic(name="lat", type="latency", attributes={"latency": 150}))
    reader, writer = await _connect(echo_proxy)
    data, elapsed_s = await _roundtrip(reader, writer, b"ping")
    assert data == b"ping"
    assert elapsed_s >= 0.15
    writer.close()


async def test_latency_acts_on_an_existing_connection_and_is_removed(
        echo_proxy: FaultProxy) -> None:
    reader, writer = await _connect(echo_proxy)
    await _roundtrip(reader, writer, b"before")
    echo_proxy.add_toxic(Toxic(name="lat", type="latency", stream="upstream",
                               attributes={"latency": 120, "jitter": 20}))
    _, elapsed_s = await _roundtrip(reader, writer, b"during")
    assert elapsed_s >= 0.1  # latency - jitter
    echo_proxy.remove_toxic("lat")
    data, _ = await _roundtrip(reader, writer, b"after")
    assert data == b"after"
    writer.close()


async def test_bandwidth_takes_at_least_size_over_rate(echo_proxy: FaultProxy) -> None:
    echo_proxy.add_toxic(Toxic(name="bw", type="bandwidth", attributes={"rate": 100}))
    reader, writer = await _connect(echo_proxy)
    data, elapsed_s = await _roundtrip(reader, writer, b"b" * 30_000)
    assert data == b"b" * 30_000
    assert elapsed_s >= 30_000 / (100 * 1000) * 0.99
    writer.close()


async def test_reset_peer_resets_the_connection(echo_proxy: FaultProxy) -> None:
    echo_proxy.add_toxic(Toxic(name="rst", type="reset_peer", attributes={"timeout": 50}))
    reader, writer = await _connect(echo_proxy)
    writer.write(b"hello")
    await writer.drain()
    with pytest.raises(ConnectionResetError):
        await _read_to_end(reader)
    writer.close()


async def test_limit_data_closes_after_n_bytes(echo_proxy: FaultProxy) -> None:
    echo_proxy.add_toxic(Toxic(name="lim", type="limit_data", attributes={"bytes": 10}))
    reader, writer = await _connect(echo_proxy)
    writer.write(b"0123456789abcdefghij")
    await writer.drain()
    assert await _read_to_end(reader) == b"0123456789"
    writer.close()


async def test_timeout_holds_data_then_closes(echo_proxy: FaultProxy) -> None:
    echo_proxy.add_toxic(Toxic(name="to", type="timeout", attributes={"timeout": 200}))
    started = time.monotonic()
    reader, writer = await _connect(echo_proxy)
    writer.write(b"held")
    await writer.drain()
    assert await _read_to_end(reader) == b""
    assert time.monotonic() - started >= 0.2
    writer.close()


async def test_timeout_zero_holds_until_removed(echo_proxy: FaultProxy) -> None:
    reader, writer = await _connect(echo_proxy)
    await _roundtrip(reader, writer, b"warm")
    echo_proxy.add_toxic(Toxic(name="to", type="timeout", attributes={"timeout": 0}))
    writer.write(b"dropped")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.3)
    echo_proxy.remove_toxic("to")
    data, _ = await _roundtrip(reader, writer, b"flows")
    assert data == b"flows"  # held data was dropped, as Toxiproxy drops it
    writer.close()


async def test_slow_close_passes_the_close_on_late() -> None:
    async def hello_and_close(reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")
        await writer.drain()
        writer.close()

    async with _server(hello_and_close) as port, _proxy(port) as proxy:
        proxy.add_toxic(Toxic(name="sc", type="slow_close", attributes={"delay": 200}))
        started = time.monotonic()
        reader, writer = await _connect(proxy)
        assert await _read_to_end(reader) == b"bye"
        assert time.monotonic() - started >= 0.2
        writer.close()


async def test_down_cuts_and_refuses_and_enabling_restores(echo_proxy: FaultProxy) -> None:
    reader, writer = await _connect(echo_proxy)
    await _roundtrip(reader, writer, b"up")
    await echo_proxy.set_enabled(False)
    assert await _read_to_end(reader) == b""
    assert echo_proxy.connection_count == 0
    with pytest.raises(ConnectionRefusedError):
        await _connect(echo_proxy)
    await echo_proxy.set_enabled(True)
    reader, writer2 = await _connect(echo_proxy)
    data, _ = await _roundtrip(reader, writer2, b"again")
    assert data == b"again"
    writer.close()
    writer2.close()


async def test_connections_past_the_bound_are_refused() -> None:
    limits = ProxyLimits(connections_max=2)
    async with _server(_echo) as port, _proxy(port, limits) as proxy:
        kept = [await _connect(proxy) for _ in range(2)]
        for reader, writer in kept:
            await _roundtrip(reader, writer, b"in")
        reader, writer = await _connect(proxy)
        with contextlib.suppress(ConnectionResetError):
            assert await _read_to_end(reader) == b""
        assert proxy.refused_count == 1
        assert proxy.connection_count == 2
        for _, w in [*kept, (reader, writer)]:
            w.close()


async def test_toxics_past_the_bound_are_refused(echo_proxy: FaultProxy) -> None:
    for index in range(echo_proxy.limits.toxics_max):
        echo_proxy.add_toxic(Toxic(name=f"t{index}", type="latency"))
    with pytest.raises(TooManyToxics):
        echo_proxy.add_toxic(Toxic(name="one-more", type="latency"))
    assert len(echo_proxy.toxics) == echo_proxy.limits.toxics_max


async def test_a_slow_reader_does_not_grow_the_proxy_buffer() -> None:
    """The upstream writes far more than the client reads: the proxy holds at most its
    bound per direction, and the upstream is stopped (backpressure), not buffered."""
    total_bytes = 64 * 1024 * 1024
    sent = [0]

    async def blast(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        block = b"z" * 65536
        with contextlib.suppress(OSError):
            while sent[0] < total_bytes:
                writer.write(block)
                await writer.drain()
                sent[0] += len(block)
        writer.close()

    limits = ProxyLimits(chunk_bytes_max=4096, buffer_bytes_max=32 * 1024)
    async with _server(blast) as port, _proxy(port, limits) as proxy:
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.setblocking(False)
        await asyncio.get_running_loop().sock_connect(client, ("127.0.0.1", proxy.listen_port))
        try:
            peak, last, still = 0, -1, 0
            for _ in range(400):  # until the upstream is stalled: 10 polls without progress
                await asyncio.sleep(0.02)
                peak = max(peak, proxy.buffered_bytes_max)
                still = still + 1 if sent[0] == last else 0
                last = sent[0]
                if still >= 10:
                    break
            assert still >= 10, f"the upstream was never stopped ({sent[0]} bytes sent)"
            assert sent[0] < total_bytes
            assert peak <= limits.buffer_bytes_max, peak
        finally:
            client.close()


async def test_close_leaves_no_port_task_or_connection() -> None:
    async with _server(_echo) as port:
        async with _proxy(port) as proxy:
            proxy.add_toxic(Toxic(name="to", type="timeout"))
            held = [await _connect(proxy) for _ in range(3)]
            for _, writer in held:
                writer.write(b"x")
            listen_port = proxy.listen_port
        assert proxy.connection_count == 0
        assert not proxy._tasks
        mine = [t for t in asyncio.all_tasks()
                if "_Connection" in repr(t.get_coro()) or "FaultProxy" in repr(t.get_coro())]
        assert mine == []
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", listen_port)
        for reader, writer in held:
            assert await _read_to_end(reader) == b""
            writer.close()
