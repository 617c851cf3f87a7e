"""The fault proxy's Toxiproxy-shaped HTTP API, our client against it, and its process.

The client and link nemesis tests also run against a real Toxiproxy when
``toxiproxy-server`` is on the PATH (Debian does not package it), and are skipped, saying
so, when it is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from harness.errors import FaultError
from harness.faults.links import LinkNemesis
from harness.faults.proxy_process import ProxyProcess
from harness.faults.proxy_server import ProxyRegistry, create_app
from harness.faults.spec import Fault, FaultKind, Link
from harness.faults.toxics import Toxic
from harness.faults.toxiproxy import ToxiproxyClient
from harness.pg import free_port
from harness.provider.server import serve_asgi


@pytest.fixture
async def api_url() -> AsyncIterator[str]:
    running = await serve_asgi(create_app(ProxyRegistry(seed=3)))
    try:
        yield running.url
    finally:
        await running.stop()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


async def _echo_through(port: int, payload: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), 10)
    finally:
        writer.close()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- bad input: 4xx JSON, nothing changed --------------------------------------------------

async def test_bad_input_is_4xx_json_and_changes_nothing(api_url: str, echo_port: int) -> None:
    async with httpx.AsyncClient(base_url=api_url) as http:
        created = await http.post("/proxies", json={
            "name": "p", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{echo_port}"})
        assert created.status_code == 201
        before = (await http.get("/proxies")).json()
        cases = [
            ("GET", "/proxies/nope", None, None, 404),
            ("POST", "/proxies/nope/toxics", None, {"type": "latency"}, 404),
            ("POST", "/proxies/p/toxics", None, {"type": "slicer"}, 400),
            ("POST", "/proxies/p/toxics", None,
             {"type": "latency", "attributes": {"latency": "slow"}}, 400),
            ("POST", "/proxies/p/toxics", b"{not json", None, 400),
            ("POST", "/proxies", b"[1, 2]", None, 400),
            ("POST", "/proxies", None, {"name": "q"}, 400),
            ("POST", "/proxies", None, {"name": "q", "upstream": "no-port"}, 400),
            ("POST", "/proxies", None, {"name": "p", "upstream": "127.0.0.1:1"}, 409),
            ("POST", "/proxies/p", None, {"enabled": "yes"}, 400),
            ("DELETE", "/proxies/p/toxics/nope", None, None, 404),
            ("GET", "/nowhere", None, None, 404),
            ("PUT", "/proxies", None, {}, 405),
        ]
        for method, path, content, body, status in cases:
            response = await http.request(method, path, content=content, json=body)
            assert response.status_code == status, (method, path, response.text)
            error = response.json()
            assert error["status"] == status
            assert isinstance(error["error"], str)
            assert "Traceback" not in response.text
        assert (await http.get("/proxies")).json() == before


# -- the client against our server -------------------------------------------------------

async def _client_round_trip(api_url: str, upstream_port: int, name: str) -> None:
    async with ToxiproxyClient(api_url, timeout_s=10) as client:
        assert await client.version()
        upstream = f"127.0.0.1:{upstream_port}"
        proxy = await client.create_proxy(name, listen="127.0.0.1:0", upstream=upstream)
        again = await client.create_proxy(name, listen="127.0.0.1:0", upstream=upstream)
        assert again.listen == proxy.listen
        assert proxy.enabled
        assert await _echo_through(proxy.listen_port) == b"ping"
        toxic = Toxic(name="lat", type="latency", attributes={"latency": 10})
        await client.add_toxic(name, toxic)
        await client.add_toxic(name, Toxic(name="lat", type="latency",
                                           attributes={"latency": 20}))
        (seen,) = await client.toxics(name)
        assert seen.attributes["latency"] == 20
        assert (await client.proxies())[name].toxics == (seen,)
        await client.set_enabled(name, False)
        assert not (await client.proxy(name)).enabled
        with pytest.raises(OSError):
            await _echo_through(proxy.listen_port)
        await client.set_enabled(name, True)
        assert await _echo_through(proxy.listen_port) == b"ping"
        await client.remove_toxic(name, "lat")
        await client.remove_toxic(name, "lat")  # a retried heal is fine
        await client.add_toxic(name, toxic)
        await client.set_enabled(name, False)
        await client.reset()
        after = await client.proxy(name)
        assert after.enabled
        assert after.toxics == ()
        with pytest.raises(FaultError, match="forwarding to"):
            await client.create_proxy(name, listen="127.0.0.1:0", upstream="127.0.0.1:1")
        with pytest.raises(FaultError, match="proxy not found"):
            await client.set_enabled("nope", True)
        await client.delete_proxy(name)
        assert name not in await client.proxies()


async def test_client_round_trips_against_our_server(api_url: str, echo_port: int) -> None:
    await _client_round_trip(api_url, echo_port, "roundtrip")


async def test_client_unreachable_api_is_a_fault_error() -> None:
    async with ToxiproxyClient(f"http://127.0.0.1:{free_port()}", timeout_s=5) as client:
        with pytest.raises(FaultError, match="cannot reach the fault proxy API"):
            await client.reset()


async def test_link_nemesis_injects_and_heals_through_our_server(
        api_url: str, echo_port: int) -> None:
    await _nemesis_round_trip(api_url, echo_port)


async def _nemesis_round_trip(api_url: str, echo_port: int) -> None:
    async with ToxiproxyClient(api_url, timeout_s=10) as client:
        proxy = await client.create_proxy("database", listen="127.0.0.1:0",
                                          upstream=f"127.0.0.1:{echo_port}")
        nemesis = LinkNemesis(client, {Link.DATABASE: "database"})
        latency = Fault(kind=FaultKind.LATENCY, link=Link.DATABASE,
                        attributes={"latency": 100})
        await nemesis.inject(latency)
        assert [t.name for t in await client.toxics("database")] == ["latency_downstream"]
        await nemesis.heal(latency)
        assert await client.toxics("database") == ()
        await nemesis.inject(Fault(kind=FaultKind.DOWN, link=Link.DATABASE))
        assert not _listening(proxy.listen_port)
        await nemesis.inject(latency)
        await nemesis.heal_all()
        assert await client.toxics("database") == ()
        assert await _echo_through(proxy.listen_port) == b"ping"
        await client.delete_proxy("database")


# -- the child process ---------------------------------------------------------------------

async def test_proxy_process_leaves_no_process_or_port(echo_port: int) -> None:
    process = ProxyProcess(seed=1)
    async with process as api_url:
        pid = process.pid
        assert pid is not None
        async with ToxiproxyClient(api_url, timeout_s=10) as client:
            proxy = await client.create_proxy("p", listen="127.0.0.1:0",
                                              upstream=f"127.0.0.1:{echo_port}")
        assert await _echo_through(proxy.listen_port) == b"ping"
        api_port = int(api_url.rpartition(":")[2])
    assert process.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not _listening(proxy.listen_port)
    assert not _listening(api_port)


# -- a real Toxiproxy, where installed -----------------------------------------------------

@contextlib.contextmanager
def _real_toxiproxy() -> Iterator[str]:
    binary = shutil.which("toxiproxy-server")
    if binary is None:
        pytest.skip("toxiproxy-server is not on the PATH (Debian does not package it; "
                    "install a release from github.com/Shopify/toxiproxy/releases)")
    port = free_port()
    process = subprocess.Popen([binary, "-host", "127.0.0.1", "-port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if _listening(port):
                break
            if process.poll() is not None:
                pytest.fail(f"toxiproxy-server exited with {process.returncode}")
            time.sleep(0.05)  # polling for the server to listen
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def toxiproxy_url() -> Iterator[str]:
    with _real_toxiproxy() as url:
        yield url


async def test_client_round_trips_against_a_real_toxiproxy(toxiproxy_url: str,
                                                           echo_port: int) -> None:
    await _client_round_trip(toxiproxy_url, echo_port, "tokenchaos_roundtrip")


async def test_link_nemesis_drives_a_real_toxiproxy(toxiproxy_url: str,
                                                    echo_port: int) -> None:
    await _nemesis_round_trip(toxiproxy_url, echo_port)
