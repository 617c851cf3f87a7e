"""The foreign test service itself, over real HTTP, with the provider simulator and the
official Stripe SDK behind it, on its own database: it must be correct (so the harness
passing it means something), and its flaws must really be wrong.

Every test reads the end state straight from the service's tables as well, and checks
that each wallet's balance is the sum of its journal.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from harness.provider.client import ProviderClient
from tests.foreign.app import BODY_BYTES_MAX
from tests.foreign.inbox import INBOX_DELAY_MS
from tests.foreign.stack import WEBHOOK_PATH, ForeignStack, foreign_stack
from tests.foreign.wallets import BUNDLES

pytestmark = pytest.mark.integration

_QUIESCENCE_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    key: str


class Foreign:
    """A client of one running foreign service and its provider."""

    def __init__(self, stack: ForeignStack, http: httpx.AsyncClient,
                 provider: ProviderClient) -> None:
        self.stack = stack
        self.http = http
        self.provider = provider

    async def account(self, *, creator: bool = False) -> Account:
        response = await self.http.post("/admin/accounts", json={"isCreator": creator},
                                        headers={"X-Staging-Token": self.stack.staging_token})
        assert response.status_code == 201, response.text
        data = response.json()["account"]
        return Account(id=data["id"], key=data["apiKey"])

    async def call(self, who: Account, method: str, path: str, *,
                   headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return await self.http.request(method, path,
                                       headers={**(headers or {}), "X-Api-Key": who.key},
                                       **kwargs)

    async def buy(self, who: Account, tokens: int, *, key: str | None = None,
                  payment_method: str = "pm_card_visa") -> httpx.Response:
        """Buy the bundle of ``tokens`` by its name (any other value is sent as the name)."""
        bundle = BUNDLES[tokens].name if tokens in BUNDLES and type(tokens) is int else tokens
        body: dict[str, Any] = {"bundle": bundle, "paymentMethod": payment_method}
        if key is not None:
            body["clientKey"] = key
        return await self.call(who, "POST", "/purchases", json=body)

    async def fund(self, who: Account, tokens: int) -> str:
        response = await self.buy(who, tokens, key=uuid.uuid4().hex)
        assert response.status_code == 200, response.text
        await self.settle()
        return str(response.json()["payment"]["intentId"])

    async def tip(self, sender: Account, recipient: Account, tokens: Any) -> httpx.Response:
        return await self.call(sender, "POST", "/tips", json={"to": recipient.id, "tokens": tokens})

    async def balance(self, who: Account) -> tuple[str, str]:
        response = await self.call(who, "GET", "/me")
        assert response.status_code == 200, response.text
        return response.json()["balance"], response.json()["owed"]

    async def settle(self) -> None:
        """Every webhook delivered, then applied from the service's inbox."""
        await self.provider.wait_quiescent(_QUIESCENCE_TIMEOUT_S)
        async with asyncio.timeout(_QUIESCENCE_TIMEOUT_S):
            while await self.pending() > 0:
                await asyncio.sleep(0.02)

    async def pending(self) -> int:
        response = await self.http.get("/admin/inbox",
                                       headers={"X-Staging-Token": self.stack.staging_token})
        assert response.status_code == 200, response.text
        return int(response.json()["inbox"]["pending"])

    def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.stack.database_url) as conn:
            return list(conn.execute(query, params).fetchall())

    def assert_journal_balances(self) -> None:
        drift = self.rows(
            "SELECT w.owner_id FROM wallets w LEFT JOIN wallet_entries e USING (owner_id)"
            " GROUP BY w.owner_id, w.balance, w.owed"
            " HAVING w.balance <> COALESCE(SUM(e.balance_delta), 0)"
            " OR w.owed <> COALESCE(SUM(e.owed_delta), 0)")
        assert drift == [], drift


async def _running(pg_admin_url: str, flaws: tuple[str, ...] = ()) -> AsyncIterator[Foreign]:
    async with foreign_stack(pg_admin_url, flaws=flaws) as stack, \
            httpx.AsyncClient(base_url=stack.url, timeout=30.0) as http, \
            ProviderClient(stack.provider_url, control_key=stack.provider_key) as provider:
        service = Foreign(stack, http, provider)
        yield service
        await service.settle()
        service.assert_journal_balances()


@pytest.fixture
async def foreign(pg_admin_url: str) -> AsyncIterator[Foreign]:
    async for service in _running(pg_admin_url):
        yield service


# ---------------------------------------------------------------------------------------
# Accounts and authentication.


