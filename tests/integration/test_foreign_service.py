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
from tests.foreign.stack import PROFILE_PATH, WEBHOOK_PATH, ForeignStack, foreign_stack
from tests.foreign.wallets import BUNDLES, PLATFORM_OWNER_ID, gift_fee

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

    def platform_balance(self) -> int:
        """The platform wallet's balance, read from its table (it has no key to ask with)."""
        [(balance,)] = self.rows("SELECT balance FROM wallets WHERE owner_id = %s",
                                 PLATFORM_OWNER_ID)
        return int(balance)

    def states(self) -> dict[str, str]:
        """Every wallet's state, by owner id."""
        return {str(owner): str(state)
                for owner, state in self.rows("SELECT owner_id, state FROM wallets")}

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

    def assert_states_follow_owed(self) -> None:
        wrong = self.rows("SELECT owner_id, owed, state FROM wallets"
                          " WHERE state <> CASE WHEN owed > 0 THEN 'owing' ELSE 'ok' END")
        assert wrong == [], wrong


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
        service.assert_states_follow_owed()


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


async def test_the_state_is_owing_exactly_while_something_is_owed(foreign: Foreign) -> None:
    fan, creator = await foreign.account(), await foreign.account(creator=True)
    assert foreign.states()[fan.id] == "ok"
    refunded = await foreign.fund(fan, 250)
    assert (await foreign.tip(fan, creator, 200)).status_code == 200
    await foreign.provider.refund(refunded)
    await foreign.settle()
    assert await foreign.balance(fan) == ("0", "200")
    assert foreign.states()[fan.id] == "owing"
    await foreign.fund(fan, 250)  # repays the 200 first
    assert await foreign.balance(fan) == ("50", "0")
    assert foreign.states()[fan.id] == "ok"
    disputed = await foreign.fund(fan, 1000)
    assert (await foreign.tip(fan, creator, 1000)).status_code == 200
    dispute = await foreign.provider.open_dispute(disputed)
    await foreign.settle()
    assert await foreign.balance(fan) == ("0", "950")
    assert foreign.states()[fan.id] == "owing"
    await foreign.provider.close_dispute(str(dispute["id"]), "won")
    await foreign.settle()
    assert await foreign.balance(fan) == ("50", "0")
    assert foreign.states()[fan.id] == "ok"
    foreign.assert_states_follow_owed()


async def test_schema_keeps_the_state_to_ok_and_owing(foreign: Foreign) -> None:
    [(default,)] = foreign.rows("SELECT column_default FROM information_schema.columns"
                                " WHERE table_name = 'wallets' AND column_name = 'state'")
    assert default == "'ok'::text"
    fan = await foreign.account()
    with pytest.raises(psycopg.errors.CheckViolation):
        foreign.rows("UPDATE wallets SET state = 'debt' WHERE owner_id = %s RETURNING 1",
                     fan.id)


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
    assert await foreign.balance(creator) == ("160", "0")  # 200 less its 20% fee


async def test_a_retried_tip_pays_twice_as_it_takes_no_key(foreign: Foreign) -> None:
    fan, creator = await foreign.account(), await foreign.account(creator=True)
    await foreign.fund(fan, 250)
    body = {"to": creator.id, "tokens": 50, "clientKey": "same"}
    for _ in range(2):
        assert (await foreign.call(fan, "POST", "/tips", json=body)).status_code == 200
    assert await foreign.balance(creator) == ("80", "0")  # twice 50 less its fee of 10


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
    # Each sent 20 tips of 5 and got 20 of 4: the platform holds 40 fees of 1.
    assert await foreign.balance(one) == ("980", "0")
    assert await foreign.balance(two) == ("980", "0")
    assert foreign.platform_balance() == 40


# The fee by hand for tips of 1 to 10 tokens: ceil(n / 5) to the platform, floor(0.8 * n)
# to the recipient.
_FEE_BY_TIP = {1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 2, 7: 2, 8: 2, 9: 2, 10: 2}
_SHARE_BY_TIP = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 5, 8: 6, 9: 7, 10: 8}


@pytest.mark.parametrize("tokens", sorted(_FEE_BY_TIP))
def test_gift_fee_is_a_fifth_rounded_up_and_leaves_the_recipient_the_floor_of_80_percent(
        tokens: int) -> None:
    assert gift_fee(tokens) == _FEE_BY_TIP[tokens]
    assert tokens - gift_fee(tokens) == _SHARE_BY_TIP[tokens] == tokens * 4 // 5


def test_gift_fee_of_large_and_non_positive_tips() -> None:
    assert gift_fee(100) == 20
    assert gift_fee(101) == 21
    assert gift_fee(10**9) == 2 * 10**8
    assert gift_fee(10**9 - 1) == 2 * 10**8  # 199999999.8, rounded up
    assert gift_fee(0) == 0
    assert gift_fee(-100) == 0


