"""Faults against the real local stack: the flaws only a fault reveals lose or double work,
and the correct service, under the same fault, loses and doubles nothing.

Each test runs once against a flaw and once against the correct service, on a stack of
its own, over real HTTP. Every kill is triggered from a point the test observes, never
by a sleep racing the service: for an answer sent before its commit, the answer itself
(the commit follows it by ``_deferred.COMMIT_DELAY_S``); for an effect committed before
its key, the effect becoming visible (the key follows by ``KEY_DELAY_S``); for a webhook
acknowledged before its credit commits, the provider having nothing left to deliver.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest

from harness.pg import create_service_database
from harness.stack import StackConfig
from tests.integration.stackapi import Api, StackThread, User, new_key

FUNDED_TOKENS = 100  # a package: 100 tokens for $5.00, no bonus
TIP_TOKENS = 7
_OBSERVE_TIMEOUT_S = 30.0
_RECOVERY_TIMEOUT_S = 30.0


@contextmanager
def _stack(pg_admin_url: str | None, *flaws: str) -> Iterator[tuple[StackThread, Api]]:
    """A local stack with these flaws; its own PostgreSQL when ``pg_admin_url`` is None."""
    database_url = None if pg_admin_url is None else create_service_database(pg_admin_url)
    runner = StackThread(StackConfig(database_url=database_url, flaws=flaws))
    with runner as info:
        api = Api(info)
        try:
            yield runner, api
        finally:
            api.close()


def _kill_and_restart(runner: StackThread, api: Api) -> Api:
    """SIGKILL the service now, start it again, and return a client with fresh connections."""
    process = runner.stack.service_process
    assert process is not None
    process.kill()
    runner.call(runner.stack.restart_service())
    api.close()
    assert runner.stack.info is not None
    return Api(runner.stack.info)


def _tips_in_ledger(api: Api, user: User) -> int:
    """How many tokens the user's journal shows leaving by tips: balance vs ledger."""
    account = api.account(user)
    assert account["balance"] == account["ledger_sum"], account
    return FUNDED_TOKENS - int(account["balance"])


def _funded_pair(api: Api) -> tuple[User, User]:
    fan, creator = api.create_user("fan"), api.create_user("creator")
    api.fund(fan, FUNDED_TOKENS)
    assert api.balance(fan) == FUNDED_TOKENS
    return fan, creator


@pytest.mark.parametrize("flaw", ["answer_before_commit", None])
def test_a_tip_answered_then_killed_survives_only_when_answered_after_commit(
        pg_admin_url: str, flaw: str | None) -> None:
    with _stack(pg_admin_url, *([flaw] if flaw else [])) as (runner, api):
        fan, creator = _funded_pair(api)
        key = new_key()
        first = api.tip(fan, creator, TIP_TOKENS, key=key)
        assert first.status_code == 201, first.text  # the kill follows this answer at once
        api = _kill_and_restart(runner, api)
        survived = _tips_in_ledger(api, fan)
        retry = api.tip(fan, creator, TIP_TOKENS, key=key)
        assert retry.status_code == 201, retry.text
        if flaw is None:
            assert survived == TIP_TOKENS
            assert retry.headers.get("Idempotent-Replayed") == "true"
            assert retry.json() == first.json()
        else:
            # The acknowledged tip was rolled back by the kill; its retry ran it afresh.
            assert survived == 0
            assert retry.headers.get("Idempotent-Replayed") is None
            assert retry.json()["tip_id"] != first.json()["tip_id"]
        assert _tips_in_ledger(api, fan) == TIP_TOKENS


@pytest.mark.parametrize("flaw", ["idempotency_key_after_effect", None])
def test_a_tip_killed_once_its_effect_shows_is_applied_once_only_with_the_key_in_its_transaction(
        pg_admin_url: str, flaw: str | None) -> None:
    with _stack(pg_admin_url, *([flaw] if flaw else [])) as (runner, api):
        fan, creator = _funded_pair(api)
        key = new_key()
        first: list[httpx.Response | Exception] = []
        sender = threading.Thread(target=_call, args=(
            first, functools.partial(api.tip, key=key), fan, creator, TIP_TOKENS))
        sender.start()
        _wait_until(lambda: api.balance(fan) < FUNDED_TOKENS, "the tip to show")
        api = _kill_and_restart(runner, api)
        sender.join(timeout=_OBSERVE_TIMEOUT_S)
        retry = api.tip(fan, creator, TIP_TOKENS, key=key)
        assert retry.status_code == 201, retry.text
        if flaw is None:
            assert retry.headers.get("Idempotent-Replayed") == "true"
            assert _tips_in_ledger(api, fan) == TIP_TOKENS
        else:
            # The tip committed, its key did not: the retry paid a second time.
            assert retry.headers.get("Idempotent-Replayed") is None
            assert _tips_in_ledger(api, fan) == 2 * TIP_TOKENS


