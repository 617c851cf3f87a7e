"""The foreign service's Starlette app: routes that parse, call one operation, and answer.

Its API is deliberately unlike the reference service's: a bare API key in ``X-Api-Key``,
text owner ids, purchases of named bundles (``{"bundle": "plus"}``), a ``clientKey`` in
the body of purchases and minute charges (none on tips), 200 on success everywhere but
account creation, 409 for a tip the balance does not cover and 422 for such a minute,
balances as JSON strings, a replayed minute answered
``{"billed": false}`` and a replayed purchase with ``Idempotent-Replayed: true``,
accounts created by ``POST /admin/accounts`` with an ``X-Staging-Token``, and webhooks
answered 202 and applied later from an inbox (``inbox``; ``GET /admin/inbox`` says how
many are pending).

Every operation is looked up in the registry the app was made with (``create_app``'s
``flaws`` replace entries of it), and every operation runs in Starlette's thread pool:
they use psycopg's blocking API. Request parsing lives here; money lives in
``operations``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import psycopg
import stripe
from psycopg_pool import ConnectionPool
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.foreign import inbox
from tests.foreign.flaws import inbox_delay_ms, install
from tests.foreign.operations import OPERATIONS, Facts, apply_facts
from tests.foreign.parsing import Refused, text, whole
from tests.foreign.replies import Reply, error
from tests.foreign.wallets import BUNDLES, TOKENS_MAX

__all__ = ["BODY_BYTES_MAX", "create_app"]

log = logging.getLogger(__name__)

BODY_BYTES_MAX = 16 * 1024
BUNDLE_TOKENS = {bundle.name: tokens for tokens, bundle in BUNDLES.items()}  # bought by name
_MINUTE_MAX = 100_000
_SCHEMA_LOCK_ID = 80_421_337  # an advisory lock: instances starting at once migrate in turn


def create_app(*, database_url: str, provider_url: str, webhook_secret: str,
               staging_token: str, flaws: tuple[str, ...] = (),
               stripe_api_key: str = "sk_test_foreign",
               webhook_tolerance_s: int = 300) -> Starlette:
    """The foreign token service, with the named flaws installed (none: correct)."""
    ops = install(dict(OPERATIONS), flaws)
    delay_ms = inbox_delay_ms(flaws)
    if flaws:
        log.warning("foreign service with flaws: %s", ", ".join(flaws))
    # The classic module-level configuration of the SDK: one service per process.
    stripe.api_key = stripe_api_key
    stripe.api_base = provider_url.rstrip("/")
    stripe.max_network_retries = 2

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool: ConnectionPool[Any] = ConnectionPool(database_url, min_size=2, max_size=24,
                                                   timeout=30.0, open=False)
        await run_in_threadpool(_open, pool)
        app.state.pool = pool
        worker = asyncio.create_task(inbox.run_worker(pool, partial(_apply, ops),
                                                       delay_ms=delay_ms))
        try:
            yield
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            await run_in_threadpool(pool.close)

    app = Starlette(routes=_routes(), lifespan=lifespan)
    app.state.ops = ops
    app.state.staging_token = staging_token
    app.state.webhook_secret = webhook_secret
    app.state.tolerance_s = webhook_tolerance_s
    app.state.owners = {}  # api key -> owner id, filled as clients call
    return app


def _open(pool: ConnectionPool[Any]) -> None:
    pool.open(wait=True, timeout=30.0)
    schema = (__file__.rsplit("/", 1)[0] + "/schema.sql")
    with open(schema, encoding="utf-8") as file:
        schema_sql = file.read()
    with pool.connection() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_ID,))
        conn.execute(schema_sql.encode())


def _routes() -> list[Route]:
    return [
        Route("/status", _status, methods=["GET"]),
        Route("/admin/accounts", _admin_accounts, methods=["POST"]),
        Route("/admin/inbox", _admin_inbox, methods=["GET"]),
        Route("/me", _me, methods=["GET"]),
        Route("/purchases", _purchases, methods=["POST"]),
        Route("/tips", _tips, methods=["POST"]),
        Route("/sessions", _sessions, methods=["POST"]),
        Route("/sessions/{session_id}/minutes", _minutes, methods=["POST"]),
        Route("/sessions/{session_id}/close", _close, methods=["POST"]),
        Route("/stripe/events", _stripe_events, methods=["POST"]),
    ]


def _answer(reply: Reply) -> Response:
    return JSONResponse(dict(reply.body), status_code=reply.status, headers=dict(reply.headers))


def _handler(endpoint: Callable[[Request], Any]) -> Callable[[Request], Any]:
    async def handle(request: Request) -> Response:
        try:
            reply: Reply = await endpoint(request)
        except Refused as refused:
            reply = refused.reply
        except psycopg.Error as exc:
            log.exception("database error")
            reply = error(503, "database_error", f"{type(exc).__name__}: {exc}".strip())
        return _answer(reply)
    handle.__name__ = endpoint.__name__
    return handle


async def _call(request: Request, name: str, **kwargs: Any) -> Any:
    ops: Mapping[str, Callable[..., Any]] = request.app.state.ops
    return await run_in_threadpool(ops[name], request.app.state.pool, **kwargs)


# ---------------------------------------------------------------------------------------
# Parsing.


async def _raw_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > BODY_BYTES_MAX:
        raise Refused(error(413, "too_large", f"bodies are at most {BODY_BYTES_MAX} bytes"))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_BYTES_MAX:
            raise Refused(error(413, "too_large", f"bodies are at most {BODY_BYTES_MAX} bytes"))
        chunks.append(chunk)
    return b"".join(chunks)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await _raw_body(request)
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise Refused(error(400, "bad_json", "the body is not JSON")) from None
    if not isinstance(body, dict):
        raise Refused(error(400, "bad_json", "the body must be a JSON object"))
    return body


async def _owner(request: Request) -> str:
    api_key = request.headers.get("x-api-key")
    if not api_key:
        raise Refused(error(401, "unauthorized", "send your API key in X-Api-Key"))
    owners: dict[str, str] = request.app.state.owners
    owner = owners.get(api_key)
    if owner is None:
        owner = await _call(request, "owner_for_key", api_key=api_key)
        if owner is None:
            raise Refused(error(401, "unauthorized", "unknown API key"))
        owners[api_key] = owner
    return owner


# ---------------------------------------------------------------------------------------
# Endpoints.


@_handler
async def _status(request: Request) -> Reply:
    return Reply(status=200, body={"ok": True})


def _staff(request: Request) -> bool:
    given = request.headers.get("x-staging-token", "")
    return secrets.compare_digest(given.encode(), request.app.state.staging_token.encode())


@_handler
async def _admin_inbox(request: Request) -> Reply:
    if not _staff(request):
        return error(403, "forbidden", "the inbox needs the X-Staging-Token")
    pending = await _call(request, "count_pending")
    return Reply(status=200, body={"inbox": {"pending": pending}})


@_handler
async def _admin_accounts(request: Request) -> Reply:
    if not _staff(request):
        return error(403, "forbidden", "creating accounts needs the X-Staging-Token")
    body = await _json_body(request)
    is_creator = body.get("isCreator")
    if not isinstance(is_creator, bool):
        return error(400, "bad_field", f"isCreator must be true or false, got {is_creator!r}")
    reply: Reply = await _call(request, "open_wallet", is_creator=is_creator)
    return reply


@_handler
async def _me(request: Request) -> Reply:
    owner = await _owner(request)
    reply: Reply = await _call(request, "show_wallet", owner_id=owner)
    return reply


@_handler
async def _purchases(request: Request) -> Reply:
    owner = await _owner(request)
    body = await _json_body(request)
    name = text(body, "bundle")
    tokens = BUNDLE_TOKENS.get(name or "")
    if tokens is None:
        return error(400, "no_such_bundle", f"{name!r} is not a bundle; bundles: "
                     f"{', '.join(sorted(BUNDLE_TOKENS))}")
    payment_method = text(body, "paymentMethod")
    client_key = text(body, "clientKey", optional=True)
    reply: Reply = await _call(request, "buy", ops=request.app.state.ops, owner_id=owner,
                               tokens=tokens, payment_method=payment_method,
                               client_key=client_key)
    return reply


@_handler
async def _tips(request: Request) -> Reply:
    owner = await _owner(request)
    body = await _json_body(request)
    ops: Mapping[str, Callable[..., Any]] = request.app.state.ops
    parsed = ops["read_tip"](body, sender=owner)
    if isinstance(parsed, Reply):
        return parsed
    to_owner, tokens = parsed
    reply: Reply = await _call(request, "send_tip", from_owner=owner, to_owner=to_owner,
                               tokens=tokens)
    return reply


@_handler
async def _sessions(request: Request) -> Reply:
    owner = await _owner(request)
    body = await _json_body(request)
    creator = text(body, "creator")
    per_minute = whole(body, "perMinute", low=1, high=TOKENS_MAX)
    if creator == owner:
        return error(400, "self_session", "you cannot call yourself")
    reply: Reply = await _call(request, "start_session", fan=owner, creator=creator,
                               per_minute=per_minute)
    return reply


@_handler
async def _minutes(request: Request) -> Reply:
    owner = await _owner(request)
    body = await _json_body(request)
    minute = whole(body, "minute", low=0, high=_MINUTE_MAX)
    client_key = text(body, "clientKey", optional=True)
    reply: Reply = await _call(request, "bill_minute", ops=request.app.state.ops, fan=owner,
                               session_id=request.path_params["session_id"], minute=minute,
                               client_key=client_key)
    return reply


@_handler
async def _close(request: Request) -> Reply:
    owner = await _owner(request)
    await _raw_body(request)
    reply: Reply = await _call(request, "close_session", fan=owner,
                               session_id=request.path_params["session_id"])
    return reply


@_handler
async def _stripe_events(request: Request) -> Reply:
    payload = await _raw_body(request)
    ops: Mapping[str, Callable[..., Any]] = request.app.state.ops
    event = ops["verify_event"](payload, request.headers.get("stripe-signature"),
                                secret=request.app.state.webhook_secret,
                                tolerance_s=request.app.state.tolerance_s)
    if event is None:
        return error(400, "bad_signature", "the Stripe-Signature does not verify")
    facts = _facts(event)
    if facts is None:
        return Reply(status=200, body={"received": True, "applied": False})
    await run_in_threadpool(inbox.queue_event, request.app.state.pool, facts)
    return Reply(status=202, body={"received": True, "queued": True})


def _apply(ops: Mapping[str, Callable[..., Any]], conn: psycopg.Connection[Any],
           facts: Facts) -> bool:
    return apply_facts(conn, ops=ops, facts=facts)


def _facts(event: Mapping[str, Any]) -> Facts | None:
    """What a verified event says, or None for an event type this service ignores."""
    kind = event.get("type")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict) or not isinstance(kind, str):
        raise Refused(error(400, "bad_event", "the event has no data.object"))
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(metadata, dict)
    order_ref = metadata.get("orderRef")
    order_no = int(order_ref) if isinstance(order_ref, str) and order_ref.isdigit() \
        and len(order_ref) < 19 else None
    owner = metadata.get("ownerId") if isinstance(metadata.get("ownerId"), str) else None
    if kind == "payment_intent.succeeded":
        return _made(kind, obj.get("id"), order_no, owner, amount=obj.get("amount"))
    if kind == "charge.refunded":
        refunded = obj.get("amount_refunded")
        if isinstance(refunded, bool) or not isinstance(refunded, int) or refunded < 0:
            raise Refused(error(400, "bad_event", "a refund without amount_refunded"))
        return _made(kind, obj.get("payment_intent"), order_no, owner,
                     amount=obj.get("amount"), refunded_cents=refunded)
    if kind == "charge.dispute.created":
        return _made(kind, obj.get("payment_intent"), order_no, owner, dispute_state="open")
    if kind == "charge.dispute.closed":
        won = obj.get("status") in ("won", "warning_closed")
        return _made(kind, obj.get("payment_intent"), order_no, owner,
                     dispute_state="won" if won else "lost")
    return None


def _made(kind: str, intent_id: Any, order_no: int | None, owner: str | None, *,
          amount: Any = None, refunded_cents: int = 0,
          dispute_state: str | None = None) -> Facts | None:
    if not isinstance(intent_id, str) or not intent_id:
        return None
    amount_cents = amount if isinstance(amount, int) and not isinstance(amount, bool) else None
    return Facts(event_type=kind, intent_id=intent_id, order_no=order_no, owner_id=owner,
                 amount_cents=amount_cents, refunded_cents=refunded_cents,
                 dispute_state=dispute_state)
