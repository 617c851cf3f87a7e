"""The OpenAPI document of the HTTP API, served at ``/openapi.json``.

The routes read their bodies themselves (``routes._parse``: raw bytes, duplicate keys
refused, strict models), so FastAPI cannot see their request bodies or answers. This
module describes them: for every route its request body (the same pydantic models the
routes validate with), its headers (``Idempotency-Key``, ``Stripe-Signature``), every
status it can answer with the body of each (the ``{error: {code, message}}`` shape for
every error), and the bearer scheme. ``install_openapi`` makes the app serve it; a test
fuzzes the live service against it with schemathesis, so it must stay true.

Nothing here handles a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from reference_impl.idempotency import IDEMPOTENCY_KEY_CHARS_MAX
from reference_impl.schemas import (
    ChargeRequest,
    CreateUserRequest,
    EmptyRequest,
    OpenCallRequest,
    PurchaseRequest,
    TipRequest,
)

__all__ = ["ROUTE_DOCS", "RouteDoc", "install_openapi"]


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")  # some errors add details (e.g. balance)
    code: str
    message: str


class Error(_Reply):
    error: ErrorDetail


class Health(_Reply):
    status: Literal["ok"]


class Unhealthy(_Reply):
    status: Literal["unavailable"]
    error: ErrorDetail


class UserCreated(_Reply):
    id: int
    token: str


class Me(_Reply):
    id: int
    balance: int
    debt: int
    status: Literal["active", "debt"]


class PurchaseCreated(_Reply):
    purchase_id: int
    intent_id: str
    status: str


class TipCreated(_Reply):
    tip_id: int
    balance: int


class CallOpened(_Reply):
    call_id: int


class ChargeCreated(_Reply):
    charge_id: int
    balance: int


class CallEnded(_Reply):
    call_id: int
    ended: Literal[True]


class WebhookAcknowledged(_Reply):
    received: Literal[True]
    event_id: str
    result: Literal["applied", "recorded", "duplicate_event", "already_applied", "ignored",
                    "anomaly"]


class AuditAccount(_Reply):
    id: int
    kind: Literal["fan", "creator"]
    balance: int
    debt: int
    status: Literal["active", "debt"]
    ledger_sum: int
    debt_sum: int
    credited: int
    clawed_back: int


class AuditTotals(_Reply):
    minted: int
    clawed_back: int
    balances: int
    debts: int
    drift_accounts: int
    ledger_minted: int
    ledger_clawed_back: int
    unbalanced_transactions: int
    webhook_anomalies: int


class WebhookAnomaly(_Reply):
    id: int
    event_id: str
    event_type: str
    intent_id: str | None
    payment_id: int | None
    kind: Literal["unknown_intent", "mismatch"]
    expected: dict[str, Any]
    observed: dict[str, Any]
    received_at: str


_MODELS: tuple[type[BaseModel], ...] = (
    Error, Health, Unhealthy, UserCreated, Me, PurchaseCreated, TipCreated, CallOpened,
    ChargeCreated, CallEnded, WebhookAcknowledged, AuditAccount, AuditTotals, WebhookAnomaly)
_REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    CreateUserRequest, PurchaseRequest, TipRequest, OpenCallRequest, ChargeRequest, EmptyRequest)

Auth = Literal["none", "user", "admin"]
Key = Literal["none", "optional", "required"]

# Every route that reads a body can refuse it in these ways.
_BODY_ERRORS = {400: "not JSON, a key named twice, or a bad Idempotency-Key",
                413: "the body is over the size limit", 422: "the body does not fit the schema"}
_AUTH_ERRORS = {401: "missing or unknown bearer token",
                403: "the wrong kind of caller (a user token on an admin call, or the reverse)"}
_BUSY = {503: "the database is busy or unavailable; retry with the same Idempotency-Key"}


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteDoc:
    """What one route takes and answers, for the OpenAPI document."""

    summary: str
    auth: Auth
    ok: Mapping[int, tuple[str, type[BaseModel] | None]]  # status -> (why, body model)
    errors: Mapping[int, str] = field(default_factory=dict)  # status -> why
    body: type[BaseModel] | None = None
    body_optional: bool = False
    key: Key = "none"
    list_of: bool = False  # the 200 body is a JSON array of the model


ROUTE_DOCS: Mapping[tuple[str, str], RouteDoc] = {
    ("get", "/healthz"): RouteDoc(
        summary="Liveness and database reachability", auth="none",
        ok={200: ("the service and its database answer", Health)},
        errors={503: "the database does not answer"}),
    ("post", "/v1/users"): RouteDoc(
        summary="Create a fan or creator (admin)", auth="admin", body=CreateUserRequest,
        ok={201: ("the user and its bearer token (shown once)", UserCreated)},
        errors={**_BODY_ERRORS, **_AUTH_ERRORS, **_BUSY}),
    ("get", "/v1/me"): RouteDoc(
        summary="The caller's own account", auth="user",
        ok={200: ("balance and debt in tokens", Me)},
        errors={**_AUTH_ERRORS, 404: "the account is gone", **_BUSY}),
    ("post", "/v1/purchases"): RouteDoc(
        summary="Buy a token package: create and confirm a PaymentIntent; credits nothing "
                "(the success webhook credits)", auth="user", body=PurchaseRequest,
        key="optional",
        ok={201: ("the intent was created; status succeeded or requires_action",
                  PurchaseCreated)},
        errors={**_BODY_ERRORS, **_AUTH_ERRORS, 402: "the card was declined",
                409: "the Idempotency-Key was used for another request",
                422: "not a package, an unknown payment method, or a body that does not "
                     "fit the schema",
                502: "the payment provider failed or could not be reached", **_BUSY}),
    ("post", "/v1/tips"): RouteDoc(
        summary="Tip another user", auth="user", body=TipRequest, key="required",
        ok={201: ("the tip and the sender's balance after it", TipCreated)},
        errors={**_BODY_ERRORS, **_AUTH_ERRORS, 402: "the balance does not cover the tip",
                404: "no such recipient",
                409: "the Idempotency-Key was used for another request", **_BUSY}),
    ("post", "/v1/calls"): RouteDoc(
        summary="Open a call paid by the minute", auth="user", body=OpenCallRequest,
        key="optional", ok={201: ("the call", CallOpened)},
        errors={**_BODY_ERRORS, **_AUTH_ERRORS, 404: "no such creator",
                409: "the Idempotency-Key was used for another request", **_BUSY}),
    ("post", "/v1/calls/{call_id}/charges"): RouteDoc(
        summary="Charge one minute of a call, once per minute", auth="user",
        body=ChargeRequest, key="required",
        ok={201: ("the charge (the first answer again for a minute charged before)",
                  ChargeCreated)},
        errors={**_BODY_ERRORS, **_AUTH_ERRORS, 402: "insufficient funds: the call ends",
                403: "not the call's fan (or the admin key)", 404: "no such call",
                409: "the call has ended, or the key was used for another request",
                **_BUSY}),
    ("post", "/v1/calls/{call_id}/end"): RouteDoc(
        summary="End a call", auth="user", body=EmptyRequest, body_optional=True,
        key="optional", ok={200: ("the call is ended", CallEnded)},
        errors={**_BODY_ERRORS, **_AUTH_ERRORS, 403: "not the call's fan (or the admin key)",
                404: "no such call",
                409: "the Idempotency-Key was used for another request", **_BUSY}),
    ("post", "/v1/webhooks/stripe"): RouteDoc(
        summary="Stripe webhook: verified by its Stripe-Signature, deduplicated by event id",
        auth="none",
        ok={200: ("acknowledged; result says what it did", WebhookAcknowledged)},
        errors={400: "bad or missing signature, stale timestamp, or not a Stripe event",
                413: "the body is over the size limit", **_BUSY}),
    ("get", "/v1/audit/accounts"): RouteDoc(
        summary="Every user account with its ledger sums (admin)", auth="admin",
        ok={200: ("one entry per user account", AuditAccount)}, list_of=True,
        errors={**_AUTH_ERRORS, **_BUSY}),
    ("get", "/v1/audit/totals"): RouteDoc(
        summary="Sums over every account (admin)", auth="admin",
        ok={200: ("the totals", AuditTotals)}, errors={**_AUTH_ERRORS, **_BUSY}),
    ("get", "/v1/audit/webhook-anomalies"): RouteDoc(
        summary="Signed webhooks that credited nothing: an unknown intent, or one that "
                "disagrees with the recorded purchase (admin, newest first)", auth="admin",
        ok={200: ("the newest anomalies", WebhookAnomaly)}, list_of=True,
        errors={**_AUTH_ERRORS, **_BUSY}),
}


def install_openapi(app: FastAPI) -> None:
    """Serve this module's document at ``/openapi.json`` (built once, on first request)."""
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not cache:
            cache.update(build_openapi(app))
        return cache

    app.openapi = openapi  # type: ignore[method-assign]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document of ``app`` with every route completed from ``ROUTE_DOCS``."""
    document = get_openapi(title=app.title, version=app.version, routes=app.routes,
                           description="The tokenchaos reference token service.")
    documented = {(method, path) for path, item in document["paths"].items()
                  for method in item}
    assert documented == set(ROUTE_DOCS), (
        f"routes and ROUTE_DOCS differ: {sorted(documented ^ set(ROUTE_DOCS))}")
    _, definitions = models_json_schema(
        [(model, "validation") for model in _MODELS + _REQUEST_MODELS],
        ref_template="#/components/schemas/{model}")
    document["components"] = {
        "schemas": definitions["$defs"],
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "description": "a user token, or the admin key"}}}
    for (method, path), doc in ROUTE_DOCS.items():
        document["paths"][path][method] = _operation(
            doc, path_parameters=document["paths"][path][method].get("parameters", []),
            operation_id=f"{method}_{path.strip('/').replace('/', '_').replace('{', '')}"
            .replace("}", "").replace("-", "_"))
    return document


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": dict(schema)}}


