"""Webhooks over real HTTP: one credit per intent, refunds and disputes in any order.

Events are built and signed here exactly as Stripe signs them; the service verifies them
with the official SDK. After every test the books must balance.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import psycopg
import pytest

from reference_impl.settings import Settings
from reference_impl.testing import (
    ServiceClient,
    User,
    assert_books_balance,
    charge_object,
    dispute_object,
    intent_object,
    serving,
    sign,
    stripe_event,
)

pytestmark = pytest.mark.integration

ADMIN_KEY = "adm_webhooks_0123456789"
SECRET = "whsec_webhooks"


@pytest.fixture
async def service(database_url: str) -> AsyncIterator[ServiceClient]:
    settings = Settings(database_url=database_url, admin_key=ADMIN_KEY, webhook_secret=SECRET,
                        provider_url="http://127.0.0.1:9", pool_timeout_s=2.0)
    async with serving(settings) as base_url:
        client = ServiceClient(base_url, admin_key=ADMIN_KEY, webhook_secret=SECRET)
        try:
            yield client
            await assert_books_balance(client, database_url)
        finally:
            await client.aclose()


class Payment:
    """One intent of ``tokens`` for ``amount_cents``, and its Stripe-shaped events."""

    def __init__(self, user: User, *, minted_tokens: int, amount_cents: int) -> None:
        self.user, self.minted_tokens, self.amount_cents = user, minted_tokens, amount_cents
        self.intent_id = f"pi_{uuid.uuid4().hex[:24]}"

    def succeeded(self) -> dict[str, object]:
        return stripe_event("payment_intent.succeeded", intent_object(
            self.intent_id, amount_cents=self.amount_cents, user_id=self.user.id,
            minted_tokens=self.minted_tokens))

    def refunded(self, refunded_cents: int) -> dict[str, object]:
        return stripe_event("charge.refunded", charge_object(
            self.intent_id, amount_cents=self.amount_cents, refunded_cents=refunded_cents,
            user_id=self.user.id, minted_tokens=self.minted_tokens))

    def dispute(self, event_type: str, status: str) -> dict[str, object]:
        return stripe_event(event_type, dispute_object(
            self.intent_id, status=status, amount_cents=self.amount_cents, user_id=self.user.id,
            minted_tokens=self.minted_tokens))


async def _deliver_all(service: ServiceClient, *events: dict[str, object]) -> None:
    for event in events:
        response = await service.deliver(event)
        assert response.status_code == 200, response.text


async def _state(service: ServiceClient, user: User) -> tuple[int, int, str]:
    me = await service.me(user)
    return me["balance"], me["debt"], me["status"]


async def test_a_success_credits_once_however_often_it_is_delivered(
        service: ServiceClient) -> None:
    fan = await service.create_user()
    payment = Payment(fan, minted_tokens=500, amount_cents=2500)
    event = payment.succeeded()
    answers = await asyncio.gather(*(service.deliver(event) for _ in range(10)))
    assert {r.status_code for r in answers} == {200}
    assert sorted(r.json()["result"] for r in answers) == ["applied"] + ["duplicate_event"] * 9
    await _deliver_all(service, event, payment.succeeded())  # a replay, and a second event id
    assert await _state(service, fan) == (500, 0, "active")
    assert (await service.account(fan))["credited"] == 500


async def test_a_refund_delivered_before_its_success_nets_out(service: ServiceClient) -> None:
    early, in_order = await service.create_user(), await service.create_user()
    for user, order in ((early, "refund first"), (in_order, "success first")):
        payment = Payment(user, minted_tokens=1000, amount_cents=5000)
        events = [payment.refunded(1000), payment.succeeded()]
        await _deliver_all(service, *(events if order == "refund first" else events[::-1]))
    assert await _state(service, early) == await _state(service, in_order) == (800, 0, "active")


async def test_partial_refunds_are_cumulative_and_an_older_smaller_one_changes_nothing(
        service: ServiceClient) -> None:
    fan = await service.create_user()
    payment = Payment(fan, minted_tokens=5250, amount_cents=25000)
    await _deliver_all(service, payment.succeeded(), payment.refunded(1001),
                       payment.refunded(3003), payment.refunded(2002))
    assert await _state(service, fan) == (5250 - 5250 * 3003 // 25000, 0, "active")
    assert (await service.account(fan))["clawed_back"] == 5250 * 3003 // 25000


async def test_a_refund_after_spending_becomes_debt_and_a_later_credit_pays_it(
        service: ServiceClient) -> None:
    fan, creator = await service.create_user(), await service.create_user("creator")
    payment = Payment(fan, minted_tokens=500, amount_cents=2500)
    await _deliver_all(service, payment.succeeded())
    assert (await service.tip(fan, creator, 400)).status_code == 201
    await _deliver_all(service, payment.refunded(2500))
    assert await _state(service, fan) == (0, 400, "debt")
    account = await service.account(fan)
    assert account["ledger_sum"] == account["balance"] == 0
    assert account["clawed_back"] == 500
    await service.fund(fan, 500)
    assert await _state(service, fan) == (100, 0, "active")


async def test_a_dispute_takes_everything_and_a_won_dispute_gives_it_back(
        service: ServiceClient) -> None:
    fan, creator = await service.create_user(), await service.create_user("creator")
    payment = Payment(fan, minted_tokens=1000, amount_cents=5000)
    await _deliver_all(service, payment.succeeded(), payment.refunded(1000))
    assert (await service.tip(fan, creator, 500)).status_code == 201
    await _deliver_all(service, payment.dispute("charge.dispute.created", "needs_response"))
    assert await _state(service, fan) == (0, 500, "debt")
    await _deliver_all(service, payment.dispute("charge.dispute.closed", "won"))
    assert await _state(service, fan) == (300, 0, "active")
    assert (await service.account(fan))["clawed_back"] == 200


async def test_a_lost_dispute_keeps_what_it_took(service: ServiceClient) -> None:
    fan = await service.create_user()
    payment = Payment(fan, minted_tokens=500, amount_cents=2500)
    await _deliver_all(service, payment.succeeded(),
                       payment.dispute("charge.dispute.created", "needs_response"),
                       payment.dispute("charge.dispute.closed", "lost"),
                       payment.dispute("charge.dispute.created", "needs_response"))
    assert await _state(service, fan) == (0, 0, "active")
    assert (await service.account(fan))["clawed_back"] == 500


async def test_a_dispute_before_its_success_nets_out(service: ServiceClient) -> None:
    fan = await service.create_user()
    payment = Payment(fan, minted_tokens=500, amount_cents=2500)
    await _deliver_all(service, payment.dispute("charge.dispute.created", "needs_response"),
                       payment.succeeded())
    assert await _state(service, fan) == (0, 0, "active")
    await _deliver_all(service, payment.dispute("charge.dispute.closed", "won"))
    assert await _state(service, fan) == (500, 0, "active")


@pytest.mark.parametrize("variant", ["unsigned", "wrong_secret", "tampered", "stale",
                                     "garbage_header"])
async def test_forged_and_stale_webhooks_are_400_and_change_nothing(
        service: ServiceClient, variant: str) -> None:
    fan = await service.create_user()
    payload = json.dumps(Payment(fan, minted_tokens=500, amount_cents=2500).succeeded()).encode()
    headers = {"Stripe-Signature": sign(payload, SECRET)}
    if variant == "unsigned":
        headers = {}
    elif variant == "wrong_secret":
        headers = {"Stripe-Signature": sign(payload, "whsec_attacker")}
    elif variant == "tampered":
        payload = payload.replace(b'"500"', b'"50000"')
    elif variant == "stale":
        headers = {"Stripe-Signature": sign(payload, SECRET, timestamp=int(time.time()) - 301)}
    else:
        headers = {"Stripe-Signature": "t=now,v1=" + "0" * 64}
    response = await service.http.post("/v1/webhooks/stripe", content=payload, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] in ("bad_signature", "stale_webhook")
    assert await _state(service, fan) == (0, 0, "active")


async def test_a_signed_event_of_an_unknown_type_is_acknowledged_and_ignored(
        service: ServiceClient) -> None:
    response = await service.deliver(stripe_event("customer.created", {"id": "cus_1"}))
    assert response.status_code == 200
    assert response.json()["result"] == "ignored"


async def test_a_success_for_an_intent_that_is_not_ours_is_acknowledged_and_ignored(
        service: ServiceClient) -> None:
    fan = await service.create_user()
    strangers = [intent_object("pi_stranger_1", amount_cents=500, user_id=None,
                               minted_tokens=None),
                 intent_object("pi_stranger_2", amount_cents=500, user_id=10**9,
                               minted_tokens=100)]
    for obj in strangers:
        response = await service.deliver(stripe_event("payment_intent.succeeded", obj))
        assert response.status_code == 200
        assert response.json()["result"] == "ignored"
    assert (await service.totals())["minted"] == 0
    assert await _state(service, fan) == (0, 0, "active")


async def test_a_webhook_is_5xx_while_the_database_is_down_and_applies_once_after(
        service: ServiceClient, database_url: str) -> None:
    fan = await service.create_user()
    event = Payment(fan, minted_tokens=100, amount_cents=500).succeeded()
    name = database_url.rsplit("/", 1)[-1]
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        try:
            refused = await service.deliver(event)
            assert refused.status_code in (500, 503), refused.text
            assert "error" in refused.json()
            assert (await service.http.get("/healthz")).status_code == 503
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    retried = await _deliver_until_acknowledged(service, event)
    assert retried.json()["result"] == "applied"
    assert await _state(service, fan) == (100, 0, "active")


async def _deliver_until_acknowledged(service: ServiceClient,
                                      event: dict[str, object]) -> httpx.Response:
    """Re-send as the provider would after an outage, for at most 30 s."""
    deadline = time.monotonic() + 30.0
    while True:
        response = await service.deliver(event)
        if response.status_code == 200 or time.monotonic() > deadline:
            assert response.status_code == 200, response.text
            return response
        assert response.status_code in (500, 503), response.text
