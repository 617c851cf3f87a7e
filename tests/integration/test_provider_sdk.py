"""The official stripe SDK against the simulator served by uvicorn on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import stripe

from harness.errors import ProviderError
from harness.pg import free_port
from harness.provider.client import ProviderClient
from harness.provider.server import ProviderConfig, RunningProvider, serve_provider

pytestmark = pytest.mark.integration


@pytest.fixture
async def provider() -> AsyncIterator[RunningProvider]:
    running = await serve_provider(ProviderConfig(seed=21), port=free_port())
    yield running
    await running.stop()


def _sdk(url: str, api_key: str = "sk_test_tokenchaos") -> stripe.StripeClient:
    """As a service configures it; the SDK's retries send a generated Idempotency-Key."""
    return stripe.StripeClient(api_key, base_addresses={"api": url},
                               http_client=stripe.HTTPXClient())


async def test_sdk_creates_retrieves_and_refunds_and_parses_its_own_objects(
        provider: RunningProvider) -> None:
    client = _sdk(provider.url)
    params = {"amount": 2500, "currency": "usd", "payment_method": "pm_card_visa",
              "confirm": True, "metadata": {"user_id": "7", "tokens": "500"}}
    intent = await client.v1.payment_intents.create_async(
        params=params, options={"idempotency_key": "purchase-1"})  # type: ignore[arg-type]
    assert isinstance(intent, stripe.PaymentIntent)
    assert intent.status == "succeeded"
    assert intent.metadata["tokens"] == "500"
    again = await client.v1.payment_intents.create_async(
        params=params, options={"idempotency_key": "purchase-1"})  # type: ignore[arg-type]
    assert again.id == intent.id
    fetched = await client.v1.payment_intents.retrieve_async(
        intent.id, params={"expand": ["latest_charge"]})
    assert isinstance(fetched.latest_charge, stripe.Charge)
    assert fetched.latest_charge.amount_refunded == 0
    refund = await client.v1.refunds.create_async(
        params={"payment_intent": intent.id, "amount": 1000})
    assert isinstance(refund, stripe.Refund)
    assert refund.amount == 1000
    assert refund.status == "succeeded"
    after = await client.v1.payment_intents.retrieve_async(
        intent.id, params={"expand": ["latest_charge"]})
    assert isinstance(after.latest_charge, stripe.Charge)
    assert after.latest_charge.amount_refunded == 1000
    events = await client.v1.events.list_async(params={"type": "charge.refunded"})
    assert [e.type for e in events.data] == ["charge.refunded"]


async def test_sdk_raises_card_error_for_a_decline_and_idempotency_error_for_a_reused_key(
        provider: RunningProvider) -> None:
    client = _sdk(provider.url)
    with pytest.raises(stripe.CardError) as declined:
        await client.v1.payment_intents.create_async(params={
            "amount": 2500, "currency": "usd", "payment_method": "pm_card_chargeDeclined",
            "confirm": True}, options={"idempotency_key": "decline-1"})
    assert declined.value.http_status == 402
    assert declined.value.code == "card_declined"
    assert declined.value.error is not None
    assert declined.value.error.decline_code == "generic_decline"
    with pytest.raises(stripe.IdempotencyError):
        await client.v1.payment_intents.create_async(params={
            "amount": 5000, "currency": "usd", "payment_method": "pm_card_visa",
            "confirm": True}, options={"idempotency_key": "decline-1"})


async def test_three_d_secure_completes_through_the_test_helper(
        provider: RunningProvider) -> None:
    client = _sdk(provider.url)
    intent = await client.v1.payment_intents.create_async(params={
        "amount": 5000, "currency": "usd", "payment_method": "pm_card_threeDSecure2Required",
        "confirm": True})
    assert intent.status == "requires_action"
    assert intent.next_action is not None
    async with ProviderClient(provider.url,
                              control_key=provider.config.control_key) as control:
        done = await control.authenticate(intent.id)
    assert done["status"] == "succeeded"
    fetched = await client.v1.payment_intents.retrieve_async(intent.id)
    assert fetched.status == "succeeded"


async def test_only_sk_test_keys_are_accepted(provider: RunningProvider) -> None:
    with pytest.raises(stripe.AuthenticationError):
        await _sdk(provider.url, api_key="sk_live_nope").v1.payment_intents.retrieve_async(
            "pi_x")
    async with httpx.AsyncClient(base_url=provider.url, trust_env=False) as http:
        response = await http.get("/v1/payment_intents/pi_x")
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "invalid_request_error"
        missing = await http.get("/v1/payment_intents/pi_x",
                                 headers={"Authorization": "Bearer sk_test_1"})
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "resource_missing"
        unknown = await http.post("/v1/customers", headers={"Authorization": "Bearer sk_test_1"})
        assert unknown.status_code == 404
        assert "Unrecognized request URL" in unknown.json()["error"]["message"]


async def test_a_provider_that_does_not_answer_is_a_provider_error() -> None:
    async with ProviderClient(f"http://127.0.0.1:{free_port()}", control_key="tck_" + "k" * 16,
                              timeout_s=2.0) as control:
        with pytest.raises(ProviderError, match="did not answer"):
            await control.pending()
