"""Webhook delivery over real HTTP, policy by policy, to a receiver that verifies with the SDK.

The receiver is a tiny Starlette app served by uvicorn on a free loopback port; it checks
every webhook with ``stripe.Webhook.construct_event`` (tolerance 300 s), answers 400 to
what fails, and can be told to answer 500 a number of times or to hold requests at a gate.
Each test checks the provider's ``Delivery`` records against what the receiver saw, and
that ``pending`` drains to 0.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import stripe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from harness.errors import ProviderError
from harness.model import DeliveryVariant
from harness.pg import free_port
from harness.provider.client import ProviderClient
from harness.provider.policy import DeliveryPolicy
from harness.provider.server import ProviderConfig, RunningProvider, serve_asgi, serve_provider

pytestmark = pytest.mark.integration

SECRET = "whsec_delivery_tests"
_SETTLE_TIMEOUT_S = 20.0


@dataclass
class Seen:
    event_id: str | None
    event_type: str | None
    accepted: bool
    body: Any


@dataclass
class Receiver:
    """What a correct target's webhook endpoint does, minus the money."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    arrived_count: int = 0
    failures_left: int = 0  # answer 500 to this many verified deliveries
    gate: asyncio.Event | None = None  # when set up, requests wait for it to open

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])

    async def _hook(self, request: Request) -> Response:
        payload = await request.body()
        self.arrived_count += 1
        if self.gate is not None:
            await self.gate.wait()
        try:
            event = stripe.Webhook.construct_event(
                payload, request.headers.get("stripe-signature"), SECRET, tolerance=300)
        except (stripe.SignatureVerificationError, ValueError):
            body = _json_or_none(payload)
            self.seen.append(Seen(event_id=body.get("id") if body else None,
                                  event_type=body.get("type") if body else None,
                                  accepted=False, body=body))
            return JSONResponse({"error": "bad signature"}, status_code=400)
        self.seen.append(Seen(event_id=event.id, event_type=event.type, accepted=True,
                              body=json.loads(payload)))
        if self.failures_left > 0:
            self.failures_left -= 1
            return JSONResponse({"error": "try later"}, status_code=500)
        return JSONResponse({"received": True})


@dataclass
class Env:
    provider: RunningProvider
    control: ProviderClient
    http: httpx.AsyncClient
    receiver: Receiver

    async def pay(self, payment_method: str = "pm_card_visa") -> str:
        response = await self.http.post("/v1/payment_intents", data={
            "amount": "2500", "currency": "usd", "payment_method": payment_method,
            "confirm": "true", "metadata[user_id]": "1", "metadata[tokens]": "500"})
        body = response.json()
        return str(body["id"] if response.status_code == 200
                   else body["error"]["payment_intent"]["id"])

    async def refund(self, intent_id: str, amount_cents: int) -> None:
        await self.control.refund(intent_id, amount_cents)

    async def settle(self) -> list[dict[str, Any]]:
        """Wait for quiescence; every delivery, in the order attempts started."""
        await self.control.wait_quiescent(_SETTLE_TIMEOUT_S)
        truth = await self.control.truth_json()
        assert truth["pending_deliveries"] == 0
        assert truth["dispatcher_errors"] == []
        deliveries: list[dict[str, Any]] = truth["deliveries"]
        assert [d["index"] for d in deliveries] == list(range(len(deliveries)))
        for delivery in deliveries:
            assert delivery["started_ns"] <= delivery["finished_ns"]
        return deliveries


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    receiver = Receiver()
    hook = await serve_asgi(receiver.app(), port=free_port())
    receiver.url = hook.url + "/hook"
    provider = await serve_provider(ProviderConfig(webhook_url=receiver.url,
                                                   webhook_secret=SECRET, seed=5),
                                    port=free_port())
    control = ProviderClient(provider.url, control_key=provider.config.control_key)
    http = httpx.AsyncClient(base_url=provider.url, trust_env=False,
                             headers={"Authorization": "Bearer sk_test_1"})
    try:
        yield Env(provider=provider, control=control, http=http, receiver=receiver)
    finally:
        if receiver.gate is not None:
            receiver.gate.set()
        await http.aclose()
        await control.aclose()
        await provider.stop()
        await hook.stop()


def _variants(deliveries: list[dict[str, Any]]) -> list[str]:
    return [d["variant"] for d in deliveries]


async def test_by_default_each_event_is_delivered_once_and_acknowledged(env: Env) -> None:
    intent_id = await env.pay()
    deliveries = await env.settle()
    assert _variants(deliveries) == ["genuine"]
    assert deliveries[0]["status_code"] == 200
    assert deliveries[0]["error"] is None
    assert deliveries[0]["intent_id"] == intent_id
    truth = await env.control.truth_json()
    assert deliveries[0]["event_id"] == truth["events"][0]["id"]
    assert [(s.event_id, s.accepted) for s in env.receiver.seen] == [
        (deliveries[0]["event_id"], True)]


