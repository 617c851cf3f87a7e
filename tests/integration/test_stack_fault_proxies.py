"""The local stack with fault proxies on its three links, end to end.

The harness's requests go through the ``service`` proxy, the provider's webhooks through
``webhooks``, and the service's SQL through ``database``; each is shown by a fault on that
proxy changing what happens, and healing it restoring the stack. Times are lower bounds.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import httpx
import pytest

from harness.faults.toxics import Toxic
from harness.faults.toxiproxy import ToxiproxyClient
from harness.pg import create_service_database
from harness.stack import StackConfig
from tests.integration.stackapi import Api, StackThread

_WAIT_S = 30.0


def _port(url: str) -> int:
    return int(url.rstrip("/").rpartition(":")[2].split("/")[0])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _proxies(runner: StackThread, api_url: str, call: str, *args: Any) -> Any:
    async def go() -> Any:
        async with ToxiproxyClient(api_url, timeout_s=10) as client:
            return await getattr(client, call)(*args)
    return runner.call(go())


def test_local_stack_puts_a_fault_proxy_on_every_link(pg_admin_url: str) -> None:
    config = StackConfig(database_url=create_service_database(pg_admin_url),
                         fault_proxies=True)
    runner = StackThread(config)
    with runner as info:
        assert info.proxy_api_url is not None
        api_url = info.proxy_api_url
        proxy_pid = runner.stack._fault_proxy.pid
        proxies = _proxies(runner, api_url, "proxies")
        assert set(proxies) == {"service", "webhooks", "database"}
        assert info.service_url != info.direct_service_url
        assert _port(info.service_url) == proxies["service"].listen_port
        assert proxies["service"].upstream.endswith(f":{_port(info.direct_service_url)}")
        assert proxies["webhooks"].upstream == proxies["service"].upstream
        assert proxies["database"].upstream.endswith(
            f":{info.database_url.rpartition('@')[2].split(':')[1].split('/')[0]}")
        assert "proxy_api_url" in info.to_json()

        api = Api(info)
        try:
            _service_link(runner, api, api_url)
            _webhooks_link(runner, api, api_url)
            _database_link(runner, api, api_url)
        finally:
            api.close()
        ports = [p.listen_port for p in proxies.values()] + [_port(api_url)]
    with pytest.raises(ProcessLookupError):
        os.kill(proxy_pid, 0)
    assert [p for p in ports if _listening(p)] == []


def _service_link(runner: StackThread, api: Api, api_url: str) -> None:
    user = api.create_user()  # through the service proxy
    _proxies(runner, api_url, "set_enabled", "service", False)
    with pytest.raises(httpx.ConnectError):
        api.me(user)
    assert httpx.get(f"{api.info.direct_service_url}/healthz").status_code == 200
    _proxies(runner, api_url, "set_enabled", "service", True)
    assert api.balance(user) == 0


def _webhooks_link(runner: StackThread, api: Api, api_url: str) -> None:
    user = api.create_user()
    _proxies(runner, api_url, "set_enabled", "webhooks", False)
    response = api.purchase(user, 100)
    assert response.status_code == 201, response.text
    deadline = time.monotonic() + _WAIT_S
    while not any(d["status_code"] is None for d in api.deliveries()):
        assert time.monotonic() < deadline, "no delivery failed while the webhooks link was down"
        time.sleep(0.05)
    assert api.balance(user) == 0
    _proxies(runner, api_url, "set_enabled", "webhooks", True)
    api.settle()
    assert api.balance(user) == 100


def _database_link(runner: StackThread, api: Api, api_url: str) -> None:
    user = api.create_user()

    def me_direct_s() -> float:
        headers = {"Authorization": f"Bearer {user.token}"}
        started = time.monotonic()
        response = api.http.get(f"{api.info.direct_service_url}/v1/me", headers=headers)
        assert response.status_code == 200, response.text
        return time.monotonic() - started

    me_direct_s()
    toxic = Toxic(name="slow_db", type="latency", attributes={"latency": 250})
    _proxies(runner, api_url, "add_toxic", "database", toxic)
    try:
        assert me_direct_s() >= 0.25  # at least one SQL round trip, each delayed 250 ms
    finally:
        _proxies(runner, api_url, "remove_toxic", "database", "slow_db")
    me_direct_s()
