"""Settling over real loopback HTTP: a count that drains, one that never does, a bad answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from harness.errors import TargetError
from harness.model import AccountState, Observation
from harness.targets.settle import Settler
from harness.targets.settle_profile import SettleSpec
from tests.integration.conftest import Answer

pytestmark = pytest.mark.integration

def _pending(headers: dict[str, str] | None = None, *, interval_ms: int = 100,
             timeout_s: float = 30.0) -> SettleSpec:
    return SettleSpec(mode="pending", path="/admin/inbox", pending="inbox.pending",
                      headers=headers or {}, interval_ms=interval_ms, timeout_s=timeout_s)


async def test_pending_settles_once_the_count_drains_sending_the_headers(
        serve: Callable[[Answer], Awaitable[str]]) -> None:
    counts = iter([3, 2, 0])
    heads: list[str] = []

    def answer(head: str) -> tuple[int, object]:
        heads.append(head)
        return 200, {"inbox": {"pending": next(counts)}}

    url = await serve(answer)
    async with httpx.AsyncClient() as client:
        settler = Settler(_pending({"X-Staging-Token": "s3cret"}, interval_ms=10),
                          client=client, base_url=url, headers={"X-Api-Key": "admin"})
        settled = await settler.settle(None)
    assert settled.settled is True, settled
    assert settled.polls_count == 3
    assert settled.waited_s > 0
    assert heads[0].startswith("GET /admin/inbox ")
    assert "x-staging-token: s3cret" in heads[0].lower()
    assert "x-api-key: admin" in heads[0].lower()


async def test_pending_that_never_drains_is_reported_unsettled_at_the_bound(
        serve: Callable[[Answer], Awaitable[str]]) -> None:
    url = await serve(lambda head: (200, {"inbox": {"pending": 4}}))
    async with httpx.AsyncClient() as client:
        settler = Settler(_pending(interval_ms=20, timeout_s=0.2), client=client,
                          base_url=url, headers={})
        settled = await settler.settle(None)
    assert settled.settled is False
    assert settled.polls_count >= 2
    assert settled.note is not None
    assert "not settled after 0.2 s: 4 still pending at 'inbox.pending'" in settled.note


@pytest.mark.parametrize(("status", "body"), [(200, {"inbox": {}}), (403, {"error": "no"}),
                                              (200, {"inbox": {"pending": -1}}),
                                              (200, {"inbox": {"pending": True}})])
async def test_an_answer_without_a_count_is_an_error_naming_the_profile_key(
        serve: Callable[[Answer], Awaitable[str]], status: int, body: object) -> None:
    url = await serve(lambda head: (status, body))
    async with httpx.AsyncClient() as client:
        settler = Settler(_pending(), client=client, base_url=url, headers={})
        with pytest.raises(TargetError, match=r"no count at 'inbox.pending'; fix \[settle\]"):
            await settler.settle(None)


def _observation(balance: int) -> Observation:
    return Observation(accounts={"fan_0": AccountState(user="fan_0", balance_tokens=balance)})


async def test_stable_settles_when_the_end_state_stops_changing() -> None:
    balances = iter([0, 100, 250, 250, 250, 250, 250, 250, 250, 250])

    async def observe() -> Observation:
        return _observation(next(balances))

    spec = SettleSpec(mode="stable", interval_ms=10, stable_ms=25, timeout_s=5)
    async with httpx.AsyncClient() as client:
        settled = await Settler(spec, client=client, base_url="http://127.0.0.1:9",
                                headers={}).settle(observe)
    assert settled.settled is True, settled
    assert 5 <= settled.polls_count <= 10


async def test_stable_that_keeps_changing_is_unsettled_and_needs_an_observer() -> None:
    balance = 0

    async def observe() -> Observation:
        nonlocal balance
        balance += 1
        return _observation(balance)

    spec = SettleSpec(mode="stable", interval_ms=10, stable_ms=50, timeout_s=0.2)
    async with httpx.AsyncClient() as client:
        settler = Settler(spec, client=client, base_url="http://127.0.0.1:9", headers={})
        settled = await settler.settle(observe)
        assert settled.settled is False
        assert "the end state still changed" in (settled.note or "")
        with pytest.raises(TargetError, match="has no \\[observer\\]"):
            await settler.settle(None)
