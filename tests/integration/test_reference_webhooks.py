"""Webhooks over real HTTP: one credit per intent, refunds and disputes in any order.

Events are built and signed here exactly as Stripe signs them; the service verifies them
with the official SDK. After every test the books must balance.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

from reference_impl.testing import (
    Purchase,
    ServiceClient,
    User,
    intent_object,
    sign,
    stripe_event,
)
from tests.integration.reference_stack import service_with_provider

pytestmark = pytest.mark.integration

ADMIN_KEY = "adm_webhooks_0123456789"
SECRET = "whsec_webhooks"


@pytest.fixture
async def service(database_url: str) -> AsyncIterator[ServiceClient]:
    async with service_with_provider(database_url, admin_key=ADMIN_KEY, webhook_secret=SECRET,
                                     pool_timeout_s=2.0) as client:
        yield client


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
    payment = await service.buy(fan, 500)
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
        payment = await service.buy(user, 1000)
        events = [payment.refunded(1000), payment.succeeded()]
        await _deliver_all(service, *(events if order == "refund first" else events[::-1]))
    assert await _state(service, early) == await _state(service, in_order) == (800, 0, "active")


async def test_partial_refunds_are_cumulative_and_an_older_smaller_one_changes_nothing(
        service: ServiceClient) -> None:
    fan = await service.create_user()
    payment = await service.buy(fan, 5000)
    await _deliver_all(service, payment.succeeded(), payment.refunded(1001),
                       payment.refunded(3003), payment.refunded(2002))
    assert await _state(service, fan) == (5250 - 5250 * 3003 // 25000, 0, "active")
    assert (await service.account(fan))["clawed_back"] == 5250 * 3003 // 25000


async def test_a_refund_after_spending_becomes_debt_and_a_later_credit_pays_it(
        service: ServiceClient) -> None:
    fan, creator = await service.create_user(), await service.create_user("creator")
    payment = await service.buy(fan, 500)
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
    payment = await service.buy(fan, 1000)
    await _deliver_all(service, payment.succeeded(), payment.refunded(1000))
    assert (await service.tip(fan, creator, 500)).status_code == 201
    await _deliver_all(service, payment.dispute("charge.dispute.created", "needs_response"))
    assert await _state(service, fan) == (0, 500, "debt")
    await _deliver_all(service, payment.dispute("charge.dispute.closed", "won"))
    assert await _state(service, fan) == (300, 0, "active")
    assert (await service.account(fan))["clawed_back"] == 200


async def test_a_lost_dispute_keeps_what_it_took(service: ServiceClient) -> None:
    fan = await service.create_user()
    payment = await service.buy(fan, 500)
    await _deliver_all(service, payment.succeeded(),
                       payment.dispute("charge.dispute.created", "needs_response"),
                       payment.dispute("charge.dispute.closed", "lost"),
                       payment.dispute("charge.dispute.created", "needs_response"))
    assert await _state(service, fan) == (0, 0, "active")
    assert (await service.account(fan))["clawed_back"] == 500


async def test_a_dispute_before_its_success_nets_out(service: ServiceClient) -> None:
    fan = await service.create_user()
    payment = await service.buy(fan, 500)
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
    payload = json.dumps((await service.buy(fan, 500)).succeeded()).encode()
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


async def test_a_signed_success_for_an_intent_the_service_never_made_mints_nothing(
        service: ServiceClient) -> None:
    fan = await service.create_user()
    forged = [intent_object("pi_stranger_1", amount_cents=500, user_id=None,
                            minted_tokens=None),
              intent_object("pi_stranger_2", amount_cents=1, user_id=fan.id,
                            minted_tokens=1_000_000),
              intent_object("pi_stranger_3", amount_cents=500, user_id=fan.id,
                            minted_tokens=100, purchase_id=10**6)]
    events = [stripe_event("payment_intent.succeeded", obj) for obj in forged]
    for event in events + events[1:2]:  # and a redelivery records no second anomaly
        response = await service.deliver(event)
        assert response.status_code == 200, response.text
        assert response.json()["result"] in ("anomaly", "duplicate_event")
    totals = await service.totals()
    assert (totals["minted"], totals["webhook_anomalies"]) == (0, 3), totals
    assert await _state(service, fan) == (0, 0, "active")
    listed = await _anomalies(service)
    assert sorted(anomaly["intent_id"] for anomaly in listed) == [
        "pi_stranger_1", "pi_stranger_2", "pi_stranger_3"]
    assert {anomaly["kind"] for anomaly in listed} == {"unknown_intent"}
    assert next(a for a in listed if a["intent_id"] == "pi_stranger_2")["observed"][
        "tokens"] == 1_000_000


def _tampered(purchase: Purchase, **changes: object) -> dict[str, object]:
    """The success event of ``purchase`` with its amount, currency or metadata changed."""
    obj = intent_object(purchase.intent_id, amount_cents=purchase.amount_cents,
                        user_id=purchase.user.id, minted_tokens=purchase.minted_tokens,
                        purchase_id=purchase.purchase_id)
    metadata = dict(obj["metadata"])
    for name, value in changes.items():
        if name in ("amount", "currency"):
            obj[name] = value
        elif value is None:
            metadata.pop(name, None)
        else:
            metadata[name] = str(value)
    obj["metadata"] = metadata
    return stripe_event("payment_intent.succeeded", obj)


@pytest.mark.parametrize("changes", [
    {"amount": 1}, {"currency": "eur"}, {"tokens": 1_000_000}, {"tokens": None},
    {"user_id": "other"}, {"purchase_id": "other"},
], ids=repr)
async def test_a_success_that_disagrees_with_the_recorded_purchase_credits_nothing(
        service: ServiceClient, changes: dict[str, object]) -> None:
    fan, other = await service.create_user(), await service.create_user()
    purchase = await service.buy(fan, 1000)
    other_purchase = await service.buy(other, 100)
    resolved = {name: {"other": other.id if name == "user_id" else other_purchase.purchase_id}
                .get(str(value), value) for name, value in changes.items()}
    response = await service.deliver(_tampered(purchase, **resolved))
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "anomaly"
    assert await _state(service, fan) == (0, 0, "active")
    assert await _state(service, other) == (0, 0, "active")
    [anomaly] = await _anomalies(service)
    assert (anomaly["kind"], anomaly["intent_id"]) == ("mismatch", purchase.intent_id)
    named = {"amount": "amount_cents"}
    assert set(anomaly["expected"]) == {named.get(name, name) for name in changes}, anomaly
    # The genuine event still credits what was recorded, once.
    await _deliver_all(service, purchase.succeeded())
    assert await _state(service, fan) == (1000, 0, "active")


async def test_refunds_and_disputes_of_an_unknown_intent_change_nothing(
        service: ServiceClient) -> None:
    fan = await service.create_user()
    await service.fund(fan, 500)
    stranger = Purchase(user=fan, purchase_id=10**6, intent_id="pi_stranger_refund",
                        minted_tokens=500, amount_cents=2500)
    for event in (stranger.refunded(2500), stranger.dispute("charge.dispute.created",
                                                            "needs_response")):
        response = await service.deliver(event)
        assert response.status_code == 200, response.text
        assert response.json()["result"] == "anomaly"
    assert await _state(service, fan) == (500, 0, "active")
    assert (await service.totals())["webhook_anomalies"] == 2


async def test_a_success_that_beats_the_purchase_answer_binds_and_credits_once(
        service: ServiceClient, database_url: str) -> None:
    """The row exists before the provider is called; the webhook binds the intent to it."""
    fan = await service.create_user()
    purchase = await service.buy(fan, 500)
    early = Purchase(user=fan, purchase_id=purchase.purchase_id,
                     intent_id="pi_not_bound_yet", minted_tokens=500, amount_cents=2500)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        # As the row is between the reservation and the provider's answer.
        await conn.execute("UPDATE payments SET intent_id = NULL WHERE id = %s",
                           (purchase.purchase_id,))
    await _deliver_all(service, early.succeeded(), early.succeeded())
    assert await _state(service, fan) == (500, 0, "active")
    # A success for the purchase's real intent now names a purchase bound to another.
    response = await service.deliver(purchase.succeeded())
    assert response.json()["result"] == "anomaly"
    assert await _state(service, fan) == (500, 0, "active")


async def _anomalies(service: ServiceClient) -> list[dict[str, Any]]:
    response = await service.admin("GET", "/v1/audit/webhook-anomalies")
    assert response.status_code == 200, response.text
    return list(response.json())


async def test_a_webhook_is_5xx_while_the_database_is_down_and_applies_once_after(
        service: ServiceClient, database_url: str) -> None:
    fan = await service.create_user()
    event = (await service.buy(fan, 100)).succeeded()
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
