"""The HTTP API: parse the request, call one operation from the registry, map its answer.

Routes never touch the database and never decide anything about tokens: they
authenticate, validate the body (strict pydantic models, read from the raw bytes so
malformed JSON is a 400 and a wrong type a 422), call ``app.state.operations[name]``,
and turn the ``Answer`` into JSON with ``STATUS_BY_RESULT``. Calling through the registry
is what lets a flaw replace one operation.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from reference_impl.errors import ApiError
from reference_impl.idempotency import IDEMPOTENCY_KEY_CHARS_MAX
from reference_impl.schemas import (
    ID_MAX,
    ChargeRequest,
    CreateUserRequest,
    EmptyRequest,
    OpenCallRequest,
    PurchaseRequest,
    TipRequest,
    describe,
    webhook_call,
)
from reference_impl.web import answer_response

__all__ = ["router"]

router = APIRouter()

ModelT = TypeVar("ModelT", bound=BaseModel)
_KEY_PATTERN = re.compile(rf"^[\x21-\x7e]{{1,{IDEMPOTENCY_KEY_CHARS_MAX}}}$")
_ID_PATTERN = re.compile(r"^[1-9][0-9]{0,18}$")
_USER_CACHE_ENTRIES_MAX = 100_000  # tokens remembered per process (a few MB at most)


@router.get("/healthz")
async def get_health(request: Request) -> JSONResponse:
    if await _operation(request, "check_health")(request.app.state.pool):
        return JSONResponse({"status": "ok"})
    return JSONResponse(status_code=503, content={
        "status": "unavailable",
        "error": {"code": "database_unavailable", "message": "the database does not answer"}})


@router.post("/v1/users")
async def post_user(request: Request) -> JSONResponse:
    await _require_admin(request)
    body = await _parse(request, CreateUserRequest)
    return answer_response(await _call(request, "create_user", kind=body.kind))


@router.get("/v1/me")
async def get_me(request: Request) -> JSONResponse:
    user_id = await _require_user(request)
    return answer_response(await _call(request, "read_account", account_id=user_id))


@router.post("/v1/purchases")
async def post_purchase(request: Request) -> JSONResponse:
    user_id = await _require_user(request)
    key = _idempotency_key(request, required=False)
    body = await _parse(request, PurchaseRequest)
    answer = await _call(request, "create_purchase", stripe_client=request.app.state.stripe,
                         user_id=user_id, tokens=body.tokens,
                         payment_method=body.payment_method, idempotency_key=key)
    return answer_response(answer)


@router.post("/v1/tips")
async def post_tip(request: Request) -> JSONResponse:
    user_id = await _require_user(request)
    key = _idempotency_key(request, required=True)
    body = await _parse(request, TipRequest)
    if body.to == user_id:
        raise ApiError(422, "invalid", "to: you cannot tip yourself")
    answer = await _call(request, "tip", sender_id=user_id, recipient_id=body.to,
                         amount_tokens=body.amount, idempotency_key=key)
    return answer_response(answer)


@router.post("/v1/calls")
async def post_call(request: Request) -> JSONResponse:
    user_id = await _require_user(request)
    key = _idempotency_key(request, required=False)
    body = await _parse(request, OpenCallRequest)
    if body.creator == user_id:
        raise ApiError(422, "invalid", "creator: you cannot call yourself")
    answer = await _call(request, "open_call", fan_id=user_id, creator_id=body.creator,
                         rate_tokens_per_minute=body.rate_per_minute, idempotency_key=key)
    return answer_response(answer)


@router.post("/v1/calls/{call_id}/charges")
async def post_call_charge(request: Request, call_id: str) -> JSONResponse:
    user_id = await _require_user(request)
    key = _idempotency_key(request, required=True)
    body = await _parse(request, ChargeRequest)
    answer = await _call(request, "charge_minute", fan_id=user_id, call_id=_id(call_id),
                         minute=body.minute, idempotency_key=key)
    return answer_response(answer)


@router.post("/v1/calls/{call_id}/end")
async def post_call_end(request: Request, call_id: str) -> JSONResponse:
    user_id = await _require_user(request)
    key = _idempotency_key(request, required=False)
    await _parse(request, EmptyRequest, empty_ok=True)
    answer = await _call(request, "end_call", fan_id=user_id, call_id=_id(call_id),
                         idempotency_key=key)
    return answer_response(answer)


@router.post("/v1/webhooks/stripe")
async def post_stripe_webhook(request: Request) -> JSONResponse:
    settings = request.app.state.settings
    event = _operation(request, "verify_webhook")(
        await request.body(), request.headers.get("stripe-signature"),
        secret=settings.webhook_secret, tolerance_s=settings.webhook_tolerance_s)
    name, arguments = webhook_call(event)
    return answer_response(await _call(request, name, **arguments))


@router.get("/v1/audit/accounts")
async def get_audit_accounts(request: Request) -> JSONResponse:
    await _require_admin(request)
    return JSONResponse(await _call(request, "audit_accounts"))


@router.get("/v1/audit/totals")
async def get_audit_totals(request: Request) -> JSONResponse:
    await _require_admin(request)
    return JSONResponse(await _call(request, "audit_totals"))


@router.get("/v1/audit/webhook-anomalies")
async def get_audit_webhook_anomalies(request: Request) -> JSONResponse:
    await _require_admin(request)
    return JSONResponse(await _call(request, "audit_webhook_anomalies"))


# ---------------------------------------------------------------------------------------


def _operation(request: Request, name: str) -> Callable[..., Any]:
    operation: Callable[..., Any] = request.app.state.operations[name]
    return operation


async def _call(request: Request, name: str, **arguments: Any) -> Any:
    """Run the named operation from the registry on the app's pool."""
    return await _operation(request, name)(request.app.state.pool, **arguments)


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>")
    return token.strip()