async def test_accounts_need_the_staging_token_and_take_is_creator(foreign: Foreign) -> None:
    refused = await foreign.http.post("/admin/accounts", json={"isCreator": True})
    assert refused.status_code == 403
    wrong = await foreign.http.post("/admin/accounts", json={"isCreator": True},
                                    headers={"X-Staging-Token": "stg_wrong"})
    assert wrong.status_code == 403
    bad = await foreign.http.post("/admin/accounts", json={"kind": "creator"},
                                  headers={"X-Staging-Token": foreign.stack.staging_token})
    assert bad.status_code == 400
    creator = await foreign.account(creator=True)
    assert foreign.rows("SELECT is_creator FROM wallets WHERE owner_id = %s",
                        creator.id) == [(True,)]


async def test_the_api_key_goes_bare_in_x_api_key(foreign: Foreign) -> None:
    fan = await foreign.account()
    assert (await foreign.call(fan, "GET", "/me")).status_code == 200
    as_bearer = await foreign.http.get("/me", headers={"X-Api-Key": f"Bearer {fan.key}"})
    assert as_bearer.status_code == 401
    in_authorization = await foreign.http.get("/me",
                                              headers={"Authorization": f"Bearer {fan.key}"})
    assert in_authorization.status_code == 401
    assert await foreign.balance(fan) == ("0", "0")


# ---------------------------------------------------------------------------------------
# Purchases and webhooks.


async def test_a_purchase_credits_its_bundle_with_bonus_once_through_the_webhook(
        foreign: Foreign) -> None:
    fan = await foreign.account()
    first = await foreign.buy(fan, 4000, key="buy-1")
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    again = await foreign.buy(fan, 4000, key="buy-1")
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = await foreign.buy(fan, 250, key="buy-1")
    assert other.status_code == 409
    assert other.json()["error"] == "client_key_reused"
    await foreign.settle()
    assert await foreign.balance(fan) == ("4400", "0")
    intent_id = first.json()["payment"]["intentId"]
    assert foreign.rows("SELECT count(*) FROM intent_credits WHERE intent_id = %s",
                        intent_id) == [(1,)]


async def test_a_purchase_that_is_not_a_bundle_is_refused_and_records_nothing(
        foreign: Foreign) -> None:
    fan = await foreign.account()
    for tokens in (100, 0, -250, 250.5, "250", True, 10**30, "Plus", "", None):
        response = await foreign.buy(fan, tokens, key=uuid.uuid4().hex)  # type: ignore[arg-type]
        assert response.status_code == 400, (tokens, response.text)
    assert foreign.rows("SELECT count(*) FROM stripe_intents") == [(0,)]


async def test_a_declined_card_is_402_and_credits_nothing(foreign: Foreign) -> None:
    fan = await foreign.account()
    response = await foreign.buy(fan, 250, key="k", payment_method="pm_card_chargeDeclined")
    assert response.status_code == 402, response.text
    await foreign.settle()
    assert await foreign.balance(fan) == ("0", "0")


async def test_three_d_secure_credits_after_the_card_holder_authenticates(
        foreign: Foreign) -> None:
    fan = await foreign.account()
    response = await foreign.buy(fan, 1000, key="k",
                                 payment_method="pm_card_threeDSecure2Required")
    assert response.status_code == 200, response.text
    assert response.json()["payment"]["state"] == "requires_action"
    await foreign.settle()
    assert await foreign.balance(fan) == ("0", "0")
    await foreign.provider.authenticate(response.json()["payment"]["intentId"])
    await foreign.settle()
    assert await foreign.balance(fan) == ("1000", "0")


async def test_a_redelivered_success_credits_once(foreign: Foreign) -> None:
    fan = await foreign.account()
    intent_id = await foreign.fund(fan, 1000)
    envelope = await foreign.provider.envelope(intent_id=intent_id,
                                               event_type="payment_intent.succeeded")
    for _ in range(3):
        response = await foreign.http.post(WEBHOOK_PATH, content=envelope["body"],
                                           headers=envelope["headers"])
        assert response.status_code == 202, response.text  # queued, applied later
    await foreign.settle()
    assert await foreign.balance(fan) == ("1000", "0")


