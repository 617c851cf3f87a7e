"""Provisioning from a file of existing users: assignment by kind, and readable failures."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from harness.errors import ProvisioningFailed, UsageError
from harness.protocol import Credentials
from harness.targets.profile import load_profile
from harness.targets.provisioning import load_users_file, provision

USERS = {"users": [{"id": "u-c0", "token": "tc0", "kind": "creator"},
                   {"id": "u-f0", "token": "tf0", "kind": "fan"},
                   {"id": 7, "token": "tf1", "kind": "fan"}]}


def _file(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "users.json"
    path.write_text(json.dumps(data))
    return path


async def _provision(path: Path, users: dict[str, str]) -> dict[str, Credentials]:
    profile = load_profile("seed", environ={"TOKENCHAOS_USERS_FILE": str(path)})
    async with httpx.AsyncClient() as client:
        return await provision(users, profile=profile, client=client, base_url="http://x",
                               admin_key=None, concurrency=2)


async def test_users_are_taken_from_the_file_by_kind_in_file_order(tmp_path: Path) -> None:
    taken = await _provision(_file(tmp_path, USERS),
                             {"fan_0": "fan", "fan_1": "fan", "creator_0": "creator"})
    assert taken == {"fan_0": Credentials(target_id="u-f0", token="tf0"),
                     "fan_1": Credentials(target_id="7", token="tf1"),
                     "creator_0": Credentials(target_id="u-c0", token="tc0")}


async def test_too_few_users_of_a_kind_says_how_many_are_needed(tmp_path: Path) -> None:
    with pytest.raises(ProvisioningFailed, match="holds 2 users of kind 'fan', and this "
                       "scenario needs 3"):
        await _provision(_file(tmp_path, USERS), {f"fan_{i}": "fan" for i in range(3)})


async def test_a_file_profile_without_its_file_says_which_variable_to_set() -> None:
    profile = load_profile("seed", environ={})
    async with httpx.AsyncClient() as client:
        with pytest.raises(ProvisioningFailed, match="set TOKENCHAOS_USERS_FILE"):
            await provision({"fan_0": "fan"}, profile=profile, client=client,
                            base_url="http://x", admin_key=None, concurrency=1)


@pytest.mark.parametrize("data", [[], {"users": {}}, {"users": [{"id": "a", "kind": "fan"}]},
                                  {"users": [{"id": "a", "token": "t", "kind": "admin"}]}])
def test_a_malformed_users_file_is_a_usage_error_naming_the_entry(
        tmp_path: Path, data: object) -> None:
    with pytest.raises(UsageError, match="users file"):
        load_users_file(_file(tmp_path, data))


def test_a_users_file_that_is_not_json_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text("id,token\n")
    with pytest.raises(UsageError, match="cannot read it as JSON"):
        load_users_file(path)
