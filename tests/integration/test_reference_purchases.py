"""Purchases through the official Stripe SDK against the provider simulator, end to end.

The provider runs in the test's event loop and delivers its signed webhooks to the
service; the webhook alone credits. At the end of every test the service's books balance
and agree with the provider's truth: minted − clawed back == balances − debts, where
minted and clawed back are what the provider says should have happened.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import psycopg
import pytest

from harness.model import DeliveryVariant
from harness.provider.client import ProviderClient
from harness.provider.server import ProviderConfig, serve_provider
from harness.provider.signing import new_webhook_secret
from harness.provider.truth import truth_from_json
from reference_impl.settings import Settings
from reference_impl.testing import ServiceClient, User, assert_books_balance, serving

pytestmark = pytest.mark.integration

ADMIN_KEY = "adm_purchases_0123456789"
QUIESCENCE_TIMEOUT_S = 30.0


@dataclass
class Stack:
    service: ServiceClient
    provider: ProviderClient
    database_url: str

    async def purchase(self, user: User, tokens: int, *, payment_method: str = "pm_card_visa",
                       key: str | None = None) -> dict[str, object]:
        response = await self.service.call(
            user, "POST", "/v1/purchases", key=key or uuid.uuid4().hex,
            json={"tokens": tokens, "payment_method": payment_method})
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def settle(self) -> None:
        await self.provider.wait_quiescent(QUIESCENCE_TIMEOUT_S)


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Stack]:
    secret = new_webhook_secret()
    provider = await serve_provider(ProviderConfig(webhook_secret=secret))
    try:
        settings = Settings(database_url=database_url, admin_key=ADMIN_KEY,
                            webhook_secret=secret, provider_url=provider.url)
        async with serving(settings) as base_url, ProviderClient(
                provider.url, control_key=provider.config.control_key) as control:
            await control.configure(webhook_url=f"{base_url}/v1/webhooks/stripe")
            service = ServiceClient(base_url, admin_key=ADMIN_KEY, webhook_secret=secret)
            try:
                yield Stack(service=service, provider=control, database_url=database_url)
                await control.wait_quiescent(QUIESCENCE_TIMEOUT_S)
                await _assert_books_agree_with_the_provider(service, control, database_url)
            finally:
                await service.aclose()
    finally:
        await provider.stop()


async def _assert_books_agree_with_the_provider(service: ServiceClient,
                                                provider: ProviderClient,
                                                database_url: str) -> None:
    truth = truth_from_json(await provider.truth_json(), user_key="user_id",
                            tokens_keys=("tokens",), user_by_target_id={})
    minted = sum(intent.minted_tokens for intent in truth.intents.values() if intent.succeeded)
    clawed_back = sum(intent.expected_clawback_tokens for intent in truth.intents.values()
                      if intent.succeeded)
    totals = await service.totals()
    assert (totals["minted"], totals["clawed_back"]) == (minted, clawed_back), totals
    await assert_books_balance(service, database_url)


async def test_a_purchase_answers_201_and_the_success_webhook_credits_with_bonus(
        stack: Stack) -> None:
    fan = await stack.service.create_user()
    answer = await stack.purchase(fan, 5000)
    assert answer["status"] == "succeeded"
    assert str(answer["intent_id"]).startswith("pi_")
    assert isinstance(answer["purchase_id"], int)
    await stack.settle()
    assert (await stack.service.me(fan))["balance"] == 5250
    assert (await stack.service.account(fan))["credited"] == 5250


async def test_a_purchase_credits_nothing_until_its_webhook_arrives(stack: Stack) -> None:
    fan = await stack.service.create_user()
    await stack.provider.configure(webhook_url=None)  # events are kept, not delivered
    answer = await stack.purchase(fan, 500)
    assert (await stack.service.me(fan))["balance"] == 0
    envelope = await stack.provider.envelope(intent_id=str(answer["intent_id"]),
                                             event_type="payment_intent.succeeded")
    for _ in range(2):  # and a redelivery credits nothing more
        response = await stack.service.http.post("/v1/webhooks/stripe", content=envelope["body"],
                                                 headers=envelope["headers"])
        assert response.status_code == 200, response.text
    assert (await stack.service.me(fan))["balance"] == 500


async def test_a_webhook_that_beats_the_purchase_record_still_credits_once(
        stack: Stack) -> None:
    fan = await stack.service.create_user()
    async with await psycopg.AsyncConnection.connect(stack.database_url) as blocker:
        # Hold the purchase's final transaction back (it claims its key first) while the
        # success webhook, which needs no key, creates the payment row and credits it.
        await blocker.execute("LOCK TABLE idempotency_keys IN EXCLUSIVE MODE")
        purchase = asyncio.create_task(stack.purchase(fan, 1000))
        deadline = time.monotonic() + QUIESCENCE_TIMEOUT_S
        while (await stack.service.me(fan))["balance"] == 0:
            assert time.monotonic() < deadline, "the success webhook never credited"
            await asyncio.sleep(0.01)
        assert not purchase.done()
        await blocker.rollback()
    answer = await purchase
    assert answer["status"] == "succeeded"
    await stack.settle()
    assert (await stack.service.me(fan))["balance"] == 1000


async def test_one_key_sent_twice_at_once_makes_one_intent_and_one_credit(
        stack: Stack) -> None:
    fan = await stack.service.create_user()
    key = uuid.uuid4().hex
    first, second = await asyncio.gather(stack.purchase(fan, 500, key=key),
                                         stack.purchase(fan, 500, key=key))
    assert first == second
    await stack.settle()
    assert (await stack.service.me(fan))["balance"] == 500
    intents = (await stack.provider.truth_json())["intents"]
    assert [intent["id"] for intent in intents] == [first["intent_id"]]


async def test_one_key_used_by_two_users_makes_two_intents(stack: Stack) -> None:
    alice, bob = await stack.service.create_user(), await stack.service.create_user()
    one = await stack.purchase(alice, 100, key="same-key")
    other = await stack.purchase(bob, 100, key="same-key")
    assert one["intent_id"] != other["intent_id"]
    await stack.settle()
    assert [(await stack.service.me(u))["balance"] for u in (alice, bob)] == [100, 100]


async def test_a_key_reused_for_another_package_is_409(stack: Stack) -> None:
    fan = await stack.service.create_user()
    key = uuid.uuid4().hex
    await stack.purchase(fan, 100, key=key)
    response = await stack.service.call(fan, "POST", "/v1/purchases", key=key,
                                        json={"tokens": 500, "payment_method": "pm_card_visa"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_conflict"


async def test_a_declined_card_is_402_replays_as_402_and_credits_nothing(
        stack: Stack) -> None:
    fan = await stack.service.create_user()
    key = uuid.uuid4().hex
    answers = [await stack.service.call(fan, "POST", "/v1/purchases", key=key, json={
        "tokens": 500, "payment_method": "pm_card_chargeDeclined"}) for _ in range(2)]
    assert [r.status_code for r in answers] == [402, 402]
    assert answers[0].json() == answers[1].json()
    assert answers[0].json()["error"]["code"] == "card_declined"
    await stack.settle()
    assert (await stack.service.me(fan))["balance"] == 0


async def test_three_d_secure_is_credited_only_once_authenticated(stack: Stack) -> None:
    fan = await stack.service.create_user()
    answer = await stack.purchase(fan, 1000, payment_method="pm_card_threeDSecure2Required")
    assert answer["status"] == "requires_action"
    await stack.settle()
    assert (await stack.service.me(fan))["balance"] == 0
    await stack.provider.authenticate(str(answer["intent_id"]))
    await stack.settle()
    assert (await stack.service.me(fan))["balance"] == 1000


async def test_refunds_and_a_won_dispute_through_the_provider_end_where_the_truth_says(
        stack: Stack) -> None:
    fan, creator = await stack.service.create_user(), await stack.service.create_user("creator")
    intent_id = str((await stack.purchase(fan, 5000))["intent_id"])
    await stack.settle()
    assert (await stack.service.tip(fan, creator, 5000)).status_code == 201
    await stack.provider.refund(intent_id, 5000)
    await stack.provider.refund(intent_id, 2500)
    await stack.settle()
    taken = 5250 * 7500 // 25000
    assert await stack.service.me(fan) == {"id": fan.id, "balance": 0, "debt": taken - 250,
                                           "status": "debt"}
    dispute = await stack.provider.open_dispute(intent_id)
    await stack.settle()
    assert (await stack.service.me(fan))["debt"] == 5250 - 250
    await stack.provider.close_dispute(str(dispute["id"]), "won")
    await stack.settle()
    assert (await stack.service.me(fan))["debt"] == taken - 250


async def test_forged_deliveries_from_the_provider_are_refused(stack: Stack) -> None:
    fan = await stack.service.create_user()
    intent_id = str((await stack.purchase(fan, 100))["intent_id"])
    await stack.settle()
    for variant in (DeliveryVariant.UNSIGNED, DeliveryVariant.WRONG_SECRET,
                    DeliveryVariant.TAMPERED, DeliveryVariant.STALE):
        for forged_intent in (intent_id, None):
            envelope = await stack.provider.envelope(
                intent_id=forged_intent, event_type="payment_intent.succeeded", variant=variant)
            response = await stack.service.http.post(
                "/v1/webhooks/stripe", content=envelope["body"], headers=envelope["headers"])
            assert response.status_code == 400, (variant, response.text)
    assert (await stack.service.me(fan))["balance"] == 100


async def test_an_unreachable_provider_is_a_502_with_a_json_error(database_url: str) -> None:
    settings = Settings(database_url=database_url, admin_key=ADMIN_KEY,
                        webhook_secret="whsec_x", provider_url="http://127.0.0.1:9",
                        provider_retries_max=0)
    async with serving(settings) as base_url:
        service = ServiceClient(base_url, admin_key=ADMIN_KEY, webhook_secret="whsec_x")
        try:
            fan = await service.create_user()
            response = await service.call(fan, "POST", "/v1/purchases", key="k", json={
                "tokens": 500, "payment_method": "pm_card_visa"})
            assert response.status_code == 502
            assert response.json()["error"]["code"] == "provider_unavailable"
            assert (await service.totals())["minted"] == 0
        finally:
            await service.aclose()