@pytest.mark.parametrize("variant", ["unsigned", "wrong_secret", "tampered", "stale"])
async def test_a_forged_or_stale_webhook_is_refused_and_credits_nothing(
        foreign: Foreign, variant: str) -> None:
    fan = await foreign.account()
    response = await foreign.buy(fan, 250, key="k",
                                 payment_method="pm_card_threeDSecure2Required")
    intent_id = response.json()["payment"]["intentId"]
    envelope = await foreign.provider.envelope(intent_id=intent_id,
                                               event_type="payment_intent.succeeded",
                                               variant=variant)
    answer = await foreign.http.post(WEBHOOK_PATH, content=envelope["body"],
                                     headers=envelope["headers"])
    assert answer.status_code == 400, answer.text
    assert await foreign.balance(fan) == ("0", "0")


async def test_an_intent_it_never_created_credits_nothing(foreign: Foreign) -> None:
    fan = await foreign.account()
    await foreign.fund(fan, 250)
    # Someone else paid the provider directly, naming the fan in the metadata: the success
    # webhook that follows is genuinely signed, and about an intent the service never made.
    paid = await foreign.http.post(
        f"{foreign.stack.provider_url}/v1/payment_intents",
        headers={"Authorization": "Bearer sk_test_elsewhere"},
        data={"amount": "4000", "currency": "usd", "confirm": "true",
              "payment_method": "pm_card_visa", "metadata[ownerId]": fan.id,
              "metadata[baseTokens]": "4000", "metadata[bonusTokens]": "400"})
    assert paid.status_code == 200, paid.text
    await foreign.settle()
    assert await foreign.balance(fan) == ("250", "0")


# ---------------------------------------------------------------------------------------
# Refunds and disputes.


async def test_partial_refunds_take_the_cumulative_share_and_the_shortfall_is_owed(
        foreign: Foreign) -> None:
    fan, creator = await foreign.account(), await foreign.account(creator=True)
    intent_id = await foreign.fund(fan, 4000)  # 4400 tokens for 4000 cents
    assert (await foreign.tip(fan, creator, 4000)).status_code == 200
    await foreign.provider.refund(intent_id, 1000)  # floor(4400 * 1000 / 4000) = 1100
    await foreign.settle()
    assert await foreign.balance(fan) == ("0", "700")
    await foreign.provider.refund(intent_id, 1000)  # cumulative 2000: 2200 in all
    await foreign.settle()
    assert await foreign.balance(fan) == ("0", "1800")
    envelope = await foreign.provider.envelope(intent_id=intent_id,
                                               event_type="charge.refunded")
    replayed = await foreign.http.post(WEBHOOK_PATH, content=envelope["body"],
                                       headers=envelope["headers"])
    assert replayed.status_code == 202
    await foreign.settle()
    assert await foreign.balance(fan) == ("0", "1800")
    await foreign.fund(fan, 1000)  # a credit repays what is owed first
    assert await foreign.balance(fan) == ("0", "800")


async def test_a_dispute_takes_everything_and_a_won_one_gives_it_back(foreign: Foreign) -> None:
    fan = await foreign.account()
    won = await foreign.fund(fan, 1000)
    lost = await foreign.fund(fan, 250)
    won_dispute = await foreign.provider.open_dispute(won)
    lost_dispute = await foreign.provider.open_dispute(lost)
    await foreign.settle()
    assert await foreign.balance(fan) == ("0", "0")
    await foreign.provider.close_dispute(str(won_dispute["id"]), "won")
    await foreign.provider.close_dispute(str(lost_dispute["id"]), "lost")
    await foreign.settle()
    assert await foreign.balance(fan) == ("1000", "0")


# ---------------------------------------------------------------------------------------
# Tips.


async def test_a_tip_moves_tokens_and_one_the_balance_cannot_cover_is_409(
        foreign: Foreign) -> None:
    fan, creator = await foreign.account(), await foreign.account(creator=True)
    await foreign.fund(fan, 250)
    ok = await foreign.tip(fan, creator, 200)
    assert ok.status_code == 200, ok.text
    assert ok.json()["balance"] == "50"
    short = await foreign.tip(fan, creator, 51)
    assert short.status_code == 409
    assert short.json()["error"] == "insufficient_funds"
    assert await foreign.balance(fan) == ("50", "0")
    assert await foreign.balance(creator) == ("200", "0")


async def test_a_retried_tip_pays_twice_as_it_takes_no_key(foreign: Foreign) -> None:
    fan, creator = await foreign.account(), await foreign.account(creator=True)
    await foreign.fund(fan, 250)
    body = {"to": creator.id, "tokens": 50, "clientKey": "same"}
    for _ in range(2):
        assert (await foreign.call(fan, "POST", "/tips", json=body)).status_code == 200
    assert await foreign.balance(creator) == ("100", "0")


