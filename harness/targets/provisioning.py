"""Provisioning: give every logical user of a scenario an account on the target.

Either one admin HTTP call per user (the reference service's ``POST /v1/users``), or a
file of existing users and their tokens (a deployment without such an API). The HTTP
call may carry extra headers (a staging token, read from the environment when the
profile loaded) and the fields that make a user a fan or a creator in the service's own
terms (``[provisioning] kinds``). Users are never funded here: money arrives only
through real purchases and webhooks.

Every way this can go wrong raises ``ProvisioningFailed`` (or ``UsageError`` for a bad
file), saying what was asked, what came back, and what to change.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from harness.errors import ProvisioningFailed, UsageError
from harness.protocol import Credentials, json_path, render_json, render_text
from harness.targets.profile import FileProvisioning, HttpProvisioning, Profile

__all__ = ["load_users_file", "provision"]

USER_KINDS = frozenset({"fan", "creator"})


async def provision(users: Mapping[str, str], *, profile: Profile, client: httpx.AsyncClient,
                    base_url: str, admin_key: str | None, concurrency: int,
                    taken: Mapping[str, int] | None = None) -> dict[str, Credentials]:
    """Create (or take from a file) one account per logical user.

    Args:
        users: logical name -> ``"fan"`` or ``"creator"``, in the scenario's order.
        concurrency: at most this many creation calls at once.
        taken: from a file, how many users of each kind earlier scenarios of the run took;
            this scenario takes the next ones, so no two scenarios share an account.

    Returns:
        logical name -> the target's id (as text) and the user's bearer token.

    Raises:
        ProvisioningFailed: a creation call failed, or the file has too few users of a kind.
    """
    assert concurrency >= 1
    for name, kind in users.items():
        assert kind in USER_KINDS, (name, kind)
    spec = profile.provisioning
    if isinstance(spec, FileProvisioning):
        return _from_file(users, spec, profile, taken or {})
    semaphore = asyncio.Semaphore(concurrency)

    async def create(name: str, kind: str) -> tuple[str, Credentials]:
        async with semaphore:
            return name, await _create(name, kind, spec, profile=profile, client=client,
                                       base_url=base_url, admin_key=admin_key)

    created = await asyncio.gather(*(create(name, kind) for name, kind in users.items()))
    return dict(created)


async def _create(name: str, kind: str, spec: HttpProvisioning, *, profile: Profile,
                  client: httpx.AsyncClient, base_url: str,
                  admin_key: str | None) -> Credentials:
    variables = {"kind": kind, "name": name}
    url = base_url.rstrip("/") + render_text(spec.path, variables, quote=True)
    headers = {"Accept": "application/json"}
    if admin_key:
        headers[profile.auth.header] = profile.auth.value(admin_key)
    headers.update((header, render_text(text, variables)) for header, text in spec.headers.items())
    template = spec.body_for(kind)
    body = None if template is None else render_json(template, variables)
    try:
        response = await client.request(spec.method, url, headers=headers, json=body)
    except httpx.HTTPError as exc:
        raise ProvisioningFailed(f"creating user {name} ({kind}): {spec.method} {url} failed: "
                                 f"{type(exc).__name__} {exc}; is the target up?") from exc
    if response.status_code in (401, 403) and response.status_code not in spec.status_ok:
        raise ProvisioningFailed(
            f"the target refused our credentials ({response.status_code} on provisioning "
            f"{name}, a {kind}): check [auth] header and scheme in {profile.source}, the "
            f"admin key ([target] admin_key_env) and [provisioning] headers; "
            f"{spec.method} {url} answered {response.text[:200]!r}")
    if response.status_code not in spec.status_ok:
        raise ProvisioningFailed(
            f"creating user {name} ({kind}): {spec.method} {url} answered "
            f"{response.status_code} {response.text[:200]!r}, expected one of "
            f"{sorted(spec.status_ok)}; check the admin key and [provisioning] in "
            f"{profile.source}")
    try:
        data: Any = response.json()
    except ValueError:
        data = None
    target_id, token = json_path(data, spec.id_path), json_path(data, spec.token_path)
    if target_id is None or token is None or isinstance(token, dict | list):
        raise ProvisioningFailed(
            f"creating user {name} ({kind}): the answer {response.text[:200]!r} has no "
            f"{spec.id_path!r} or {spec.token_path!r}; fix id/token in [provisioning] of "
            f"{profile.source}")
    return Credentials(target_id=str(target_id), token=str(token))


def _from_file(users: Mapping[str, str], spec: FileProvisioning, profile: Profile,
               taken: Mapping[str, int]) -> dict[str, Credentials]:
    if spec.users_file is None:
        raise ProvisioningFailed(f"profile {profile.source} takes users from a file: set "
                                 f"{spec.users_file_env} to a JSON file of existing users "
                                 '({"users": [{"id", "token", "kind"}, ...]})')
    available = {kind: listed[taken.get(kind, 0):]
                 for kind, listed in load_users_file(spec.users_file).items()}
    for kind in sorted(USER_KINDS):
        needed_count = sum(1 for wanted in users.values() if wanted == kind)
        if needed_count > len(available[kind]):
            earlier = taken.get(kind, 0)
            before = f"; earlier scenarios of the run took {earlier}" if earlier else ""
            raise ProvisioningFailed(
                f"{spec.users_file} holds {len(available[kind]) + earlier} users of kind "
                f"{kind!r}{before}, and this scenario needs {needed_count}; add more to the "
                "file")
    return {name: available[kind].pop(0) for name, kind in users.items()}


def load_users_file(path: Path) -> dict[str, list[Credentials]]:
    """Existing users by kind, in file order.

    Raises:
        UsageError: the file is missing, not JSON, or not ``{"users": [...]}``.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"users file {path}: cannot read it as JSON: {exc}") from exc
    items = data.get("users") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise UsageError(f'users file {path}: expected {{"users": [{{"id", "token", "kind"}}, '
                         "...]}")
    by_kind: dict[str, list[Credentials]] = {kind: [] for kind in sorted(USER_KINDS)}
    for number, item in enumerate(items):
        if not isinstance(item, dict) or item.get("kind") not in USER_KINDS or \
                item.get("id") in (None, "") or not item.get("token"):
            raise UsageError(f"users file {path}: users[{number}] = {item!r} needs an id, a "
                             'token and a kind of "fan" or "creator"')
        by_kind[item["kind"]].append(Credentials(target_id=str(item["id"]),
                                                 token=str(item["token"])))
    return by_kind