async def test_duplicates_reach_the_target_at_the_same_time_as_the_first(env: Env) -> None:
    await env.control.set_policy(DeliveryPolicy(duplicates_count=2))
    env.receiver.gate = asyncio.Event()
    await env.pay()
    await _until(lambda: env.receiver.arrived_count == 3)  # all three in flight at once
    env.receiver.gate.set()
    deliveries = await env.settle()
    assert Counter(_variants(deliveries)) == {"genuine": 1, "duplicate": 2}
    assert {d["status_code"] for d in deliveries} == {200}
    assert len({d["event_id"] for d in deliveries}) == 1


async def test_replays_follow_the_acknowledged_delivery(env: Env) -> None:
    await env.control.set_policy(DeliveryPolicy(replays_count=2, replay_delay_ms=10))
    await env.pay()
    deliveries = await env.settle()
    assert _variants(deliveries) == ["genuine", "replay", "replay"]
    assert {d["status_code"] for d in deliveries} == {200}
    assert deliveries[1]["started_ns"] >= deliveries[0]["finished_ns"]
    assert [s.accepted for s in env.receiver.seen] == [True, True, True]


async def test_reorder_holds_a_success_until_its_refund_was_delivered(env: Env) -> None:
    # The hold outlasts the settle timeout: only the refund's delivery can release it.
    await env.control.set_policy(DeliveryPolicy(reorder=True, hold_ms_max=60_000))
    intent_id = await env.pay()
    assert await env.control.pending() == 1
    assert (await env.control.truth_json())["deliveries"] == []
    await env.refund(intent_id, 1000)
    deliveries = await env.settle()
    assert [d["event_type"] for d in deliveries] == ["charge.refunded",
                                                     "payment_intent.succeeded"]
    assert [s.event_type for s in env.receiver.seen] == ["charge.refunded",
                                                         "payment_intent.succeeded"]


async def test_reorder_releases_a_lonely_success_after_hold_ms_max(env: Env) -> None:
    await env.control.set_policy(DeliveryPolicy(reorder=True, hold_ms_max=50))
    await env.pay()
    deliveries = await env.settle()
    assert [(d["event_type"], d["status_code"]) for d in deliveries] == [
        ("payment_intent.succeeded", 200)]


async def test_dropped_answers_are_retried_until_one_counts(env: Env) -> None:
    await env.control.set_policy(DeliveryPolicy(drop_count=2, retry_backoff_ms_base=1))
    await env.pay()
    deliveries = await env.settle()
    assert _variants(deliveries) == ["genuine", "retry", "retry"]
    assert [d["status_code"] for d in deliveries] == [200, 200, 200]
    assert [d["error"] for d in deliveries] == ["answer_dropped", "answer_dropped", None]
    assert [s.accepted for s in env.receiver.seen] == [True, True, True]


async def test_failed_attempts_are_retried_with_backoff_until_acknowledged(env: Env) -> None:
    await env.control.set_policy(DeliveryPolicy(retry_backoff_ms_base=1))
    env.receiver.failures_left = 2
    await env.pay()
    deliveries = await env.settle()
    assert _variants(deliveries) == ["genuine", "retry", "retry"]
    assert [d["status_code"] for d in deliveries] == [500, 500, 200]
    assert [d["error"] for d in deliveries] == ["server_error_5xx", "server_error_5xx", None]


async def test_delivery_gives_up_after_attempts_max_and_sends_no_replay(env: Env) -> None:
    await env.control.set_policy(DeliveryPolicy(attempts_max=3, retry_backoff_ms_base=1,
                                                replays_count=1, replay_delay_ms=1))
    env.receiver.failures_left = 1_000
    await env.pay()
    deliveries = await env.settle()
    assert _variants(deliveries) == ["genuine", "retry", "retry"]
    assert {d["status_code"] for d in deliveries} == {500}


async def test_stale_copies_are_refused_by_a_verifying_target(env: Env) -> None:
    await env.control.set_policy(DeliveryPolicy(stale_count=1))
    await env.pay()
    deliveries = await env.settle()
    assert [(d["variant"], d["status_code"]) for d in deliveries] == [
        ("genuine", 200), ("stale", 400)]
    assert deliveries[0]["event_id"] == deliveries[1]["event_id"]
    assert [s.accepted for s in env.receiver.seen] == [True, False]


async def test_forged_copies_go_first_and_are_all_refused(env: Env) -> None:
    forgeries = (DeliveryVariant.UNSIGNED, DeliveryVariant.WRONG_SECRET,
                 DeliveryVariant.TAMPERED)
    await env.control.set_policy(DeliveryPolicy(forgeries=forgeries))
    await env.pay()
    deliveries = await env.settle()
    forged = [d for d in deliveries if d["variant"] != "genuine"]
    genuine = [d for d in deliveries if d["variant"] == "genuine"]
    assert sorted(d["variant"] for d in forged) == sorted(str(v) for v in forgeries)
    assert {d["status_code"] for d in forged} == {400}
    assert [d["status_code"] for d in genuine] == [200]
    assert max(d["index"] for d in forged) < genuine[0]["index"]
    tampered = [s for s in env.receiver.seen if not s.accepted
                and s.event_id != genuine[0]["event_id"]]
    assert len(tampered) == 1
    assert tampered[0].body["data"]["object"]["metadata"] == {"user_id": "1", "tokens": "5000"}
    assert [s.accepted for s in env.receiver.seen].count(True) == 1


