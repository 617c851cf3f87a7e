"""Serving the provider: stand-alone as ``python -m harness.provider``, and in-process."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys

import httpx
import pytest

from harness.errors import ProviderError
from harness.pg import free_port
from harness.provider.server import ProviderConfig, serve_provider

pytestmark = pytest.mark.integration

_STARTUP_TIMEOUT_S = 30.0
_EXIT_TIMEOUT_S = 15.0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_module_entry_prints_one_json_line_serves_and_exits_cleanly_on_signal(
        signum: signal.Signals) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.provider", "--port", str(port),
         "--webhook-secret", "whsec_entry"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], _STARTUP_TIMEOUT_S)
        assert ready, "the provider printed nothing"
        announced = json.loads(process.stdout.readline())
        assert announced == {"provider_url": f"http://127.0.0.1:{port}",
                             "webhook_secret": "whsec_entry"}
        with httpx.Client(base_url=announced["provider_url"], trust_env=False) as http:
            assert http.get("/_tokenchaos/health").json() == {"ok": True}
            config = http.get("/_tokenchaos/config").json()
            assert config == {"webhook_url": None, "webhook_secret": "whsec_entry",
                              "tolerance_s": 300}
        process.send_signal(signum)
        assert process.wait(timeout=_EXIT_TIMEOUT_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=_EXIT_TIMEOUT_S)


async def test_serving_on_a_port_in_use_is_a_provider_error() -> None:
    running = await serve_provider(ProviderConfig(seed=1))
    try:
        with pytest.raises(ProviderError, match="cannot listen"):
            await serve_provider(ProviderConfig(seed=1), port=running.port)
    finally:
        await running.stop()
    await running.stop()  # stopping twice is harmless


async def test_config_can_point_webhooks_elsewhere_and_refuses_what_is_not_a_url() -> None:
    running = await serve_provider(ProviderConfig(seed=1))
    try:
        async with httpx.AsyncClient(base_url=running.url, trust_env=False) as http:
            bad = await http.put("/_tokenchaos/config", json={"webhook_url": "ftp://x"})
            assert bad.status_code == 400
            assert "webhook_url" in bad.json()["error"]["message"]
            good = await http.put("/_tokenchaos/config", json={
                "webhook_url": "http://127.0.0.1:9/hook", "tolerance_s": 60})
            assert good.json()["webhook_url"] == "http://127.0.0.1:9/hook"
            assert good.json()["tolerance_s"] == 60
    finally:
        await running.stop()