def _is_admin(request: Request, token: str) -> bool:
    admin_key: str = request.app.state.settings.admin_key
    return hmac.compare_digest(token.encode(), admin_key.encode())


async def _require_user(request: Request) -> int:
    """The id of the calling user; 401 for a missing or unknown token, 403 for the admin key."""
    token = _bearer(request)
    if _is_admin(request, token):
        raise ApiError(403, "forbidden", "the admin key cannot act as a user; use a user token")
    cache: dict[str, int] = request.app.state.user_ids_by_token
    user_id = cache.get(token)
    if user_id is not None:
        return user_id
    found: int | None = await _call(request, "authenticate", token=token)
    if found is None:
        raise ApiError(401, "unauthorized", "the bearer token is not valid")
    user_id = found
    # Tokens are never reissued or revoked and accounts never deleted, so a token that was
    # valid stays valid for the same account: remember it, and save a query per request.
    if len(cache) >= _USER_CACHE_ENTRIES_MAX:
        cache.pop(next(iter(cache)))  # the oldest entry
    cache[token] = user_id
    return user_id


async def _require_admin(request: Request) -> None:
    """Pass for the admin key; 403 for a user token, 401 for anything else."""
    token = _bearer(request)
    if _is_admin(request, token):
        return
    if await _call(request, "authenticate", token=token) is not None:
        raise ApiError(403, "forbidden", "this call needs the admin key, not a user token")
    raise ApiError(401, "unauthorized", "the bearer token is not valid")


def _idempotency_key(request: Request, *, required: bool) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        if required:
            raise ApiError(400, "idempotency_key_required",
                           "spends need an Idempotency-Key header: a unique string per "
                           "request, reused only to retry that same request")
        return None
    if not _KEY_PATTERN.match(key):
        raise ApiError(400, "invalid_idempotency_key",
                       f"an Idempotency-Key is 1 to {IDEMPOTENCY_KEY_CHARS_MAX} printable "
                       "ASCII characters without spaces")
    return key


async def _parse(request: Request, model: type[ModelT], *, empty_ok: bool = False) -> ModelT:
    """The body as ``model``: 400 when it is not JSON or names a key twice, 422 when it
    does not fit the model."""
    raw = await request.body()
    if empty_ok and not raw.strip():
        raw = b"{}"
    _refuse_duplicate_keys(raw)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise ApiError(400, "malformed_json", "the body is not valid JSON") from None
        raise ApiError(422, "invalid", describe(exc)) from None


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` hook: an object, unless it names a key twice."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKey(key)
        found[key] = value
    return found


def _refuse_duplicate_keys(raw: bytes) -> None:
    """400 ``duplicate_key`` for ``{"to": 1, "to": 2}``: a money API does not pick one.

    JSON parsers disagree on which value wins (the last, the first, or an error), so a
    proxy and this service could read two different requests from the same bytes. A body
    that is not JSON at all is left for the model's parser to refuse as ``malformed_json``.
    """
    try:
        json.loads(raw, object_pairs_hook=_unique_pairs)
    except _DuplicateKey as exc:
        raise ApiError(400, "duplicate_key", f"the JSON body names the key "
                       f"{exc.key[:40]!r} more than once; send each key once") from None
    except (ValueError, RecursionError):
        return  # not JSON (or absurdly nested): the model's parser says so precisely


def _id(text: str) -> int:
    """A path id; anything that cannot be an id of ours is simply not found."""
    if not _ID_PATTERN.match(text) or int(text) > ID_MAX:
        raise ApiError(404, "not_found", f"no such id: {text[:40]!r}")
    return int(text)
