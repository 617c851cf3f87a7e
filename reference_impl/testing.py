"""Test support for this service: Stripe-shaped signed events, an in-process server, a client.

For tests of the service and of its flaws, not for production code paths (nothing in the
service imports this module). Events are built and signed exactly as Stripe builds and
signs them (``Stripe-Signature: t=<unix>,v1=<hex hmac_sha256(secret, "{t}.{body}")>``),
so the service's verification by the official SDK is exercised for real. The server is
uvicorn on a loopback port, running in the caller's event loop; the client speaks real
HTTP to it. ``books_problems`` reads the database directly and lists every broken
invariant of the ledger, so a test can assert there are none.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import uvicorn

from reference_impl.app import create_app
from reference_impl.http_protocol import HTTP_PROTOCOL
from reference_impl.money import package_for
from reference_impl.settings import Settings

__all__ = [
    "Purchase",
    "ServiceClient",
    "User",
    "assert_books_balance",
    "books_problems",
    "charge_object",
    "dispute_object",
    "intent_object",
    "serving",
    "sign",
    "stripe_event",
]

_STARTUP_TIMEOUT_S = 30.0


def sign(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe would send for this body."""
    signed_at = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{signed_at}.".encode() + payload, hashlib.sha256)
    return f"t={signed_at},v1={digest.hexdigest()}"