def _operation(doc: RouteDoc, *, path_parameters: list[dict[str, Any]],
               operation_id: str) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": doc.summary, "operationId": operation_id,
                                 "parameters": list(path_parameters) + _headers(doc)}
    if doc.auth != "none":
        operation["security"] = [{"bearer": []}]
    if doc.body is not None:
        operation["requestBody"] = {"required": not doc.body_optional,
                                    "content": _json(_ref(doc.body))}
    elif doc.summary.startswith("Stripe webhook"):
        operation["requestBody"] = {"required": True,
                                    "content": _json({"type": "object"})}
    responses: dict[str, Any] = {}
    for status, (why, model) in doc.ok.items():
        schema: dict[str, Any] = {} if model is None else _ref(model)
        if doc.list_of:
            schema = {"type": "array", "items": schema}
        responses[str(status)] = {"description": why, "content": _json(schema)}
    for status, why in doc.errors.items():
        model_for_error = Unhealthy if doc.auth == "none" and status == 503 \
            and "database does not answer" in why else Error
        responses[str(status)] = {"description": why, "content": _json(_ref(model_for_error))}
    operation["responses"] = responses
    return operation


def _headers(doc: RouteDoc) -> list[dict[str, Any]]:
    headers: list[dict[str, Any]] = []
    if doc.key != "none":
        headers.append({
            "name": "Idempotency-Key", "in": "header", "required": doc.key == "required",
            "description": "a unique string per request, reused only to retry it",
            "schema": {"type": "string", "pattern": f"^[!-~]{{1,{IDEMPOTENCY_KEY_CHARS_MAX}}}$"}})
    if doc.summary.startswith("Stripe webhook"):
        headers.append({"name": "Stripe-Signature", "in": "header", "required": False,
                        "schema": {"type": "string"}})
    return headers
