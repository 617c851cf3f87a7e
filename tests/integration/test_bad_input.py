"""Bad input gets a clear 4xx JSON error and changes nothing: never a 5xx, never a traceback."""

from __future__ import annotations

import json
import socket
import urllib.parse
from typing import Any

import pytest

from tests.integration.stackapi import Api, User, new_key

pytestmark = pytest.mark.integration

BAD_AMOUNTS: list[Any] = [-1, 0, 1.5, "10", 2**63, 10**12 + 1, None, True, [], {}]


def _assert_error(response: Any, *statuses: int) -> None:
    assert response.status_code in statuses, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.text


@pytest.fixture
def funded(api: Api) -> tuple[User, User]:
    fan, creator = api.create_user(), api.create_user("creator")
    api.fund(fan, 500)
    return fan, creator


def _state(api: Api, *users: User) -> list[tuple[int, int]]:
    return [(me["balance"], me["debt"]) for me in (api.me(u) for u in users)]


@pytest.mark.parametrize("amount", BAD_AMOUNTS, ids=repr)
def test_tip_with_a_bad_amount_is_422_and_changes_nothing(
        api: Api, funded: tuple[User, User], amount: Any) -> None:
    fan, creator = funded
    before = _state(api, fan, creator)
    response = api.user_call(fan, "POST", "/v1/tips", key=new_key(),
                             json={"to": creator.id, "amount": amount})
    _assert_error(response, 422)
    assert _state(api, fan, creator) == before


@pytest.mark.parametrize("body", [
    {}, {"to": 1}, {"amount": 5}, {"to": "x", "amount": 5}, {"to": 1, "amount": 5, "extra": 1},
], ids=repr)
def test_tip_with_missing_unknown_or_mistyped_fields_is_422(
        api: Api, funded: tuple[User, User], body: dict[str, Any]) -> None:
    fan, creator = funded
    before = _state(api, fan, creator)
    _assert_error(api.user_call(fan, "POST", "/v1/tips", key=new_key(), json=body), 422, 404)
    assert _state(api, fan, creator) == before


def test_malformed_json_is_4xx(api: Api, funded: tuple[User, User]) -> None:
    fan, _ = funded
    response = api.user_call(fan, "POST", "/v1/tips", key=new_key(), content=b"{not json",
                             headers={"Content-Type": "application/json"})
    _assert_error(response, 400, 422)


def test_a_huge_body_is_413_and_changes_nothing(api: Api, funded: tuple[User, User]) -> None:
    fan, creator = funded
    before = _state(api, fan, creator)
    huge = b'{"to": 1, "amount": 5, "pad": "' + b"x" * (65 * 1024) + b'"}'
    response = api.user_call(fan, "POST", "/v1/tips", key=new_key(), content=huge,
                             headers={"Content-Type": "application/json"})
    _assert_error(response, 413)
    assert _state(api, fan, creator) == before


def test_a_tip_without_idempotency_key_is_refused(api: Api, funded: tuple[User, User]) -> None:
    fan, creator = funded
    before = _state(api, fan, creator)
    response = api.user_call(fan, "POST", "/v1/tips", json={"to": creator.id, "amount": 5})
    _assert_error(response, 400, 422)
    assert _state(api, fan, creator) == before


def test_a_key_reused_with_another_body_is_409(api: Api, funded: tuple[User, User]) -> None:
    fan, creator = funded
    key = new_key()
    assert api.tip(fan, creator, 5, key=key).status_code == 201
    replay = api.tip(fan, creator, 5, key=key)
    assert replay.status_code == 201
    assert replay.json()["tip_id"] == api.tip(fan, creator, 5, key=key).json()["tip_id"]
    _assert_error(api.tip(fan, creator, 6, key=key), 409)
    assert api.balance(fan) == 495


def test_unknown_recipient_is_404(api: Api, funded: tuple[User, User]) -> None:
    fan, creator = funded
    before = _state(api, fan, creator)
    _assert_error(api.user_call(fan, "POST", "/v1/tips", key=new_key(),
                                json={"to": 10**12, "amount": 5}), 404)
    assert _state(api, fan, creator) == before


def test_auth_is_required_and_users_cannot_act_for_others(
        api: Api, funded: tuple[User, User]) -> None:
    fan, creator = funded
    before = _state(api, fan, creator)
    _assert_error(api.http.get(api.info.service_url + "/v1/me"), 401)
    forged = User(id=fan.id, token="not-a-token", kind="fan")
    _assert_error(api.tip(forged, creator, 5), 401)
    _assert_error(api.user_call(fan, "GET", "/v1/audit/totals"), 401, 403)
    _assert_error(api.user_call(fan, "POST", "/v1/users", json={"kind": "fan"}), 401, 403)
    opened = api.user_call(fan, "POST", "/v1/calls", key=new_key(),
                           json={"creator": creator.id, "rate_per_minute": 5})
    call_id = opened.json()["call_id"]
    # The creator may not charge the fan's call: only the call's fan pays.
    charge = api.user_call(creator, "POST", f"/v1/calls/{call_id}/charges", key=new_key(),
                           json={"minute": 1})
    _assert_error(charge, 403, 404)
    assert _state(api, fan, creator) == before


