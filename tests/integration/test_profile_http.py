"""What a profile puts on the wire, over real loopback sockets: provisioning headers and kinds,
bare tokens, keys in the body, and a run stopped by refused credentials."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ProvisioningFailed
from harness.history import HistoryWriter, load
from harness.limits import Limits
from harness.model import F, Kind, Op, Outcome
from harness.protocol import (
    Credentials,
    CredentialsRefused,
    Endpoints,
    FlowContext,
    Resolver,
    op_flow,
)
from harness.runner import run_scenario
from harness.scenario import Scenario, ScenarioParams
from harness.schedule import Batch, Step
from harness.targets.http_async import drive_async
from harness.targets.profile import Profile, load_profile
from harness.targets.provisioning import provision
from harness.targets.session import TargetSession, make_client

pytestmark = pytest.mark.integration

LIMITS = Limits(op_timeout_s=2.0, connect_timeout_s=2.0, response_body_bytes_max=10_000)


@dataclass
class Seen:
    """One request as the server read it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    answers: list[tuple[int, bytes]] = field(default_factory=list)  # served in order


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    """A loopback HTTP/1.1 server that records each request and serves canned answers."""
    state = Server()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, path, _ = head[0].split(" ", 2)
        headers = {}
        for line in head[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        state.seen.append(Seen(method=method, path=path, headers=headers, body=body))
        status, answer = state.answers.pop(0) if state.answers else (200, b"{}")
        writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nContent-Type: application/json"
                     b"\r\nConnection: close\r\n\r\n%s" % (status, len(answer), answer))
        await writer.drain()
        writer.close()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}"
    yield state
    listening.close()
    await listening.wait_closed()


PROFILE = """
[target]
name = "foreign"
base_url = "{url}"

[auth]
header = "X-Api-Key"
scheme = "none"

[metadata]
user_key = "accountId"
tokens_keys = ["tokens"]

[ops.tip]
path = "/tips"
idempotency = "none"
body = {{ to = "{{recipient_id}}", amount = "{{amount_tokens}}" }}
status_ok = [200]
status_fail = {{ 409 = "insufficient_funds" }}

[ops.purchase]
path = "/purchases"
idempotency = {{ body = "clientKey" }}
body = {{ tokens = "{{amount_tokens}}" }}
status_ok = [200]
result = {{ intent_id = "intent" }}

[provisioning]
mode = "http"
path = "/admin/accounts"
headers = {{ "X-Staging-Token" = "{{env:STAGING_TOKEN}}" }}
body = {{ label = "{{name}}" }}
kinds = {{ fan = {{ isCreator = false }}, creator = {{ isCreator = true }} }}
id = "account.id"
token = "account.apiKey"
"""


def _profile(tmp_path: Path, url: str) -> Profile:
    path = tmp_path / "foreign.toml"
    path.write_text(PROFILE.format(url=url))
    return load_profile(path, environ={"STAGING_TOKEN": "stg-7"})


def _account(number: int) -> bytes:
    return json.dumps({"account": {"id": number, "apiKey": f"key-{number}"}}).encode()


async def _provision(profile: Profile, users: dict[str, str]) -> dict[str, Credentials]:
    async with make_client(LIMITS) as client:
        return await provision(users, profile=profile, client=client, base_url=profile.base_url,
                               admin_key=None, concurrency=1)


async def test_provisioning_sends_the_staging_header_and_each_kinds_fields(
        server: Server, tmp_path: Path) -> None:
    server.answers = [(200, _account(1)), (200, _account(2))]
    made = await _provision(_profile(tmp_path, server.url),
                            {"fan_0": "fan", "creator_0": "creator"})
    assert made == {"fan_0": Credentials(target_id="1", token="key-1"),
                    "creator_0": Credentials(target_id="2", token="key-2")}
    fan, creator = server.seen
    assert (fan.method, fan.path) == ("POST", "/admin/accounts")
    assert fan.headers["x-staging-token"] == creator.headers["x-staging-token"] == "stg-7"
    assert json.loads(fan.body) == {"label": "fan_0", "isCreator": False}
    assert json.loads(creator.body) == {"label": "creator_0", "isCreator": True}


