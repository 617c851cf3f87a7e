"""A small typed client for the local stack's API, and a stack that runs in a thread.

The stack runs its own event loop in a background thread, so tests can be plain functions
that talk HTTP with ``httpx.Client`` while the provider delivers webhooks.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from harness.stack import LocalStack, StackConfig, StackInfo

_STARTUP_TIMEOUT_S = 60.0
_QUIESCENCE_TIMEOUT_S = 30.0


class StackThread:
    """A LocalStack living in its own thread and event loop."""

    def __init__(self, config: StackConfig) -> None:
        self._stack = LocalStack(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> StackInfo:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._stack.start(), self._loop)
        try:
            return future.result(timeout=_STARTUP_TIMEOUT_S)
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        future = asyncio.run_coroutine_threadsafe(self._stack.stop(), self._loop)
        future.result(timeout=_STARTUP_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    @property
    def stack(self) -> LocalStack:
        return self._stack


@dataclass
class User:
    id: int
    token: str
    kind: str


class Api:
    """The reference service and the provider, as a test talks to them."""

    def __init__(self, info: StackInfo) -> None:
        self.info = info
        self.http = httpx.Client(timeout=30.0, limits=httpx.Limits(max_connections=300))

    def close(self) -> None:
        self.http.close()

    # -- service -------------------------------------------------------------------------

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.info.admin_key}"}
        return self.http.request(method, self.info.service_url + path, headers=headers,
                                 **kwargs)

    def user_call(self, user: User, method: str, path: str, *, key: str | None = None,
                  **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {user.token}", **kwargs.pop("headers", {})}
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.http.request(method, self.info.service_url + path, headers=headers,
                                 **kwargs)

    def create_user(self, kind: str = "fan") -> User:
        response = self.admin("POST", "/v1/users", json={"kind": kind})
        assert response.status_code == 201, response.text
        body = response.json()
        return User(id=body["id"], token=body["token"], kind=kind)

    def purchase(self, user: User, tokens: int, *, payment_method: str = "pm_card_visa",
                 key: str | None = None) -> httpx.Response:
        return self.user_call(user, "POST", "/v1/purchases", key=key or new_key(),
                              json={"tokens": tokens, "payment_method": payment_method})

    def tip(self, sender: User, recipient: User, amount: int, *,
            key: str | None = None) -> httpx.Response:
        return self.user_call(sender, "POST", "/v1/tips", key=key or new_key(),
                              json={"to": recipient.id, "amount": amount})

    def me(self, user: User) -> dict[str, Any]:
        response = self.user_call(user, "GET", "/v1/me")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def balance(self, user: User) -> int:
        return int(self.me(user)["balance"])

    def totals(self) -> dict[str, int]:
        response = self.admin("GET", "/v1/audit/totals")
        assert response.status_code == 200, response.text
        body: dict[str, int] = response.json()
        return body

    def account(self, user: User) -> dict[str, Any]:
        response = self.admin("GET", "/v1/audit/accounts")
        assert response.status_code == 200, response.text
        for account in response.json():
            if account["id"] == user.id:
                return dict(account)
        raise AssertionError(f"user {user.id} missing from the audit")

    def fund(self, user: User, tokens: int) -> str:
        """Buy ``tokens`` with a card that succeeds and wait for the webhook: the intent id."""
        response = self.purchase(user, tokens)
        assert response.status_code == 201, response.text
        self.settle()
        return str(response.json()["intent_id"])

    # -- provider ------------------------------------------------------------------------

    def provider(self, method: str, path: str, *, data: dict[str, Any] | None = None,
                 json: Any = None, key: str | None = None) -> httpx.Response:
        # The control API takes the provider's control key; the Stripe API any sk_test_ key.
        bearer = self.info.control_key if path.startswith("/_tokenchaos") \
            else "sk_test_tokenchaos"
        headers = {"Authorization": f"Bearer {bearer}"}
        if key:
            headers["Idempotency-Key"] = key
        return self.http.request(method, self.info.provider_url + path, data=data, json=json,
                                 headers=headers)

    def refund(self, intent_id: str, amount_cents: int | None = None) -> httpx.Response:
        data: dict[str, Any] = {"payment_intent": intent_id}
        if amount_cents is not None:
            data["amount"] = amount_cents
        response = self.provider("POST", "/v1/refunds", data=data)
        assert response.status_code == 200, response.text
        return response

    def set_policy(self, **policy: Any) -> None:
        response = self.provider("PUT", "/_tokenchaos/policy", json=policy)
        assert response.status_code == 200, response.text

    def settle(self) -> None:
        """Wait until the provider has no webhook delivery pending."""
        deadline = time.monotonic() + _QUIESCENCE_TIMEOUT_S
        while time.monotonic() < deadline:
            response = self.provider("GET", "/_tokenchaos/pending")
            if response.json()["pending_deliveries"] == 0:
                return
            time.sleep(0.02)
        raise AssertionError("webhook deliveries still pending after "
                             f"{_QUIESCENCE_TIMEOUT_S:.0f} s")

    def deliveries(self) -> list[dict[str, Any]]:
        response = self.provider("GET", "/_tokenchaos/truth")
        return list(response.json()["deliveries"])


def new_key() -> str:
    return uuid.uuid4().hex


def at_once(*calls: Any) -> list[Any]:
    """Run the callables concurrently from threads, released together by a barrier."""
    barrier = threading.Barrier(len(calls))

    def _run(call: Any) -> Any:
        barrier.wait(timeout=10)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(_run, calls))



__all__ = ["Api", "StackThread", "User", "at_once", "new_key"]