@pytest.mark.parametrize("tokens", [0, -100, 99, 101, 1.5, "500", 2**63])
def test_purchase_of_a_non_package_is_422(api: Api, tokens: Any) -> None:
    fan = api.create_user()
    _assert_error(api.user_call(fan, "POST", "/v1/purchases", key=new_key(),
                                json={"tokens": tokens, "payment_method": "pm_card_visa"}), 422)
    api.settle()
    assert api.balance(fan) == 0


def test_a_declined_card_is_402_and_credits_nothing(api: Api) -> None:
    fan = api.create_user()
    _assert_error(api.purchase(fan, 500, payment_method="pm_card_chargeDeclined"), 402)
    api.settle()
    assert api.balance(fan) == 0


def test_forged_and_stale_webhooks_are_400_and_change_nothing(api: Api) -> None:
    fan = api.create_user()
    api.set_policy(forgeries=["unsigned", "wrong_secret", "tampered"], stale_count=1)
    api.fund(fan, 500)
    assert api.balance(fan) == 500
    forged = [d for d in api.deliveries()
              if d["variant"] in ("unsigned", "wrong_secret", "tampered", "stale")]
    assert {d["variant"] for d in forged} >= {"unsigned", "wrong_secret", "tampered", "stale"}
    assert all(d["status_code"] == 400 for d in forged), forged


def test_an_unknown_payment_method_is_422_and_credits_nothing(api: Api) -> None:
    fan = api.create_user()
    response = api.purchase(fan, 500, payment_method="pm_card_doesNotExist")
    _assert_error(response, 422)
    assert response.json()["error"]["code"] == "unknown_payment_method"
    assert "pm_card_doesNotExist" in response.json()["error"]["message"]
    api.settle()
    assert api.balance(fan) == 0


def test_a_body_naming_a_key_twice_is_400_duplicate_key_and_changes_nothing(
        api: Api, funded: tuple[User, User]) -> None:
    fan, creator = funded
    other = api.create_user("creator")
    before = _state(api, fan, creator, other)
    body = f'{{"to": {creator.id}, "amount": 5, "to": {other.id}}}'.encode()
    response = api.user_call(fan, "POST", "/v1/tips", key=new_key(), content=body,
                             headers={"Content-Type": "application/json"})
    _assert_error(response, 400)
    assert response.json()["error"]["code"] == "duplicate_key"
    nested = b'{"kind": "fan", "x": {"a": 1, "a": 2}}'
    _assert_error(api.admin("POST", "/v1/users", content=nested), 400)
    assert _state(api, fan, creator, other) == before


def test_absurdly_nested_json_is_4xx(api: Api, funded: tuple[User, User]) -> None:
    fan, _ = funded
    response = api.user_call(fan, "POST", "/v1/tips", key=new_key(),
                             content=b"[" * 20_000 + b"]" * 20_000)
    _assert_error(response, 400, 422)


MALFORMED_REQUESTS = {
    "bad request line": b"THIS IS NOT HTTP\r\n\r\n",
    "bad header": b"GET /v1/me HTTP/1.1\r\nHost: x\r\nBad Header Name: 1\r\n\r\n",
    "invalid content-length": b"POST /v1/tips HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Length: ten\r\n\r\n{}",
    "two content-lengths": b"POST /v1/tips HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                           b"Content-Length: 3\r\n\r\n{}",
    "broken chunked framing": b"POST /v1/tips HTTP/1.1\r\nHost: x\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(MALFORMED_REQUESTS))
def test_malformed_http_framing_answers_the_json_error_shape(api: Api, name: str) -> None:
    status, headers, body = _raw_exchange(api.info.service_url, MALFORMED_REQUESTS[name])
    assert status == 400, (status, headers, body)
    assert headers.get("content-type", "").startswith("application/json"), headers
    error = json.loads(body)["error"]
    assert error["code"] == "malformed_http", error
    assert error["message"]


def _raw_exchange(base_url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the answer until the server closes; (status, headers, body)."""
    parts = urllib.parse.urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def test_the_openapi_schema_is_served_and_documents_every_route(api: Api) -> None:
    response = api.http.get(api.info.service_url + "/openapi.json")
    assert response.status_code == 200, response.text
    schema = response.json()
    tip = schema["paths"]["/v1/tips"]["post"]
    ref = tip["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body_schema = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert set(body_schema["required"]) == {"to", "amount"}
    assert body_schema["additionalProperties"] is False
    assert {"201", "400", "401", "402", "404", "409", "422"} <= set(tip["responses"])
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert {path for path in schema["paths"]} >= {
        "/healthz", "/v1/users", "/v1/me", "/v1/purchases", "/v1/tips", "/v1/calls",
        "/v1/calls/{call_id}/charges", "/v1/calls/{call_id}/end", "/v1/webhooks/stripe",
        "/v1/audit/accounts", "/v1/audit/totals", "/v1/audit/webhook-anomalies"}