async def test_bad_tips_are_refused_with_a_4xx_and_change_nothing(foreign: Foreign) -> None:
    fan, creator = await foreign.account(), await foreign.account(creator=True)
    await foreign.fund(fan, 250)
    for tokens in (-50, 0, 10**30, 1.5, "50", None, True):
        response = await foreign.tip(fan, creator, tokens)
        assert response.status_code == 400, (tokens, response.text)
    assert (await foreign.tip(fan, fan, 10)).status_code == 400
    unknown = Account(id="acct_nobody", key="")
    assert (await foreign.tip(fan, unknown, 10)).status_code == 404
    huge = json.dumps({"to": creator.id, "tokens": 1, "pad": "x" * BODY_BYTES_MAX})
    too_large = await foreign.call(fan, "POST", "/tips", content=huge,
                                   headers={"Content-Type": "application/json"})
    assert too_large.status_code == 413
    not_json = await foreign.call(fan, "POST", "/tips", content=b"{nope")
    assert not_json.status_code == 400
    assert await foreign.balance(fan) == ("250", "0")
    assert await foreign.balance(creator) == ("0", "0")


async def test_tips_both_ways_at_once_neither_deadlock_nor_lose_tokens(
        foreign: Foreign) -> None:
    one, two = await foreign.account(), await foreign.account()
    await foreign.fund(one, 1000)
    await foreign.fund(two, 1000)
    answers = await asyncio.gather(*(foreign.tip(one, two, 5) for _ in range(20)),
                                   *(foreign.tip(two, one, 5) for _ in range(20)))
    assert [answer.status_code for answer in answers] == [200] * 40
    assert await foreign.balance(one) == ("1000", "0")
    assert await foreign.balance(two) == ("1000", "0")


# ---------------------------------------------------------------------------------------
# Video sessions, billed per minute.


async def _session(foreign: Foreign, fan: Account, creator: Account, per_minute: int) -> str:
    response = await foreign.call(fan, "POST", "/sessions",
                                  json={"creator": creator.id, "perMinute": per_minute})
    assert response.status_code == 200, response.text
    return str(response.json()["session"]["id"])


async def test_a_minute_is_billed_once_and_a_replay_says_billed_false(foreign: Foreign) -> None:
    fan, creator = await foreign.account(), await foreign.account(creator=True)
    await foreign.fund(fan, 250)
    session = await _session(foreign, fan, creator, 100)
    path = f"/sessions/{session}/minutes"
    first = await foreign.call(fan, "POST", path, json={"minute": 0, "clientKey": "m0"})
    assert first.status_code == 200
    assert first.json()["billed"] is True
    assert first.json()["balance"] == "150"
    for key in ("m0", "another"):
        replay = await foreign.call(fan, "POST", path, json={"minute": 0, "clientKey": key})
        assert replay.status_code == 200
        assert replay.json()["billed"] is False
    reused = await foreign.call(fan, "POST", path, json={"minute": 1, "clientKey": "m0"})
    assert reused.status_code == 409
    assert await foreign.balance(creator) == ("100", "0")


async def test_minutes_stop_when_funds_run_out(foreign: Foreign) -> None:
    fan, creator = await foreign.account(), await foreign.account(creator=True)
    await foreign.fund(fan, 250)
    session = await _session(foreign, fan, creator, 100)
    path = f"/sessions/{session}/minutes"
    statuses = [(await foreign.call(fan, "POST", path,
                                    json={"minute": minute, "clientKey": f"k{minute}"}))
                .status_code for minute in range(4)]
    assert statuses == [200, 200, 422, 410]
    assert await foreign.balance(fan) == ("50", "0")


async def test_only_the_fan_of_a_session_may_bill_or_close_it(foreign: Foreign) -> None:
    fan, other, creator = (await foreign.account(), await foreign.account(),
                           await foreign.account(creator=True))
    await foreign.fund(other, 250)
    session = await _session(foreign, fan, creator, 10)
    billed = await foreign.call(other, "POST", f"/sessions/{session}/minutes",
                                json={"minute": 0, "clientKey": "x"})
    assert billed.status_code == 403
    closed = await foreign.call(other, "POST", f"/sessions/{session}/close")
    assert closed.status_code == 403
    assert (await foreign.call(fan, "POST", f"/sessions/{session}/close")).status_code == 200
    assert await foreign.balance(other) == ("250", "0")


