"""Integration fixtures: the real local stack, one per test module.

A fresh database on this worker's PostgreSQL, owned by a fresh role that is no superuser
(as the local stack gives the service), the provider simulator, and the reference
service as a child process, all on free loopback ports. After every test, the audit must
show zero drift and ``minted − clawed == balances − debts``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from harness.pg import create_service_database
from harness.stack import StackConfig
from tests.integration.stackapi import Api, StackThread


@pytest.fixture(scope="module")
def stack_thread(pg_admin_url: str) -> Iterator[StackThread]:
    config = StackConfig(database_url=create_service_database(pg_admin_url))
    runner = StackThread(config)
    with runner:
        yield runner


@pytest.fixture(scope="module")
def module_api(stack_thread: StackThread) -> Iterator[Api]:
    assert stack_thread.stack.info is not None
    api = Api(stack_thread.stack.info)
    yield api
    api.close()


@pytest.fixture
def api(module_api: Api) -> Iterator[Api]:
    """The API; after the test, the audit must show zero drift and conserved totals."""
    module_api.set_policy()  # the default: each event once, retried until acknowledged
    yield module_api
    module_api.settle()
    module_api.set_policy()
    totals = module_api.totals()
    assert totals["drift_accounts"] == 0, totals
    assert totals["minted"] - totals["clawed_back"] == totals["balances"] - totals["debts"], \
        totals


Answer = Callable[[str], tuple[int, object]]  # the request's head -> status, JSON body


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Answer], Awaitable[str]]]:
    """A loopback HTTP server answering each request as ``answer`` says; yields its URL."""
    servers: list[asyncio.Server] = []

    async def start(answer: Answer) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = (await reader.readuntil(b"\r\n\r\n")).decode()
                    status, body = answer(head)
                    data = json.dumps(body).encode()
                    writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nContent-Type: "
                                 b"application/json\r\n\r\n%s" % (status, len(data), data))
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()
