"""Tips and call charges over real HTTP on a real PostgreSQL: races, replays, debt.

Balances are funded only through signed ``payment_intent.succeeded`` webhooks. After every
test the books must balance: zero drift, every ledger transaction sums to zero, and
minted − clawed back == balances − debts.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import psycopg
import pytest

from reference_impl.testing import (
    ServiceClient,
    User,
    charge_object,
    stripe_event,
)
from tests.integration.reference_stack import service_with_provider

pytestmark = pytest.mark.integration

ADMIN_KEY = "adm_spends_0123456789"
# Requests outstanding at once in the races below: twice the harness's default
# ops_in_flight_max, and more than the pool has connections, so requests queue for them.
IN_FLIGHT_MAX = 64
SECRET = "whsec_spends"


@pytest.fixture
async def service(database_url: str) -> AsyncIterator[ServiceClient]:
    async with service_with_provider(database_url, admin_key=ADMIN_KEY, webhook_secret=SECRET,
                                     pool_size_max=30) as client:
        yield client


async def test_two_concurrent_tips_of_300_from_500_exactly_one_succeeds(
        service: ServiceClient) -> None:
    fan, creator = await service.create_user(), await service.create_user("creator")
    await service.fund(fan, 500)
    answers = await asyncio.gather(service.tip(fan, creator, 300), service.tip(fan, creator, 300))
    assert sorted(r.status_code for r in answers) == [201, 402]
    refused = next(r for r in answers if r.status_code == 402)
    assert refused.json()["error"]["code"] == "insufficient_funds"
    assert (await service.me(fan))["balance"] == 200
    assert (await service.me(creator))["balance"] == 300


async def test_twenty_concurrent_tips_spend_exactly_what_the_balance_covers(
        service: ServiceClient) -> None:
    fan, creator = await service.create_user(), await service.create_user("creator")
    await service.fund(fan, 1000)
    answers = await asyncio.gather(*(service.tip(fan, creator, 60) for _ in range(20)))
    assert Counter(r.status_code for r in answers) == Counter({201: 16, 402: 4})
    assert (await service.me(fan))["balance"] == 1000 - 16 * 60
    balances = sorted(r.json()["balance"] for r in answers if r.status_code == 201)
    assert balances == [1000 - 60 * n for n in range(16, 0, -1)]  # each answer its own state


async def test_two_users_tipping_each_other_200_times_at_once_conserve_tokens(
        service: ServiceClient) -> None:
    alice, bob = await service.create_user("creator"), await service.create_user("creator")
    await service.fund(alice, 1000)
    await service.fund(bob, 1000)
    in_flight = asyncio.Semaphore(IN_FLIGHT_MAX)

    async def tip(sender: User, recipient: User, amount: int) -> httpx.Response:
        async with in_flight:
            return await service.tip(sender, recipient, amount)

    calls = []
    for _ in range(200):
        calls += [tip(alice, bob, 3), tip(bob, alice, 5)]
    answers = await asyncio.gather(*calls)
    statuses = Counter(r.status_code for r in answers)
    assert set(statuses) <= {201, 402}, statuses
    alice_sent = 3 * sum(1 for r in answers[0::2] if r.status_code == 201)
    bob_sent = 5 * sum(1 for r in answers[1::2] if r.status_code == 201)
    assert (await service.me(alice))["balance"] == 1000 - alice_sent + bob_sent
    assert (await service.me(bob))["balance"] == 1000 - bob_sent + alice_sent


async def test_a_replay_returns_the_stored_answer_and_applies_nothing(
        service: ServiceClient) -> None:
    fan, creator = await service.create_user(), await service.create_user("creator")
    await service.fund(fan, 500)
    key = uuid.uuid4().hex
    first = await service.tip(fan, creator, 100, key=key)
    again = await service.tip(fan, creator, 100, key=key)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() == {"tip_id": first.json()["tip_id"], "balance": 400}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await service.me(fan))["balance"] == 400


async def test_concurrent_requests_with_one_key_apply_once_and_answer_alike(
        service: ServiceClient) -> None:
    fan, creator = await service.create_user(), await service.create_user("creator")
    await service.fund(fan, 500)
    key = uuid.uuid4().hex
    answers = await asyncio.gather(*(service.tip(fan, creator, 70, key=key) for _ in range(10)))
    assert {r.status_code for r in answers} == {201}
    assert len({r.text for r in answers}) == 1
    assert (await service.me(fan))["balance"] == 430


async def test_a_key_reused_with_another_body_is_409_and_applies_nothing(
        service: ServiceClient) -> None:
    fan, creator = await service.create_user(), await service.create_user("creator")
    await service.fund(fan, 500)
    key = uuid.uuid4().hex
    assert (await service.tip(fan, creator, 5, key=key)).status_code == 201
    conflict = await service.tip(fan, creator, 6, key=key)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    assert (await service.me(fan))["balance"] == 495


async def test_a_refused_tip_replays_as_refused_even_after_funding(
        service: ServiceClient) -> None:
    fan, creator = await service.create_user(), await service.create_user("creator")
    key = uuid.uuid4().hex
    assert (await service.tip(fan, creator, 50, key=key)).status_code == 402
    await service.fund(fan, 100)
    assert (await service.tip(fan, creator, 50, key=key)).status_code == 402
    assert (await service.me(fan))["balance"] == 100


async def test_keys_are_scoped_per_user(service: ServiceClient) -> None:
    alice, bob = await service.create_user(), await service.create_user()
    creator = await service.create_user("creator")
    await service.fund(alice, 100)
    await service.fund(bob, 100)
    assert (await service.tip(alice, creator, 10, key="shared")).status_code == 201
    assert (await service.tip(bob, creator, 20, key="shared")).status_code == 201
    assert (await service.me(creator))["balance"] == 30


@pytest.mark.parametrize("recipient", [10**12, 1, 2])
async def test_tips_to_unknown_or_system_accounts_are_404(
        service: ServiceClient, recipient: int) -> None:
    fan = await service.create_user()
    await service.fund(fan, 100)
    response = await service.tip(fan, recipient, 10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert (await service.me(fan))["balance"] == 100


async def test_a_tip_received_in_debt_pays_the_debt_first(service: ServiceClient) -> None:
    fan, creator, patron = (await service.create_user(), await service.create_user("creator"),
                            await service.create_user())
    intent_id = await service.fund(fan, 500)
    assert (await service.tip(fan, creator, 400)).status_code == 201
    refund = charge_object(intent_id, amount_cents=2500, refunded_cents=2500, user_id=fan.id,
                           minted_tokens=500)
    assert (await service.deliver(stripe_event("charge.refunded", refund))).status_code == 200
    assert await service.me(fan) == {"id": fan.id, "balance": 0, "debt": 400, "status": "debt"}
    await service.fund(patron, 500)
    assert (await service.tip(patron, fan, 450)).status_code == 201
    assert await service.me(fan) == {"id": fan.id, "balance": 50, "debt": 0, "status": "active"}


# -- calls -----------------------------------------------------------------------------


async def _open_call(service: ServiceClient, fan: User, creator: User, rate: int) -> int:
    response = await service.call(fan, "POST", "/v1/calls", key=uuid.uuid4().hex,
                                  json={"creator": creator.id, "rate_per_minute": rate})
    assert response.status_code == 201, response.text
    return int(response.json()["call_id"])


async def test_a_call_charges_each_minute_once_and_ends_when_funds_run_out(
        service: ServiceClient) -> None:
    fan, creator = await service.create_user(), await service.create_user("creator")
    await service.fund(fan, 100)
    call_id = await _open_call(service, fan, creator, 40)
    charges = f"/v1/calls/{call_id}/charges"
    first = await service.call(fan, "POST", charges, key=uuid.uuid4().hex, json={"minute": 1})
    again = await service.call(fan, "POST", charges, key=uuid.uuid4().hex, json={"minute": 1})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() == {"charge_id": first.json()["charge_id"],
                                            "balance": 60}
    second = await service.call(fan, "POST", charges, key=uuid.uuid4().hex, json={"minute": 2})
    assert second.json()["balance"] == 20
    broke = await service.call(fan, "POST", charges, key=uuid.uuid4().hex, json={"minute": 3})
    assert broke.status_code == 402
    assert broke.json()["error"]["code"] == "insufficient_funds"
    after = await service.call(fan, "POST", charges, key=uuid.uuid4().hex, json={"minute": 4})
    assert after.status_code == 409
    assert after.json()["error"]["code"] == "call_ended"
    assert (await service.me(fan))["balance"] == 20
    assert (await service.me(creator))["balance"] == 80


async def test_concurrent_charges_of_one_minute_apply_once(service: ServiceClient) -> None:
    fan, creator = await service.create_user(), await service.create_user("creator")
    await service.fund(fan, 500)
    call_id = await _open_call(service, fan, creator, 25)
    answers = await asyncio.gather(*(
        service.call(fan, "POST", f"/v1/calls/{call_id}/charges", key=uuid.uuid4().hex,
                     json={"minute": 7}) for _ in range(10)))
    assert {r.status_code for r in answers} == {201}
    assert len({r.json()["charge_id"] for r in answers}) == 1
    assert (await service.me(fan))["balance"] == 475


async def test_only_the_calls_fan_may_charge_or_end_it_and_end_stops_charges(
        service: ServiceClient) -> None:
    fan, creator = await service.create_user(), await service.create_user("creator")
    await service.fund(fan, 500)
    call_id = await _open_call(service, fan, creator, 10)
    stranger = await service.call(creator, "POST", f"/v1/calls/{call_id}/charges",
                                  key=uuid.uuid4().hex, json={"minute": 1})
    assert stranger.status_code == 403
    assert (await service.call(creator, "POST", f"/v1/calls/{call_id}/end")).status_code == 403
    ended = await service.call(fan, "POST", f"/v1/calls/{call_id}/end")
    assert ended.status_code == 200
    assert (await service.call(fan, "POST", f"/v1/calls/{call_id}/end")).status_code == 200
    late = await service.call(fan, "POST", f"/v1/calls/{call_id}/charges",
                              key=uuid.uuid4().hex, json={"minute": 1})
    assert late.status_code == 409
    assert (await service.me(fan))["balance"] == 500


async def test_a_tip_a_charge_and_a_tip_of_400_from_1000_two_succeed(
        service: ServiceClient) -> None:
    fan, creator = await service.create_user(), await service.create_user("creator")
    await service.fund(fan, 1000)
    call_id = await _open_call(service, fan, creator, 400)
    answers = await asyncio.gather(
        service.tip(fan, creator, 400),
        service.call(fan, "POST", f"/v1/calls/{call_id}/charges", key=uuid.uuid4().hex,
                     json={"minute": 1}),
        service.tip(fan, creator, 400))
    assert Counter(r.status_code for r in answers) == Counter({201: 2, 402: 1})
    assert (await service.me(fan))["balance"] == 200


async def test_spends_right_after_the_database_sessions_are_killed_all_succeed(
        service: ServiceClient, database_url: str) -> None:
    fan, creator = await service.create_user(), await service.create_user("creator")
    await service.fund(fan, 500)
    await asyncio.gather(*(service.me(fan) for _ in range(10)))  # fill the pool
    name = database_url.rsplit("/", 1)[-1]
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
        cursor = await admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        killed = await cursor.fetchone()
    assert killed is not None and killed[0] >= 1
    answers = await asyncio.gather(*(service.tip(fan, creator, 10) for _ in range(10)))
    assert [r.status_code for r in answers] == [201] * 10, [r.text for r in answers]
    assert (await service.me(fan))["balance"] == 400


async def test_a_tip_stores_the_status_code_of_its_answer_under_its_key(
        service: ServiceClient, database_url: str) -> None:
    from reference_impl.errors import STATUS_BY_RESULT, Result

    fan, creator = await service.create_user(), await service.create_user("creator")
    await service.fund(fan, 100)
    keys = {Result.CREATED: "paid", Result.INSUFFICIENT_FUNDS: "short",
            Result.NOT_FOUND: "nobody"}
    assert (await service.tip(fan, creator, 60, key=keys[Result.CREATED])).status_code == 201
    assert (await service.tip(fan, creator, 60,
                              key=keys[Result.INSUFFICIENT_FUNDS])).status_code == 402
    assert (await service.tip(fan, 10**12, 1, key=keys[Result.NOT_FOUND])).status_code == 404
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT key, result, status_code FROM idempotency_keys"
            " WHERE account_id = %s AND operation = 'tip'",
            (fan.id,))
        stored = {str(row[0]): (str(row[1]), int(row[2])) for row in await cursor.fetchall()}
    assert stored == {key: (str(result), STATUS_BY_RESULT[result])
                      for result, key in keys.items()}
