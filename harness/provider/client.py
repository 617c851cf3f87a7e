"""The harness's handle on a provider over HTTP: the ``/_tokenchaos`` control API, async.

``ProviderClient(base_url, control_key=...)`` configures the webhook endpoint, sets the
delivery policy, waits for quiescence, reads the truth, asks for signed or forged envelopes
and resets between scenarios; it also wraps the test helpers (refund, authenticate,
disputes) for scripts and tests. It works the same against a provider in this process and
one running elsewhere (``tokenchaos provider``, which prints the control key as
``provider_key``). Every control call carries ``Authorization: Bearer <control key>``.
Every httpx error, and every answer that is not what the control API promises, becomes a
``ProviderError`` (``raise … from exc``); nothing here judges the target.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from types import EllipsisType
from typing import Any, TypedDict

import httpx

from harness.errors import ProviderError
from harness.model import DeliveryVariant, ProviderTruth
from harness.provider.policy import DeliveryPolicy
from harness.provider.truth import truth_from_json

__all__ = ["Envelope", "ProviderClient"]

_API_KEY_DEFAULT = "sk_test_tokenchaos"
_POLL_INTERVAL_S = 0.02
_ERROR_BODY_CHARS_MAX = 300


class Envelope(TypedDict):
    """A webhook the provider prepared but did not send: POST ``body`` with ``headers``."""

    body: str
    headers: dict[str, str]


class ProviderClient:
    """Async client of one provider: ``async with ProviderClient(url, control_key=k) as p:``.

    Args:
        base_url: the provider's root, e.g. ``http://127.0.0.1:8123``.
        control_key: the provider's control key (its ``provider_key``), for ``/_tokenchaos``.
        timeout_s: per request.
        api_key: sent to the Stripe-compatible routes (any ``sk_test_…`` is accepted).
    """

    def __init__(self, base_url: str, *, control_key: str, timeout_s: float = 10.0,
                 api_key: str = _API_KEY_DEFAULT) -> None:
        assert timeout_s > 0, timeout_s
        assert control_key, "a provider client needs the provider's control key"
        self.base_url = base_url.rstrip("/")
        self.control_key = control_key
        self._api_key = api_key
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(timeout_s),
                                       follow_redirects=False, trust_env=False)

    async def __aenter__(self) -> ProviderClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- control API -----------------------------------------------------------------------

    async def configure(self, *, webhook_url: str | EllipsisType | None = ...,
                        webhook_secret: str | None = None,
                        tolerance_s: int | None = None) -> dict[str, Any]:
        """Change the webhook endpoint (``None``: store events, deliver none); the config."""
        body: dict[str, Any] = {}
        if webhook_url is not ...:
            body["webhook_url"] = webhook_url
        if webhook_secret is not None:
            body["webhook_secret"] = webhook_secret
        if tolerance_s is not None:
            body["tolerance_s"] = tolerance_s
        return await self._control("PUT", "/_tokenchaos/config", body)

    async def set_policy(self, policy: DeliveryPolicy) -> None:
        """Deliver events emitted from now on by ``policy``."""
        await self._control("PUT", "/_tokenchaos/policy", policy.to_json())

    async def policy(self) -> DeliveryPolicy:
        data = await self._control("GET", "/_tokenchaos/policy")
        try:
            return DeliveryPolicy.from_json(data)
        except (ValueError, TypeError) as exc:
            raise ProviderError(f"the provider at {self.base_url} answered a policy this "
                                f"harness cannot read: {exc}") from exc

    async def pending(self) -> int:
        """Webhook events not yet finished (delayed, held, in flight, retrying, replaying)."""
        data = await self._control("GET", "/_tokenchaos/pending")
        count = data.get("pending_deliveries")
        if not isinstance(count, int):
            raise ProviderError(f"GET /_tokenchaos/pending answered {data!r}, without an "
                                "integer pending_deliveries")
        return count

    async def acknowledged(self, *, above: int = -1, timeout_s: float = 0.0) -> int:
        """Deliveries of real events the target answered 2xx since the reset; with
        ``above``, waits (at most ``timeout_s``) until there are more than that."""
        data = await self._control(
            "GET", f"/_tokenchaos/acknowledged?above={above}&timeout_s={timeout_s:g}")
        count = data.get("acknowledged_deliveries")
        if not isinstance(count, int):
            raise ProviderError(f"GET /_tokenchaos/acknowledged answered {data!r}, without an "
                                "integer acknowledged_deliveries")
        return count

    async def wait_quiescent(self, timeout_s: float,
                             *, poll_interval_s: float = _POLL_INTERVAL_S) -> None:
        """Return once no delivery is pending.

        Raises:
            ProviderError: deliveries were still pending after ``timeout_s``.
        """
        assert timeout_s >= 0, timeout_s
        assert poll_interval_s > 0, poll_interval_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        polls_max = math.ceil(timeout_s / poll_interval_s) + 1
        count = -1
        for _ in range(polls_max):
            count = await self.pending()
            if count == 0:
                return
            if loop.time() >= deadline:
                break
            await asyncio.sleep(min(poll_interval_s, max(0.0, deadline - loop.time())))
        raise ProviderError(f"{count} webhook deliveries still pending after {timeout_s:g} s; "
                            "the target may be down or slow, or the policy's delays, holds "
                            "and retries outlast the timeout (raise quiescence_timeout_s)")

    async def truth_json(self) -> dict[str, Any]:
        """``{intents, events, deliveries, pending_deliveries}``, as the control API says."""
        return await self._control("GET", "/_tokenchaos/truth")

    async def truth(self, *, user_by_target_id: Mapping[str, str], user_key: str = "user_id",
                    tokens_keys: tuple[str, ...] = ("tokens",)) -> ProviderTruth:
        """The truth read into the model, users mapped to logical names."""
        return truth_from_json(await self.truth_json(), user_key=user_key,
                               tokens_keys=tokens_keys, user_by_target_id=user_by_target_id)

    async def envelope(self, *, intent_id: str | None, event_type: str,
                       variant: DeliveryVariant | str = DeliveryVariant.GENUINE,
                       metadata: Mapping[str, str] | None = None) -> Envelope:
        """A webhook signed (or forged) as ``variant`` says, for the harness to send.

        ``intent_id`` None makes up an intent never paid (forged variants only), with
        ``metadata`` or else that of the latest real intent.
        """
        body: dict[str, Any] = {"intent_id": intent_id, "event_type": event_type,
                                "variant": str(DeliveryVariant(variant))}
        if metadata is not None:
            body["metadata"] = dict(metadata)
        data = await self._control("POST", "/_tokenchaos/envelope", body)
        text, headers = data.get("body"), data.get("headers")
        if not isinstance(text, str) or not isinstance(headers, dict):
            raise ProviderError(f"POST /_tokenchaos/envelope answered {data!r}, not "
                                "{body, headers}")
        return Envelope(body=text, headers={str(k): str(v) for k, v in headers.items()})

    async def reset(self) -> None:
        """Forget events and deliveries (intents stay), between scenarios."""
        await self._control("POST", "/_tokenchaos/reset")

    # -- test helpers over the Stripe-compatible API ---------------------------------------

    async def authenticate(self, intent_id: str, outcome: str = "succeed") -> dict[str, Any]:
        """The card holder finishes 3-D Secure (``succeed``) or fails it (``fail``)."""
        return await self._stripe(f"/v1/test_helpers/payment_intents/{intent_id}/authenticate",
                                  {"outcome": outcome})

    async def refund(self, intent_id: str, amount_cents: int | None = None,
                     *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Refund ``amount_cents`` of the intent (None: what is left); the Refund."""
        form = {"payment_intent": intent_id}
        if amount_cents is not None:
            form["amount"] = str(amount_cents)
        return await self._stripe("/v1/refunds", form, idempotency_key=idempotency_key)

    async def open_dispute(self, intent_id: str, amount_cents: int | None = None
                           ) -> dict[str, Any]:
        form = {"payment_intent": intent_id}
        if amount_cents is not None:
            form["amount"] = str(amount_cents)
        return await self._stripe("/v1/test_helpers/disputes", form)

    async def close_dispute(self, dispute_id: str, outcome: str) -> dict[str, Any]:
        return await self._stripe(f"/v1/test_helpers/disputes/{dispute_id}/close",
                                  {"outcome": outcome})

    # -- plumbing --------------------------------------------------------------------------

    async def _control(self, method: str, path: str,
                       body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.control_key}"}
        response = await self._send(method, path, json=dict(body) if body is not None else None,
                                    headers=headers)
        if response.status_code == 401:
            raise ProviderError(f"the provider at {self.base_url} refused the control key for "
                                f"{method} {path} (401); pass the provider_key it printed at "
                                "start (--provider-key or TOKENCHAOS_PROVIDER_KEY)")
        return self._read(method, path, response)

    async def _stripe(self, path: str, form: Mapping[str, str], *,
                      idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._api_key}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        response = await self._send("POST", path, data=dict(form), headers=headers)
        return self._read("POST", path, response)

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ProviderError(f"the provider at {self.base_url} did not answer {method} "
                                f"{path}: {exc!r}; is it running, and is the URL right?"
                                ) from exc

    def _read(self, method: str, path: str, response: httpx.Response) -> dict[str, Any]:
        excerpt = response.text[:_ERROR_BODY_CHARS_MAX]
        if not 200 <= response.status_code < 300:
            raise ProviderError(f"the provider at {self.base_url} answered {method} {path} "
                                f"with {response.status_code}: {excerpt}")
        try:
            data = response.json()
        except ValueError as exc:
            raise ProviderError(f"the provider at {self.base_url} answered {method} {path} "
                                f"with a body that is not JSON: {excerpt!r}") from exc
        if not isinstance(data, dict):
            raise ProviderError(f"the provider at {self.base_url} answered {method} {path} "
                                f"with {excerpt!r}, not a JSON object")
        return data
