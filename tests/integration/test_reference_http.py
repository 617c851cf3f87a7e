"""The HTTP surface: bad input is a JSON 4xx that changes nothing, auth, limits, no tracebacks."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from reference_impl.testing import ServiceClient, User
from tests.integration.reference_stack import service_with_provider

pytestmark = pytest.mark.integration

ADMIN_KEY = "adm_http_0123456789ab"
SECRET = "whsec_http"
BAD_AMOUNTS: list[Any] = [-1, 0, 1.5, 1.0, "10", 2**63, 10**12 + 1, 10**400, None, True,
                          False, [], {}, "NaN"]


async def _explode(*args: object, **kwargs: object) -> object:
    raise RuntimeError("secret internal detail")


@pytest.fixture
async def service(database_url: str) -> AsyncIterator[ServiceClient]:
    # One operation that crashes, to see what an unexpected exception looks like outside.
    async with service_with_provider(database_url, admin_key=ADMIN_KEY, webhook_secret=SECRET,
                                     operations={"acknowledge_event": _explode}) as client:
        yield client


@pytest.fixture
async def funded(service: ServiceClient) -> tuple[User, User]:
    fan, creator = await service.create_user(), await service.create_user("creator")
    await service.fund(fan, 500)
    return fan, creator


def _assert_error(response: httpx.Response, *statuses: int, code: str | None = None) -> None:
    assert response.status_code in statuses, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.text
    if code is not None:
        assert body["error"]["code"] == code, body


async def _state(service: ServiceClient, *users: User) -> list[tuple[int, int]]:
    return [(me["balance"], me["debt"]) for me in [await service.me(u) for u in users]]


@pytest.mark.parametrize("amount", BAD_AMOUNTS, ids=repr)
async def test_a_tip_with_a_bad_amount_is_422_and_changes_nothing(
        service: ServiceClient, funded: tuple[User, User], amount: Any) -> None:
    fan, creator = funded
    before = await _state(service, fan, creator)
    _assert_error(await service.tip(fan, creator, amount), 422, code="invalid")
    assert await _state(service, fan, creator) == before


@pytest.mark.parametrize("body", [{}, {"to": 1}, {"amount": 5}, {"to": "x", "amount": 5},
                                  {"to": 1001, "amount": 5, "extra": 1}, [1, 2], "tip", 5,
                                  {"to": None, "amount": 5}, {"to": -4, "amount": 5}],
                         ids=repr)
async def test_a_tip_with_missing_unknown_or_mistyped_fields_is_422(
        service: ServiceClient, funded: tuple[User, User], body: Any) -> None:
    fan, creator = funded
    before = await _state(service, fan, creator)
    response = await service.call(fan, "POST", "/v1/tips", key=uuid.uuid4().hex, json=body)
    _assert_error(response, 422)
    assert await _state(service, fan, creator) == before


async def test_a_tip_to_oneself_is_422(service: ServiceClient,
                                       funded: tuple[User, User]) -> None:
    fan, _ = funded
    _assert_error(await service.tip(fan, fan, 5), 422)
    assert (await service.me(fan))["balance"] == 500


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe", b'{"to": 1, "amount": 5'])
async def test_malformed_json_is_400(service: ServiceClient, funded: tuple[User, User],
                                     content: bytes) -> None:
    fan, _ = funded
    response = await service.call(fan, "POST", "/v1/tips", key=uuid.uuid4().hex,
                                  content=content, headers={"Content-Type": "application/json"})
    _assert_error(response, 400, code="malformed_json")


async def test_a_huge_body_is_413_and_changes_nothing(service: ServiceClient,
                                                      funded: tuple[User, User]) -> None:
    fan, creator = funded
    huge = b'{"to": %d, "amount": 5, "pad": "' % creator.id + b"x" * (65 * 1024) + b'"}'
    response = await service.call(fan, "POST", "/v1/tips", key=uuid.uuid4().hex, content=huge)
    _assert_error(response, 413, code="body_too_large")
    assert (await service.me(fan))["balance"] == 500


async def test_a_huge_chunked_body_is_413(service: ServiceClient,
                                          funded: tuple[User, User]) -> None:
    fan, _ = funded

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(80):
            yield b"x" * 1024

    response = await service.call(fan, "POST", "/v1/tips", key=uuid.uuid4().hex,
                                  content=chunks())
    _assert_error(response, 413, code="body_too_large")


async def test_a_spend_without_idempotency_key_is_400(service: ServiceClient,
                                                      funded: tuple[User, User]) -> None:
    fan, creator = funded
    response = await service.call(fan, "POST", "/v1/tips", json={"to": creator.id, "amount": 5})
    _assert_error(response, 400, code="idempotency_key_required")
    assert (await service.me(fan))["balance"] == 500


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "tab\there"])
async def test_a_malformed_idempotency_key_is_400(service: ServiceClient,
                                                  funded: tuple[User, User], key: str) -> None:
    fan, creator = funded
    response = await service.call(fan, "POST", "/v1/tips", json={"to": creator.id, "amount": 5},
                                  headers={"Idempotency-Key": key})
    _assert_error(response, 400, code="invalid_idempotency_key")


async def test_auth_is_required_and_roles_are_kept_apart(service: ServiceClient,
                                                         funded: tuple[User, User]) -> None:
    fan, creator = funded
    _assert_error(await service.http.get("/v1/me"), 401, code="unauthorized")
    _assert_error(await service.http.get("/v1/me", headers={"Authorization": "Basic x"}), 401)
    _assert_error(await service.tip(User(id=fan.id, token="tc_forged"), creator, 5), 401)
    _assert_error(await service.call(fan, "GET", "/v1/audit/totals"), 403, code="forbidden")
    _assert_error(await service.call(fan, "POST", "/v1/users", json={"kind": "fan"}), 403)
    _assert_error(await service.admin("GET", "/v1/me"), 403, code="forbidden")
    _assert_error(await service.http.get("/v1/audit/accounts",
                                         headers={"Authorization": "Bearer nope"}), 401)
    assert (await service.me(fan))["balance"] == 500


@pytest.mark.parametrize("body", [{"kind": "system"}, {"kind": "admin"}, {}, {"kind": 1}])
async def test_users_can_only_be_fans_or_creators(service: ServiceClient, body: Any) -> None:
    _assert_error(await service.admin("POST", "/v1/users", json=body), 422)


@pytest.mark.parametrize("body", [{"creator": 1001, "rate_per_minute": 0},
                                  {"creator": 1001, "rate_per_minute": 2.5},
                                  {"creator": "1001", "rate_per_minute": 5},
                                  {"creator": 1001}])
async def test_opening_a_call_with_bad_input_is_422(service: ServiceClient,
                                                    funded: tuple[User, User], body: Any) -> None:
    fan, _ = funded
    _assert_error(await service.call(fan, "POST", "/v1/calls", json=body), 422)


@pytest.mark.parametrize("minute", [-1, 1.5, "1", None, 2**40])
async def test_charging_a_bad_minute_is_422(service: ServiceClient, funded: tuple[User, User],
                                            minute: Any) -> None:
    fan, _ = funded
    response = await service.call(fan, "POST", "/v1/calls/1/charges", key=uuid.uuid4().hex,
                                  json={"minute": minute})
    _assert_error(response, 422)


@pytest.mark.parametrize("call_id", ["abc", "0", "-1", "1.5", "99999999999999999999", "007"])
async def test_a_call_id_that_cannot_exist_is_404(service: ServiceClient,
                                                  funded: tuple[User, User],
                                                  call_id: str) -> None:
    fan, _ = funded
    response = await service.call(fan, "POST", f"/v1/calls/{call_id}/charges",
                                  key=uuid.uuid4().hex, json={"minute": 1})
    _assert_error(response, 404, code="not_found")


async def test_unknown_routes_and_methods_are_json_errors(service: ServiceClient) -> None:
    _assert_error(await service.http.get("/v1/nothing"), 404, code="not_found")
    _assert_error(await service.http.delete("/v1/tips"), 405, code="method_not_allowed")


async def test_an_unexpected_exception_is_a_json_500_without_details(
        service: ServiceClient) -> None:
    response = await service.deliver({"id": "evt_x", "type": "some.new_type",
                                      "data": {"object": {}}})
    _assert_error(response, 500, code="internal_error")
    assert "secret internal detail" not in response.text


async def test_health_is_ok_while_the_database_answers(service: ServiceClient) -> None:
    response = await service.http.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