def _call(into: list[httpx.Response | Exception], request: Any, *args: Any) -> None:
    """``request(*args)`` from a thread the kill may interrupt: its answer or its error."""
    try:
        into.append(request(*args))
    except httpx.HTTPError as exc:  # the kill closed the connection before the answer
        into.append(exc)


@pytest.mark.parametrize("flaw", ["webhook_ack_before_commit", None])
def test_a_credit_acknowledged_then_killed_survives_only_when_acknowledged_after_commit(
        pg_admin_url: str, flaw: str | None) -> None:
    with _stack(pg_admin_url, *([flaw] if flaw else [])) as (runner, api):
        fan = api.create_user("fan")
        # The provider delivers the success while the purchase call waits for its answer.
        purchase: list[httpx.Response | Exception] = []
        buyer = threading.Thread(target=_call, args=(purchase, api.purchase, fan, FUNDED_TOKENS))
        buyer.start()
        _wait_until(lambda: _success_acknowledged(api), "the provider to hear 200")
        api = _kill_and_restart(runner, api)
        buyer.join(timeout=_OBSERVE_TIMEOUT_S)
        api.settle()
        assert _pending_deliveries(api) == 0  # the provider will never deliver it again
        account = api.account(fan)
        if flaw is None:
            assert account["balance"] == account["credited"] == FUNDED_TOKENS, account
        else:
            assert account["balance"] == account["credited"] == 0, account
            totals = api.totals()
            assert totals["minted"] == 0, totals  # paid at the provider, never credited


def _pending_deliveries(api: Api) -> int:
    return int(api.provider("GET", "/_tokenchaos/pending").json()["pending_deliveries"])


def _success_acknowledged(api: Api) -> bool:
    return any(delivery["event_type"] == "payment_intent.succeeded"
               and delivery["status_code"] == 200 for delivery in api.deliveries())


@pytest.mark.parametrize("fault", ["database_restart", "terminate_sessions"])
@pytest.mark.parametrize("flaw", ["no_reconnect_after_database_restart", None])
def test_after_a_database_restart_requests_recover_only_with_a_pool_that_reconnects(
        flaw: str | None, fault: str) -> None:
    with _stack(None, *([flaw] if flaw else [])) as (runner, api):
        fan = api.create_user("fan")
        assert api.user_call(fan, "GET", "/v1/me").status_code == 200
        postgres = runner.stack.postgres
        assert postgres is not None
        if fault == "database_restart":
            runner.call(_in_loop(postgres.restart))  # back and accepting connections on return
        else:
            assert _terminate_service_sessions(postgres.url) > 0
        if flaw is None:
            _wait_until(lambda: api.user_call(fan, "GET", "/v1/me").status_code == 200,
                        "the service to reconnect")
            assert api.http.get(api.info.service_url + "/healthz").status_code == 200
        else:
            for _ in range(5):
                _assert_unavailable(api.user_call(fan, "GET", "/v1/me"))
            _assert_unavailable(api.http.get(api.info.service_url + "/healthz"))
            api = _kill_and_restart(runner, api)  # only a restart of the service helps
        assert api.user_call(fan, "GET", "/v1/me").status_code == 200
        assert api.create_user("creator").id > fan.id  # writes work again too


def test_the_correct_service_answers_503_json_while_the_database_is_down_and_recovers() -> None:
    with _stack(None) as (runner, api):
        fan, creator = _funded_pair(api)
        postgres = runner.stack.postgres
        assert postgres is not None
        postgres.crash()
        key = new_key()
        _assert_unavailable(api.tip(fan, creator, TIP_TOKENS, key=key))
        _assert_unavailable(api.user_call(fan, "GET", "/v1/me"))
        assert api.http.get(api.info.service_url + "/healthz").status_code == 503
        runner.call(_in_loop(postgres.restart))  # recovers from the write-ahead log
        _wait_until(lambda: api.user_call(fan, "GET", "/v1/me").status_code == 200,
                    "the service to reconnect")
        retry = api.tip(fan, creator, TIP_TOKENS, key=key)
        assert retry.status_code == 201, retry.text
        assert retry.headers.get("Idempotent-Replayed") is None  # the 503 applied nothing
        assert _tips_in_ledger(api, fan) == TIP_TOKENS


def _terminate_service_sessions(admin_url: str) -> int:
    """What an operator's pg_terminate_backend does to every session of the service."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'tokenchaos-reference'").fetchall()
    return len(rows)


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == "database_unavailable", body


async def _in_loop(blocking: Any) -> None:
    """Run ``blocking`` on the stack's loop thread, which owns the stack's children."""
    blocking()


def _wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + _OBSERVE_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {_OBSERVE_TIMEOUT_S:.0f} s for {what}")