def stripe_event(event_type: str, obj: Mapping[str, Any], *,
                 event_id: str | None = None) -> dict[str, Any]:
    """An Event object around ``obj``, as Stripe delivers it."""
    return {"id": event_id or f"evt_{uuid.uuid4().hex[:24]}", "object": "event",
            "type": event_type, "created": int(time.time()), "livemode": False,
            "api_version": "2024-06-20", "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None}, "data": {"object": dict(obj)}}


def _metadata(user_id: int | None, minted_tokens: int | None,
              purchase_id: int | None) -> dict[str, str]:
    metadata = {}
    if user_id is not None:
        metadata["user_id"] = str(user_id)
    if minted_tokens is not None:
        metadata["tokens"] = str(minted_tokens)
    if purchase_id is not None:
        metadata["purchase_id"] = str(purchase_id)
    return metadata


def intent_object(intent_id: str, *, amount_cents: int, user_id: int | None,
                  minted_tokens: int | None, status: str = "succeeded",
                  purchase_id: int | None = None, currency: str = "usd") -> dict[str, Any]:
    """A PaymentIntent with the metadata the service sets."""
    return {"id": intent_id, "object": "payment_intent", "amount": amount_cents,
            "amount_received": amount_cents if status == "succeeded" else 0,
            "currency": currency, "status": status, "latest_charge": f"ch_{intent_id[3:]}",
            "metadata": _metadata(user_id, minted_tokens, purchase_id)}


def charge_object(intent_id: str, *, amount_cents: int, refunded_cents: int,
                  user_id: int | None, minted_tokens: int | None,
                  purchase_id: int | None = None) -> dict[str, Any]:
    """A Charge of ``intent_id`` with its cumulative ``amount_refunded``."""
    return {"id": f"ch_{intent_id[3:]}", "object": "charge", "amount": amount_cents,
            "amount_refunded": refunded_cents, "refunded": refunded_cents >= amount_cents,
            "currency": "usd", "payment_intent": intent_id, "status": "succeeded",
            "metadata": _metadata(user_id, minted_tokens, purchase_id)}


def dispute_object(intent_id: str, *, status: str, amount_cents: int, user_id: int | None,
                   minted_tokens: int | None, dispute_id: str | None = None,
                   purchase_id: int | None = None) -> dict[str, Any]:
    """A Dispute of ``intent_id``'s charge (``needs_response``, ``won``, ``lost``...)."""
    return {"id": dispute_id or f"dp_{intent_id[3:]}", "object": "dispute",
            "amount": amount_cents, "charge": f"ch_{intent_id[3:]}", "currency": "usd",
            "payment_intent": intent_id, "status": status,
            "metadata": _metadata(user_id, minted_tokens, purchase_id)}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal capture: the test runner keeps its own Ctrl-C."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def serving(settings: Settings, *,
                  operations: Mapping[str, Callable[..., Any]] | None = None
                  ) -> AsyncIterator[str]:
    """Run the service with uvicorn on a free loopback port; yield its base URL."""
    port = _free_port()
    config = uvicorn.Config(create_app(settings, operations=operations), host="127.0.0.1",
                            port=port, log_config=None, access_log=False, lifespan="on",
                            http=HTTP_PROTOCOL)
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise RuntimeError("the service stopped while starting; see its log")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the service did not start within {_STARTUP_TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass(frozen=True, slots=True)
class User:
    id: int
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Purchase:
    """A purchase the service recorded, and the Stripe-shaped events of its intent.

    The events carry the metadata the service set on the intent (user, tokens, purchase
    id), as the provider would deliver them; tests deliver them in any order they like.
    """

    user: User
    purchase_id: int
    intent_id: str
    minted_tokens: int
    amount_cents: int

    def succeeded(self) -> dict[str, Any]:
        return stripe_event("payment_intent.succeeded", intent_object(
            self.intent_id, amount_cents=self.amount_cents, user_id=self.user.id,
            minted_tokens=self.minted_tokens, purchase_id=self.purchase_id))

    def refunded(self, refunded_cents: int) -> dict[str, Any]:
        return stripe_event("charge.refunded", charge_object(
            self.intent_id, amount_cents=self.amount_cents, refunded_cents=refunded_cents,
            user_id=self.user.id, minted_tokens=self.minted_tokens,
            purchase_id=self.purchase_id))

    def dispute(self, event_type: str, status: str) -> dict[str, Any]:
        return stripe_event(event_type, dispute_object(
            self.intent_id, status=status, amount_cents=self.amount_cents,
            user_id=self.user.id, minted_tokens=self.minted_tokens,
            purchase_id=self.purchase_id))


class ServiceClient:
    """Real HTTP to a running service, with the calls tests make most."""

    def __init__(self, base_url: str, *, admin_key: str, webhook_secret: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30.0,
                                      limits=httpx.Limits(max_connections=500))
        self.admin_key = admin_key
        self.webhook_secret = webhook_secret

    async def aclose(self) -> None:
        await self.http.aclose()

    async def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin_key}", **kwargs.pop("headers", {})}
        return await self.http.request(method, path, headers=headers, **kwargs)

    async def call(self, user: User, method: str, path: str, *, key: str | None = None,
                   **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {user.token}", **kwargs.pop("headers", {})}
        if key is not None:
            headers["Idempotency-Key"] = key
        return await self.http.request(method, path, headers=headers, **kwargs)

    async def create_user(self, kind: str = "fan") -> User:
        response = await self.admin("POST", "/v1/users", json={"kind": kind})
        assert response.status_code == 201, response.text
        return User(id=response.json()["id"], token=response.json()["token"])

    async def tip(self, sender: User, recipient: User | int, amount: Any, *,
                  key: str | None = None) -> httpx.Response:
        to = recipient.id if isinstance(recipient, User) else recipient
        return await self.call(sender, "POST", "/v1/tips", key=key or uuid.uuid4().hex,
                               json={"to": to, "amount": amount})

    async def me(self, user: User) -> dict[str, Any]:
        response = await self.call(user, "GET", "/v1/me")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def totals(self) -> dict[str, int]:
        response = await self.admin("GET", "/v1/audit/totals")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def account(self, user: User) -> dict[str, Any]:
        response = await self.admin("GET", "/v1/audit/accounts")
        assert response.status_code == 200, response.text
        return next(dict(account) for account in response.json() if account["id"] == user.id)

    async def deliver(self, event: Mapping[str, Any], *, secret: str | None = None,
                      timestamp: int | None = None) -> httpx.Response:
        """POST a webhook event, signed with the service's secret unless told otherwise."""
        payload = json.dumps(event).encode()
        signature = sign(payload, secret or self.webhook_secret, timestamp=timestamp)
        return await self.http.post("/v1/webhooks/stripe", content=payload, headers={
            "Stripe-Signature": signature, "Content-Type": "application/json"})

    async def purchase(self, user: User, tokens: int, *, payment_method: str = "pm_card_visa",
                       key: str | None = None) -> httpx.Response:
        """``POST /v1/purchases`` (the service needs a provider behind it)."""
        return await self.call(user, "POST", "/v1/purchases", key=key or uuid.uuid4().hex,
                               json={"tokens": tokens, "payment_method": payment_method})

    async def buy(self, user: User, tokens: int) -> Purchase:
        """A purchase of the package of ``tokens`` that the service recorded; not credited."""
        package = package_for(tokens)
        assert package is not None, f"{tokens} is not a package"
        response = await self.purchase(user, tokens)
        assert response.status_code == 201, response.text
        body = response.json()
        return Purchase(user=user, purchase_id=int(body["purchase_id"]),
                        intent_id=str(body["intent_id"]), minted_tokens=package.minted_tokens,
                        amount_cents=package.amount_cents)

    async def fund(self, user: User, tokens: int) -> str:
        """Buy the package of ``tokens`` and deliver its signed success; the intent id."""
        purchase = await self.buy(user, tokens)
        response = await self.deliver(purchase.succeeded())
        assert response.status_code == 200, response.text
        assert response.json()["result"] == "applied", response.text
        return purchase.intent_id


_BOOKS_CHECKS = {
    "ledger transactions that do not sum to zero":
        "SELECT count(*) FROM (SELECT transaction_id FROM ledger_entries"
        " GROUP BY transaction_id HAVING sum(amount) <> 0) AS t",
    "user accounts whose balance differs from their ledger":
        "SELECT count(*) FROM accounts a WHERE kind <> 'system' AND balance <>"
        " (SELECT COALESCE(sum(amount), 0) FROM ledger_entries e WHERE e.account_id = a.id)",
    "user accounts whose debt differs from their debt journal":
        "SELECT count(*) FROM accounts a WHERE kind <> 'system' AND debt <>"
        " (SELECT COALESCE(sum(amount), 0) FROM debt_entries e WHERE e.account_id = a.id)",
    "minted - clawed back differs from balances - debts":
        "SELECT ((SELECT COALESCE(sum(minted_tokens), 0) FROM payments WHERE succeeded)"
        " - (SELECT COALESCE(sum(clawed_tokens), 0) FROM payments)"
        " - (SELECT COALESCE(sum(balance - debt), 0) FROM accounts WHERE kind <> 'system'))"
        " <> 0",
    "minted differs from what the issuance account issued":
        "SELECT (SELECT COALESCE(sum(minted_tokens), 0) FROM payments WHERE succeeded)"
        " <> (SELECT COALESCE(-sum(amount), 0) FROM ledger_entries WHERE account_id = 1)",
    "clawed back differs from the clawback account's take plus debts":
        "SELECT (SELECT COALESCE(sum(clawed_tokens), 0) FROM payments)"
        " <> (SELECT COALESCE(sum(amount), 0) FROM ledger_entries WHERE account_id = 2)"
        " + (SELECT COALESCE(sum(debt), 0) FROM accounts WHERE kind <> 'system')",
}


async def books_problems(database_url: str) -> list[str]:
    """Every ledger invariant that does not hold right now (empty when the books balance)."""
    problems = []
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for problem, sql in _BOOKS_CHECKS.items():
            row = await (await conn.execute(sql)).fetchone()
            assert row is not None
            if row[0]:
                problems.append(f"{problem} ({row[0]})")
    return problems


async def assert_books_balance(client: ServiceClient, database_url: str) -> None:
    """Assert what a correct service keeps after every test: zero drift, conserved totals,
    ledger figures equal to the payment figures, and every ledger invariant."""
    totals = await client.totals()
    assert totals["drift_accounts"] == 0, totals
    assert totals["minted"] - totals["clawed_back"] == totals["balances"] - totals["debts"], \
        totals
    assert totals["ledger_minted"] == totals["minted"], totals
    assert totals["ledger_clawed_back"] == totals["clawed_back"], totals
    assert await books_problems(database_url) == []
