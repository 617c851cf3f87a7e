"""Serving the provider: stand-alone as ``python -m harness.provider``, and in-process."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys

import httpx
import pytest

from harness.errors import ProviderError
from harness.pg import free_port
from harness.provider.app import CONTROL_KEY_CHARS_MIN
from harness.provider.client import ProviderClient
from harness.provider.server import ProviderConfig, serve_provider

pytestmark = pytest.mark.integration

_STARTUP_TIMEOUT_S = 30.0
_EXIT_TIMEOUT_S = 15.0


_ENTRIES = {
    "python -m harness.provider": [sys.executable, "-m", "harness.provider"],
    "tokenchaos provider": [sys.executable, "-c", "from harness.cli import main; main()",
                            "provider"],
}
_KEY = "tck_given_" + "k" * 16


@pytest.mark.parametrize("entry", sorted(_ENTRIES))
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stand_alone_provider_prints_one_json_line_with_its_key_and_exits_on_signal(
        entry: str, signum: signal.Signals) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "TOKENCHAOS_PROVIDER_KEY"}
    process = subprocess.Popen(
        [*_ENTRIES[entry], "--port", str(port), "--webhook-secret", "whsec_entry"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env=env)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], _STARTUP_TIMEOUT_S)
        assert ready, "the provider printed nothing"
        announced = json.loads(process.stdout.readline())
        key = announced.pop("provider_key")
        assert len(key) >= CONTROL_KEY_CHARS_MIN
        assert announced == {"provider_url": f"http://127.0.0.1:{port}",
                             "webhook_secret": "whsec_entry"}
        with httpx.Client(base_url=announced["provider_url"], trust_env=False) as http:
            assert http.get("/_tokenchaos/config").status_code == 401
            keyed = {"Authorization": f"Bearer {key}"}
            assert http.get("/_tokenchaos/health", headers=keyed).json() == {"ok": True}
            config = http.get("/_tokenchaos/config", headers=keyed).json()
            assert config == {"webhook_url": None, "webhook_secret": "whsec_entry",
                              "tolerance_s": 300}
        process.send_signal(signum)
        assert process.wait(timeout=_EXIT_TIMEOUT_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=_EXIT_TIMEOUT_S)


@pytest.mark.parametrize("entry", sorted(_ENTRIES))
def test_stand_alone_provider_takes_its_key_from_the_environment(entry: str) -> None:
    port = free_port()
    process = subprocess.Popen(
        [*_ENTRIES[entry], "--port", str(port)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env={**os.environ, "TOKENCHAOS_PROVIDER_KEY": _KEY})
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], _STARTUP_TIMEOUT_S)
        assert ready, "the provider printed nothing"
        assert json.loads(process.stdout.readline())["provider_key"] == _KEY
    finally:
        process.terminate()
        process.wait(timeout=_EXIT_TIMEOUT_S)


def test_a_short_provider_key_is_refused_with_exit_2() -> None:
    done = subprocess.run([*_ENTRIES["tokenchaos provider"], "--provider-key", "short"],
                          capture_output=True, text=True, timeout=_STARTUP_TIMEOUT_S,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "at least 16" in done.stderr
    assert "Traceback" not in done.stderr


# Every route of the control API, with a body it would accept.
_CONTROL_CALLS = [
    ("GET", "/_tokenchaos/config", None),
    ("PUT", "/_tokenchaos/config", {"webhook_url": "http://127.0.0.1:9/steal"}),
    ("GET", "/_tokenchaos/policy", None),
    ("PUT", "/_tokenchaos/policy", {"duplicates_count": 3}),
    ("GET", "/_tokenchaos/pending", None),
    ("GET", "/_tokenchaos/truth", None),
    ("POST", "/_tokenchaos/envelope", {"intent_id": None, "event_type":
                                       "payment_intent.succeeded", "variant": "unsigned"}),
    ("POST", "/_tokenchaos/reset", None),
    ("GET", "/_tokenchaos/health", None),
    ("GET", "/_tokenchaos/no-such-route", None),
]
_REFUSED_HEADERS = {
    "no key": {},
    "wrong key": {"Authorization": "Bearer tck_wrong_" + "x" * 22},
    "the key as basic auth": {"Authorization": "Basic " + _KEY},
    "a stripe key": {"Authorization": "Bearer sk_test_tokenchaos"},
    "a bare scheme": {"Authorization": "Bearer"},
    "a prefix of the key": {"Authorization": "Bearer " + _KEY[:-1]},
}


@pytest.mark.parametrize("refused", sorted(_REFUSED_HEADERS))
async def test_every_control_call_without_the_key_is_a_401_that_reveals_nothing(
        refused: str) -> None:
    running = await serve_provider(ProviderConfig(seed=1, webhook_secret="whsec_hidden_1234",
                                                  control_key=_KEY))
    try:
        async with httpx.AsyncClient(base_url=running.url, trust_env=False,
                                     headers=_REFUSED_HEADERS[refused]) as http:
            for method, path, body in _CONTROL_CALLS:
                response = await http.request(method, path, json=body)
                assert response.status_code == 401, (method, path, response.text)
                assert response.json()["error"]["type"] == "authentication_error"
                assert "whsec_hidden_1234" not in response.text
                assert _KEY not in response.text
                assert response.headers["www-authenticate"].startswith("Bearer")
            keyed = {"Authorization": f"Bearer {_KEY}"}
            config = (await http.get("/_tokenchaos/config", headers=keyed)).json()
            assert config["webhook_url"] is None, "a refused PUT changed the config"
            policy = (await http.get("/_tokenchaos/policy", headers=keyed)).json()
            assert policy["duplicates_count"] == 0, "a refused PUT changed the policy"
    finally:
        await running.stop()


async def test_the_control_key_opens_every_control_call_and_the_stripe_api_is_unchanged(
        ) -> None:
    running = await serve_provider(ProviderConfig(seed=1, control_key=_KEY))
    try:
        keyed = {"Authorization": f"Bearer {_KEY}"}
        async with httpx.AsyncClient(base_url=running.url, trust_env=False) as http:
            for method, path, body in _CONTROL_CALLS:
                response = await http.request(method, path, json=body, headers=keyed)
                expected = 404 if path.endswith("no-such-route") else 200
                assert response.status_code == expected, (method, path, response.text)
            stripe = {"Authorization": "Bearer sk_test_anything"}
            created = await http.post("/v1/payment_intents", headers=stripe, data={
                "amount": 500, "currency": "usd", "payment_method": "pm_card_visa",
                "confirm": "true"})
            assert created.status_code == 200, created.text
            # The control key is not a Stripe key: the two APIs do not share credentials.
            assert (await http.get("/v1/events", headers=keyed)).status_code == 401
    finally:
        await running.stop()


async def test_a_client_with_a_wrong_key_gets_a_provider_error_that_says_what_to_do() -> None:
    running = await serve_provider(ProviderConfig(seed=1, control_key=_KEY))
    try:
        async with ProviderClient(running.url, control_key="tck_wrong_" + "x" * 22) as client:
            with pytest.raises(ProviderError, match="--provider-key"):
                await client.pending()
        async with ProviderClient(running.url, control_key=_KEY) as client:
            assert await client.pending() == 0
    finally:
        await running.stop()


def test_a_short_or_spaced_control_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        ProviderConfig(control_key="short")
    with pytest.raises(ValueError, match="without spaces"):
        ProviderConfig(control_key="tck_has a space in it")
    assert ProviderConfig().control_key != ProviderConfig().control_key


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
            http.headers["Authorization"] = f"Bearer {running.config.control_key}"
            bad = await http.put("/_tokenchaos/config", json={"webhook_url": "ftp://x"})
            assert bad.status_code == 400
            assert "webhook_url" in bad.json()["error"]["message"]
            good = await http.put("/_tokenchaos/config", json={
                "webhook_url": "http://127.0.0.1:9/hook", "tolerance_s": 60})
            assert good.json()["webhook_url"] == "http://127.0.0.1:9/hook"
            assert good.json()["tolerance_s"] == 60
    finally:
        await running.stop()