async def test_chaos_applies_only_to_the_listed_event_types(env: Env) -> None:
    await env.control.set_policy(DeliveryPolicy(duplicates_count=1,
                                                event_types=("charge.refunded",)))
    intent_id = await env.pay()
    await env.refund(intent_id, 500)
    deliveries = await env.settle()
    by_type = Counter(d["event_type"] for d in deliveries)
    assert by_type == {"payment_intent.succeeded": 1, "charge.refunded": 2}


async def test_without_a_webhook_url_events_are_stored_and_not_sent(env: Env) -> None:
    config = await env.control.configure(webhook_url=None)
    assert config["webhook_url"] is None
    await env.pay()
    assert await env.control.pending() == 0
    truth = await env.control.truth_json()
    assert [e["type"] for e in truth["events"]] == ["payment_intent.succeeded"]
    assert truth["deliveries"] == []
    assert env.receiver.seen == []
    listed = await env.http.get("/v1/events")
    assert listed.json()["data"][0]["pending_webhooks"] == 0


async def test_reset_forgets_events_and_deliveries_but_keeps_intents(env: Env) -> None:
    intent_id = await env.pay()
    await env.settle()
    await env.control.reset()
    truth = await env.control.truth_json()
    assert truth["events"] == []
    assert truth["deliveries"] == []
    assert [i["id"] for i in truth["intents"]] == [intent_id]
    await env.refund(intent_id, 100)
    deliveries = await env.settle()
    assert [(d["index"], d["event_type"]) for d in deliveries] == [(0, "charge.refunded")]


async def test_envelopes_are_signed_or_forged_for_the_harness_to_send(env: Env) -> None:
    intent_id = await env.pay()
    await env.settle()
    async with httpx.AsyncClient(trust_env=False) as http:
        replay = await env.control.envelope(intent_id=intent_id,
                                            event_type="payment_intent.succeeded",
                                            variant=DeliveryVariant.REPLAY)
        sent = await http.post(env.receiver.url, content=replay["body"],
                               headers=replay["headers"])
        assert sent.status_code == 200
        forged = await env.control.envelope(intent_id=None,
                                            event_type="payment_intent.succeeded",
                                            variant="tampered")
        refused = await http.post(env.receiver.url, content=forged["body"],
                                  headers=forged["headers"])
        assert refused.status_code == 400
    made_up = json.loads(forged["body"])["data"]["object"]["id"]
    assert made_up not in {i["id"] for i in (await env.control.truth_json())["intents"]}
    with pytest.raises(ProviderError, match="400"):
        await env.control.envelope(intent_id=None, event_type="payment_intent.succeeded",
                                   variant="genuine")


async def test_wait_quiescent_raises_while_a_delivery_cannot_finish(env: Env) -> None:
    env.receiver.gate = asyncio.Event()
    await env.pay()
    with pytest.raises(ProviderError, match="1 webhook deliveries still pending"):
        await env.control.wait_quiescent(0.2)
    env.receiver.gate.set()
    assert _variants(await env.settle()) == ["genuine"]


async def test_an_invalid_policy_is_a_400_that_says_why(env: Env) -> None:
    control = {"Authorization": f"Bearer {env.provider.config.control_key}"}
    response = await env.http.put("/_tokenchaos/policy", headers=control,
                                  json={"drop_count": 9, "attempts_max": 3})
    assert response.status_code == 400
    assert "drop_count" in response.json()["error"]["message"]
    unknown = await env.http.put("/_tokenchaos/policy", headers=control,
                                 json={"colour": "red"})
    assert unknown.status_code == 400
    assert (await env.control.policy()) == DeliveryPolicy()


async def test_the_policy_seed_makes_forgeries_repeat(env: Env) -> None:
    first = await _tampered_ids(env)
    second = await _tampered_ids(env)
    assert first == second
    assert len(first) == 2


async def _tampered_ids(env: Env) -> list[str]:
    """The event ids of two tampered copies, drawn from a policy seeded anew."""
    await env.control.set_policy(DeliveryPolicy(forgeries=(DeliveryVariant.TAMPERED,), seed=9))
    env.receiver.seen.clear()
    await env.pay()
    await env.settle()
    await env.pay()
    await env.settle()
    return [str(s.event_id) for s in env.receiver.seen if not s.accepted]


async def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll a condition the test is waiting for (bounded); fail if it never holds."""
    for _ in range(int(timeout_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


def _json_or_none(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return None