async def test_provisioning_refused_with_401_names_the_credentials(
        server: Server, tmp_path: Path) -> None:
    server.answers = [(401, b'{"error": "bad staging token"}')]
    with pytest.raises(ProvisioningFailed) as caught:
        await _provision(_profile(tmp_path, server.url), {"fan_0": "fan"})
    message = str(caught.value)
    assert message.startswith("the target refused our credentials (401 on provisioning fan_0")
    assert "check [auth] header and scheme in " in message
    assert "bad staging token" in message


def _ctx(profile: Profile) -> FlowContext:
    resolver = Resolver(users={"fan_0": Credentials(target_id="1", token="key-1"),
                               "creator_0": Credentials(target_id="2", token="key-2")})
    return FlowContext(profile=profile, endpoints=Endpoints(target_url=profile.base_url),
                       resolver=resolver, response_body_bytes_max=LIMITS.response_body_bytes_max)


TIP = Op(id=3, f=F.TIP, value={"sender": "fan_0", "recipient": "creator_0", "amount_tokens": 5},
         idempotency_key="k-3")


async def _drive(profile: Profile, op: Op) -> Outcome:
    async with make_client(LIMITS) as client:
        return await drive_async(op_flow(op, _ctx(profile)), client, LIMITS)


async def test_a_bare_token_and_no_key_go_out_for_an_op_without_idempotency(
        server: Server, tmp_path: Path) -> None:
    outcome = await _drive(_profile(tmp_path, server.url), TIP)
    assert outcome.kind == Kind.OK
    (seen,) = server.seen
    assert seen.headers["x-api-key"] == "key-1"
    assert "authorization" not in seen.headers
    assert b"k-3" not in seen.body
    assert not any("k-3" in value for value in seen.headers.values())


async def test_a_purchase_key_goes_in_the_body_field_the_profile_names(
        server: Server, tmp_path: Path) -> None:
    server.answers = [(200, b'{"intent": "pi_1"}')]
    purchase = Op(id=1, f=F.PURCHASE, value={"user": "fan_0", "purchase": "p_0",
                                             "amount_tokens": 250}, idempotency_key="k-1")
    await _drive(_profile(tmp_path, server.url), purchase)
    assert json.loads(server.seen[0].body) == {"tokens": 250, "clientKey": "k-1"}


async def test_a_401_to_an_op_stops_the_transport_with_credentials_refused(
        server: Server, tmp_path: Path) -> None:
    server.answers = [(401, b'{"error": "unknown api key"}')]
    with pytest.raises(CredentialsRefused, match=r"\(401 on tip #3\): check \[auth\] header and "
                                                 r"scheme in .*foreign.toml \(it sends X-Api-Key: "
                                                 r"<token>\)"):
        await _drive(_profile(tmp_path, server.url), TIP)


async def test_a_5xx_body_reaches_the_outcome_as_an_excerpt(server: Server,
                                                            tmp_path: Path) -> None:
    server.answers = [(500, b"ERROR: deadlock detected")]
    outcome = await _drive(_profile(tmp_path, server.url), TIP)
    assert outcome.body_excerpt == "ERROR: deadlock detected"


async def test_a_run_whose_credentials_are_refused_stops_at_the_first_401(
        server: Server, tmp_path: Path) -> None:
    # Two users created, then a batch of four tips: the first 401 ends the run, exit 2.
    server.answers = [(200, _account(1)), (200, _account(2))] + [(401, b"{}")] * 4
    tips = tuple(dataclasses.replace(TIP, id=op_id) for op_id in range(4))

    def generate(rng: Any, params: ScenarioParams) -> Iterator[Step]:
        yield Batch(ops=tips)

    scenario = Scenario(name="auth", summary="refused credentials",
                        users=lambda params: {"fan_0": "fan", "creator_0": "creator"},
                        generator=generate, checkers=())
    profile = _profile(tmp_path, server.url)
    async with TargetSession.open(profile, limits=LIMITS) as session:
        with HistoryWriter(tmp_path / "history.jsonl") as writer, \
                pytest.raises(CredentialsRefused, match=r"\(401 on tip #\d\)") as caught:
            await run_scenario(scenario, ScenarioParams(seed=1, concurrency=1), session=session,
                               provider=None, writer=writer, limits=LIMITS)
    assert caught.value.exit_code == 2
    assert len(server.seen) == 3  # the two creations and one tip; no tip after the 401
    (run,) = load(tmp_path / "history.jsonl")
    assert not run.complete