async def test_one_client_key_used_by_two_accounts_is_two_requests(foreign: Foreign) -> None:
    one, two = await foreign.account(), await foreign.account()
    first = await foreign.buy(one, 250, key="shared")
    second = await foreign.buy(two, 1000, key="shared")
    assert first.status_code == second.status_code == 200
    assert first.json()["payment"]["intentId"] != second.json()["payment"]["intentId"]
    await foreign.settle()
    assert await foreign.balance(one) == ("250", "0")
    assert await foreign.balance(two) == ("1000", "0")


# ---------------------------------------------------------------------------------------
# The schema a deployment guide would ask an operator to verify.


async def test_schema_has_bigint_balances_a_check_and_a_plain_unique_intent(
        foreign: Foreign) -> None:
    assert foreign.rows("SELECT data_type FROM information_schema.columns WHERE"
                        " table_name = 'wallets' AND column_name = 'balance'") == [("bigint",)]
    checks = foreign.rows("SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                          " WHERE conrelid = 'wallets'::regclass AND contype = 'c'")
    assert ("CHECK ((balance >= 0))",) in checks
    unique = foreign.rows("SELECT condeferrable FROM pg_constraint"
                          " WHERE conname = 'stripe_intents_intent_id_key'")
    assert unique == [(False,)]


# ---------------------------------------------------------------------------------------
# The flaws are really wrong: each shows here what the correct service does not do.


async def test_flaw_credit_every_delivery_credits_a_redelivery(pg_admin_url: str) -> None:
    async for foreign in _running(pg_admin_url, ("credit_every_delivery",)):
        fan = await foreign.account()
        intent_id = await foreign.fund(fan, 250)
        envelope = await foreign.provider.envelope(intent_id=intent_id,
                                                   event_type="payment_intent.succeeded")
        await foreign.http.post(WEBHOOK_PATH, content=envelope["body"], headers=envelope["headers"])
        await foreign.settle()
        assert await foreign.balance(fan) == ("500", "0")


async def test_flaw_minute_billed_again_bills_a_replayed_minute(pg_admin_url: str) -> None:
    async for foreign in _running(pg_admin_url, ("minute_billed_again",)):
        fan, creator = await foreign.account(), await foreign.account(creator=True)
        await foreign.fund(fan, 250)
        session = await _session(foreign, fan, creator, 100)
        for key in ("a", "b"):
            await foreign.call(fan, "POST", f"/sessions/{session}/minutes",
                               json={"minute": 0, "clientKey": key})
        assert await foreign.balance(fan) == ("50", "0")


async def test_flaw_negative_tip_accepted_moves_tokens_backwards(pg_admin_url: str) -> None:
    async for foreign in _running(pg_admin_url, ("negative_tip_accepted",)):
        fan, creator = await foreign.account(), await foreign.account(creator=True)
        await foreign.fund(creator, 250)
        assert (await foreign.tip(fan, creator, -100)).status_code == 200
        assert await foreign.balance(fan) == ("100", "0")


async def test_flaw_global_client_keys_replays_another_accounts_purchase(
        pg_admin_url: str) -> None:
    async for foreign in _running(pg_admin_url, ("global_client_keys",)):
        one, two = await foreign.account(), await foreign.account()
        first = await foreign.buy(one, 250, key="shared")
        second = await foreign.buy(two, 1000, key="shared")
        assert second.json() == first.json()


def test_every_flaw_has_the_signature_of_the_operation_it_replaces() -> None:
    import inspect

    from tests.foreign.flaws import FLAWS
    from tests.foreign.operations import OPERATIONS

    for flaw in FLAWS.values():
        correct = inspect.signature(OPERATIONS[flaw.operation]).parameters
        buggy = inspect.signature(flaw.replacement).parameters
        assert list(buggy) == list(correct), flaw.name
        assert flaw.caught_by, flaw.name


async def test_a_webhook_is_answered_at_once_and_applied_from_the_inbox_later(
        foreign: Foreign) -> None:
    fan = await foreign.account()
    intent_id = await foreign.fund(fan, 250)
    await foreign.provider.refund(intent_id, 100)
    await foreign.settle()
    assert await foreign.pending() == 0
    assert await foreign.balance(fan) == ("150", "0")
    waits = foreign.rows("SELECT (extract(epoch FROM applied_at - received_at) * 1000)::int"
                         " FROM webhook_inbox ORDER BY inbox_no")
    assert len(waits) == 2  # the success and the refund, each applied once
    assert all(wait >= INBOX_DELAY_MS for (wait,) in waits), waits
    inbox = await foreign.http.get("/admin/inbox")
    assert inbox.status_code == 403
