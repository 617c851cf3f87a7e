"""The admin HTTP observer over real loopback HTTP: its headers, and the system accounts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from harness.errors import TargetError
from harness.targets.observers import AdminHttpObserver
from harness.targets.profile import AdminHttpObserverSpec, AuthSpec
from tests.integration.conftest import Answer

pytestmark = pytest.mark.integration

_ACCOUNTS = [{"id": "u1", "balance": 700}, {"id": "u2", "balance": 245},
             {"id": "acct_platform", "balance": 62}, {"id": "someone_else", "balance": 5}]


def _spec(headers: dict[str, str]) -> AdminHttpObserverSpec:
    return AdminHttpObserverSpec(accounts_path="/admin/wallets", accounts_list_path="wallets",
                                 account_fields={"user_id": "id", "balance_tokens": "balance"},
                                 headers=headers, system_accounts={"platform": "acct_platform"})


async def test_the_admin_observer_sends_its_headers_and_reads_the_system_accounts(
        serve: Callable[[Answer], Awaitable[str]]) -> None:
    heads: list[str] = []

    def answer(head: str) -> tuple[int, object]:
        heads.append(head.lower())
        if "x-staging-token: s3cret" not in head.lower():
            return 403, {"error": "forbidden"}
        return 200, {"wallets": _ACCOUNTS}

    url = await serve(answer)
    spec = _spec({"X-Staging-Token": "s3cret"})
    async with httpx.AsyncClient() as client:
        observer = AdminHttpObserver(spec, client=client, base_url=url, admin_key="adm",
                                     auth=AuthSpec(header="X-Api-Key", scheme=None),
                                     source="probe.toml")
        observation = await observer.observe({"fan_0": "u1", "creator_0": "u2",
                                              **spec.system_accounts})
    assert {user: a.balance_tokens for user, a in observation.accounts.items()} == {
        "fan_0": 700, "creator_0": 245, "platform": 62}
    assert "x-api-key: adm" in heads[0]


async def test_without_the_header_the_refusal_is_a_target_error_naming_the_status(
        serve: Callable[[Answer], Awaitable[str]]) -> None:
    url = await serve(lambda head: (403, {"error": "forbidden"}))
    async with httpx.AsyncClient() as client:
        observer = AdminHttpObserver(_spec({}), client=client, base_url=url, admin_key=None,
                                     auth=AuthSpec(header="X-Api-Key", scheme=None),
                                     source="probe.toml")
        with pytest.raises(TargetError, match="403"):
            await observer.observe({"fan_0": "u1"})