async def test_a_tip_pays_the_recipient_80_percent_and_the_platform_the_fee(
        foreign: Foreign) -> None:
    fan, creator = await foreign.account(), await foreign.account(creator=True)
    await foreign.fund(fan, 250)
    sent = 0
    for tokens in (1, 7, 10, 33):
        answer = await foreign.tip(fan, creator, tokens)
        assert answer.status_code == 200, answer.text
        sent += tokens
        assert answer.json()["balance"] == str(250 - sent)  # the answer is the sender's
    assert await foreign.balance(fan) == (str(250 - 51), "0")
    assert await foreign.balance(creator) == (str(0 + 5 + 8 + 26), "0")
    assert foreign.platform_balance() == 1 + 2 + 2 + 7
    # Each tip journals its three sides, which cancel; the tip of 1 is all fee.
    entries = foreign.rows(
        "SELECT t.tokens, e.owner_id = %s, e.reason, e.balance_delta FROM tips t"
        " JOIN wallet_entries e ON e.ref = 'tip:' || t.tip_no ORDER BY t.tip_no, e.entry_no",
        PLATFORM_OWNER_ID)
    assert [(tokens, reason, delta) for tokens, _, reason, delta in entries] == [
        (1, "tip_out", -1), (1, "tip_fee", 1),
        (7, "tip_out", -7), (7, "tip_in", 5), (7, "tip_fee", 2),
        (10, "tip_out", -10), (10, "tip_in", 8), (10, "tip_fee", 2),
        (33, "tip_out", -33), (33, "tip_in", 26), (33, "tip_fee", 7)]
    assert all(to_platform == (reason == "tip_fee") for _, to_platform, reason, _ in entries)
    [(minted, held)] = foreign.rows(
        "SELECT (SELECT SUM(balance_delta) FROM wallet_entries WHERE reason = 'purchase'),"
        " (SELECT SUM(balance) FROM wallets)")
    assert held == minted == 250


async def test_a_tip_to_a_wallet_in_debt_repays_the_debt_from_the_share_first(
        foreign: Foreign) -> None:
    fan, other, creator = (await foreign.account(), await foreign.account(),
                           await foreign.account(creator=True))
    intent_id = await foreign.fund(fan, 250)
    await foreign.fund(other, 1000)
    assert (await foreign.tip(fan, creator, 200)).status_code == 200
    await foreign.provider.refund(intent_id)  # takes 250 of a balance of 50: 200 owed
    await foreign.settle()
    assert await foreign.balance(fan) == ("0", "200")
    assert (await foreign.tip(other, fan, 300)).status_code == 200  # a share of 240
    assert await foreign.balance(fan) == ("40", "0")
    assert foreign.platform_balance() == 40 + 60


async def test_the_platform_wallet_is_made_once_and_is_no_creator(foreign: Foreign) -> None:
    def platform() -> list[tuple[Any, ...]]:
        return foreign.rows("SELECT is_creator, api_key_sha256, balance, owed, state"
                            " FROM wallets WHERE owner_id = %s", PLATFORM_OWNER_ID)

    [(is_creator, key_sha256, balance, owed, state)] = before = platform()
    assert (is_creator, balance, owed, state) == (False, 0, 0, "ok")
    assert len(key_sha256) == 64
    int(key_sha256, 16)  # a digest like any other, of a key nobody was given
    schema = PROFILE_PATH.with_name("schema.sql")
    with psycopg.connect(foreign.stack.database_url) as conn:
        conn.execute(schema.read_text(encoding="utf-8").encode())  # as every start does
    assert platform() == before


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
    assert await foreign.balance(creator) == ("100", "0")  # minutes carry no fee
    assert foreign.platform_balance() == 0


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


async def test_flaw_fee_rounds_both_up_pays_out_a_token_more_than_was_sent(
        pg_admin_url: str) -> None:
    async for foreign in _running(pg_admin_url, ("fee_rounds_both_up",)):
        fan, creator = await foreign.account(), await foreign.account(creator=True)
        await foreign.fund(fan, 250)
        assert (await foreign.tip(fan, creator, 7)).status_code == 200  # 6 and 2 of 7
        assert (await foreign.tip(fan, creator, 10)).status_code == 200  # 8 and 2: right
        assert (await foreign.tip(fan, creator, 1)).status_code == 200  # 1 and 1 of 1
        assert await foreign.balance(fan) == ("232", "0")
        assert await foreign.balance(creator) == ("15", "0")
        assert foreign.platform_balance() == 5
        [(held,)] = foreign.rows("SELECT SUM(balance) FROM wallets")
        assert held == 250 + 2  # two tokens made from nothing


async def test_flaw_owing_state_kept_leaves_a_wallet_a_won_dispute_repaid_owing(
        pg_admin_url: str) -> None:
    async for foreign in _running(pg_admin_url, ("owing_state_kept",)):
        fan, creator = await foreign.account(), await foreign.account(creator=True)
        disputed = await foreign.fund(fan, 250)
        assert (await foreign.tip(fan, creator, 200)).status_code == 200
        dispute = await foreign.provider.open_dispute(disputed)
        await foreign.settle()
        assert await foreign.balance(fan) == ("0", "200")
        assert foreign.states()[fan.id] == "owing"
        await foreign.provider.close_dispute(str(dispute["id"]), "won")
        await foreign.settle()
        assert await foreign.balance(fan) == ("50", "0")  # the debt is repaid...
        assert foreign.states()[fan.id] == "owing"  # ...and the state still says owing


async def test_flaw_bundle_bonus_dropped_credits_mega_without_its_bonus(
        pg_admin_url: str) -> None:
    async for foreign in _running(pg_admin_url, ("bundle_bonus_dropped",)):
        fan = await foreign.account()
        intent_id = await foreign.fund(fan, 4000)
        envelope = await foreign.provider.envelope(intent_id=intent_id,
                                                   event_type="payment_intent.succeeded")
        metadata = json.loads(envelope["body"])["data"]["object"]["metadata"]
        assert (metadata["baseTokens"], metadata["bonusTokens"]) == ("4000", "400")
        assert await foreign.balance(fan) == ("4000", "0")
        assert foreign.rows("SELECT tokens FROM intent_credits WHERE intent_id = %s",
                            intent_id) == [(4000,)]


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
