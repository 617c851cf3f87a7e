"""The provider's HTTP face: Stripe's API (form-encoded) and the ``/_tokenchaos`` control API.

``create_app(config)`` returns a Starlette ASGI app. Under ``/v1`` it speaks enough of
Stripe for a service using the official SDK: PaymentIntents, Refunds, Events, Charges,
Disputes, and the test helpers a card holder or a bank would use. Any ``sk_test_…`` key is
accepted (Bearer, or Basic as ``curl -u`` sends it); anything else is a 401 in Stripe's
error shape. Under ``/_tokenchaos`` (JSON) the harness configures the webhook endpoint,
sets the delivery policy, waits for quiescence, reads the truth, asks for signed or forged
envelopes, and resets between scenarios. That API hands out the webhook secret and can
sign any event, so every route under it needs the provider's control key
(``Authorization: Bearer <control key>``, compared in constant time); without it the answer
is a 401 that says how to authenticate and reveals nothing else.

Routes only parse, call the state machine or the dispatcher, and render; the rules live in
``state.py`` / ``operations.py`` and delivery in ``delivery.py``.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import random
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from harness.limits import DEFAULT_LIMITS, Limits
from harness.model import DeliveryVariant
from harness.provider.delivery import WAIT_ACKNOWLEDGED_S_MAX, Dispatcher, delivery_json
from harness.provider.envelopes import build_envelope
from harness.provider.forms import FORM_BODY_BYTES_MAX, parse_pairs
from harness.provider.objects import API_VERSION, StripeError
from harness.provider.policy import DeliveryPolicy
from harness.provider.signing import new_webhook_secret
from harness.provider.state import Answer, ProviderState

__all__ = ["CONTROL_KEY_CHARS_MIN", "ProviderConfig", "ProviderRuntime", "check_control_key",
           "create_app", "new_control_key"]

CONTROL_KEY_CHARS_MIN = 16  # a shorter key is guessable; refuse it rather than be weak
_CONTROL_PREFIX = "/_tokenchaos"
_API_KEY_PREFIX = "sk_test_"
_CONTROL_BODY_BYTES_MAX = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderConfig:
    """How a provider starts; the webhook endpoint can be changed later (PUT config).

    ``seed`` drives every id (``None``: drawn fresh). A fixed seed repeats ids after a
    restart, which a target whose database outlives the provider mistakes for duplicates.
    ``control_key`` guards the ``/_tokenchaos`` control API; drawn fresh unless given.
    """

    webhook_url: str | None = None  # None: events are stored, not delivered
    webhook_secret: str = field(default_factory=new_webhook_secret)
    control_key: str = field(default_factory=lambda: new_control_key())
    tolerance_s: int = 300  # the target's signature tolerance; stale copies are older
    seed: int | None = None
    limits: Limits = DEFAULT_LIMITS

    def __post_init__(self) -> None:
        if not self.webhook_secret:
            raise ValueError("ProviderConfig.webhook_secret must not be empty")
        check_control_key(self.control_key)
        if self.tolerance_s < 1:
            raise ValueError(f"ProviderConfig.tolerance_s must be >= 1, got {self.tolerance_s}")
        if self.webhook_url is not None:
            _check_url(self.webhook_url)


def new_control_key() -> str:
    """A fresh control key: 32 url-safe random characters after ``tck_``."""
    return "tck_" + secrets.token_urlsafe(24)


def check_control_key(key: str) -> None:
    """Raise ``ValueError`` unless ``key`` is usable as a control key."""
    if len(key) < CONTROL_KEY_CHARS_MIN or not key.isprintable() or any(
            c.isspace() for c in key):
        raise ValueError(f"the provider's control key must be at least {CONTROL_KEY_CHARS_MIN} "
                         "printable characters without spaces; leave it out to draw a fresh "
                         "one")


class ProviderRuntime:
    """One provider: its state machine, its dispatcher, and the randomness for envelopes."""

    def __init__(self, config: ProviderConfig) -> None:
        seed = config.seed if config.seed is not None else secrets.randbits(63)
        self.seed = seed
        self.control_key = config.control_key
        self.state = ProviderState(seed=seed, objects_max=config.limits.history_events_max)
        self.dispatcher = Dispatcher(webhook_url=config.webhook_url,
                                     webhook_secret=config.webhook_secret,
                                     tolerance_s=config.tolerance_s, limits=config.limits)
        self.envelope_rng = random.Random(seed ^ 0xE4E1_0BE5)
        self.state.webhook_endpoints_count = 1 if config.webhook_url else 0

    def config_json(self) -> dict[str, Any]:
        dispatcher = self.dispatcher
        return {"webhook_url": dispatcher.webhook_url,
                "webhook_secret": dispatcher.webhook_secret,
                "tolerance_s": dispatcher.tolerance_s}

    def truth_json(self) -> dict[str, Any]:
        """The state's truth plus every delivery attempt and what is still pending."""
        return {**self.state.truth_json(),
                "deliveries": [delivery_json(d) for d in self.dispatcher.deliveries()],
                "pending_deliveries": self.dispatcher.pending,
                "dispatcher_errors": list(self.dispatcher.errors)}


def create_app(config: ProviderConfig) -> Starlette:
    """The provider as an ASGI app; its lifespan starts and stops the webhook dispatcher."""
    runtime = ProviderRuntime(config)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with runtime.dispatcher:
            yield

    app = Starlette(routes=_ROUTES, lifespan=lifespan)
    app.state.runtime = runtime
    return app


# -- Stripe's API ---------------------------------------------------------------------------


def _runtime(request: Request) -> ProviderRuntime:
    runtime: ProviderRuntime = request.app.state.runtime
    return runtime


def _mutation(operation: str, id_param: str | None = None) -> Any:
    """A POST route running ``operation`` through the state machine, then the dispatcher."""
    async def endpoint(request: Request) -> Response:
        refused = _check_key(request)
        if refused is not None:
            return refused
        runtime = _runtime(request)
        key = request.headers.get("idempotency-key")
        try:
            params = await _params(request)
            if not runtime.dispatcher.has_room():
                raise StripeError(503, "the webhook queue is full; retry shortly",
                                  type="api_error")
        except StripeError as error:
            return _stripe_error(error, key)
        object_id = request.path_params[id_param] if id_param else None
        answer = runtime.state.call(operation, params, object_id=object_id,
                                    idempotency_key=key)
        for event in answer.events:
            runtime.dispatcher.submit(event)
        return _answer(answer, key)
    return endpoint


def _reader(kind: str) -> Any:
    async def endpoint(request: Request) -> Response:
        refused = _check_key(request)
        if refused is not None:
            return refused
        try:
            params = await _params(request)
        except StripeError as error:
            return _stripe_error(error, None)
        answer = _runtime(request).state.retrieve(kind, request.path_params["id"], params)
        return _answer(answer, None)
    return endpoint


async def _list_events(request: Request) -> Response:
    refused = _check_key(request)
    if refused is not None:
        return refused
    try:
        params = await _params(request)
    except StripeError as error:
        return _stripe_error(error, None)
    return _answer(_runtime(request).state.list_events(params), None)


async def _unrecognized(request: Request) -> Response:
    error = StripeError(404, f"Unrecognized request URL ({request.method}: "
                        f"{request.url.path}). The simulator serves a subset of Stripe's API; "
                        "see DESIGN section 4.")
    return _stripe_error(error, None)


def _check_key(request: Request) -> Response | None:
    """None when the request carries an ``sk_test_`` key; else Stripe's 401."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    key = credentials.strip()
    if scheme.lower() == "basic":
        with contextlib.suppress(ValueError):
            key = base64.b64decode(key, validate=True).decode().partition(":")[0]
    if not key:
        message = ("You did not provide an API key. You need to provide your API key in the "
                   "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                   "YOUR_SECRET_KEY').")
    elif not key.startswith(_API_KEY_PREFIX):
        message = f"Invalid API Key provided: {key[:8]}***; the simulator takes any sk_test_ key"
    else:
        return None
    return _stripe_error(StripeError(401, message), None)


async def _params(request: Request) -> dict[str, Any]:
    """Query pairs, then form pairs for a POST; JSON bodies are refused as Stripe does."""
    pairs = list(request.query_params.multi_items())
    if request.method == "POST":
        body = await _read_body(request, FORM_BODY_BYTES_MAX)
        content_type = request.headers.get("content-type", "")
        if body and not content_type.startswith("application/x-www-form-urlencoded"):
            raise StripeError(400, f"Invalid request: the API takes form-encoded bodies "
                              f"(application/x-www-form-urlencoded), not {content_type!r}")
        try:
            pairs += urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                            max_num_fields=1_000)
        except (UnicodeDecodeError, ValueError) as exc:
            raise StripeError(400, f"Invalid form body: {exc}") from exc
    return parse_pairs(pairs)


async def _read_body(request: Request, bytes_max: int) -> bytes:
    """The request body, refused past ``bytes_max`` without reading it all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > bytes_max:
        raise StripeError(400, f"Request body larger than {bytes_max} bytes")
    chunks: list[bytes] = []
    read_bytes = 0
    async for chunk in request.stream():
        read_bytes += len(chunk)
        if read_bytes > bytes_max:
            raise StripeError(400, f"Request body larger than {bytes_max} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(answer: Answer, key: str | None) -> Response:
    headers = {"Request-Id": answer.request_id, "Stripe-Version": API_VERSION}
    if key is not None:
        headers["Idempotency-Key"] = key
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(dict(answer.body), status_code=answer.status_code, headers=headers)


def _stripe_error(error: StripeError, key: str | None) -> Response:
    headers = {"Stripe-Version": API_VERSION}
    if key is not None:
        headers["Idempotency-Key"] = key
    if error.status_code == 503:
        headers["Stripe-Should-Retry"] = "true"
    return JSONResponse(error.to_json(), status_code=error.status_code, headers=headers)


# -- The control API --------------------------------------------------------------------------


_Endpoint = Any  # Callable[[Request], Awaitable[Response]]


def _guarded(endpoint: _Endpoint) -> _Endpoint:
    """``endpoint`` behind the control key: a request without it never reaches the route."""
    async def guarded(request: Request) -> Response:
        refused = _check_control_key(request)
        if refused is not None:
            return refused
        response: Response = await endpoint(request)
        return response
    return guarded


def _check_control_key(request: Request) -> Response | None:
    """None when the request carries this provider's control key; else a bare 401.

    The key is compared in constant time, and the answer is the same for a missing key, a
    wrong one and a wrong scheme: it says how to authenticate, never what was expected.
    """
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    expected = _runtime(request).control_key.encode()
    given = credentials.strip().encode()
    if scheme.lower() == "bearer" and hmac.compare_digest(given, expected):
        return None
    message = ("the control API needs the provider's control key: send 'Authorization: "
               "Bearer <provider key>', the provider_key that tokenchaos provider or "
               "tokenchaos serve printed (TOKENCHAOS_PROVIDER_KEY / --provider-key for "
               "tokenchaos run)")
    return JSONResponse({"error": {"type": "authentication_error", "message": message}},
                        status_code=401,
                        headers={"WWW-Authenticate": 'Bearer realm="tokenchaos-control"'})


async def _unknown_control(request: Request) -> Response:
    return _control_error(f"no control route {request.method} {request.url.path}; see "
                          "harness/provider/app.py", status_code=404)


async def _get_config(request: Request) -> Response:
    return JSONResponse(_runtime(request).config_json())


async def _put_config(request: Request) -> Response:
    runtime = _runtime(request)
    try:
        data = await _json_object(request)
        unknown = sorted(set(data) - {"webhook_url", "webhook_secret", "tolerance_s"})
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known: webhook_url, "
                             "webhook_secret, tolerance_s")
        current = runtime.config_json()
        url = data.get("webhook_url", current["webhook_url"])
        secret = data.get("webhook_secret", current["webhook_secret"])
        tolerance_s = data.get("tolerance_s", current["tolerance_s"])
        if url is not None:
            _check_url(url)
        if not isinstance(secret, str) or not secret:
            raise ValueError("webhook_secret must be a non-empty string, e.g. whsec_…")
        if not isinstance(tolerance_s, int) or isinstance(tolerance_s, bool) or tolerance_s < 1:
            raise ValueError(f"tolerance_s must be a positive integer, got {tolerance_s!r}")
    except ValueError as exc:
        return _control_error(str(exc))
    runtime.dispatcher.configure(webhook_url=url, webhook_secret=secret,
                                 tolerance_s=tolerance_s)
    runtime.state.webhook_endpoints_count = 1 if url else 0
    return JSONResponse(runtime.config_json())


async def _get_policy(request: Request) -> Response:
    return JSONResponse(_runtime(request).dispatcher.policy.to_json())


async def _put_policy(request: Request) -> Response:
    try:
        policy = DeliveryPolicy.from_json(await _json_object(request))
    except (ValueError, TypeError) as exc:
        return _control_error(f"invalid DeliveryPolicy: {exc}")
    _runtime(request).dispatcher.set_policy(policy)
    return JSONResponse(policy.to_json())


async def _pending(request: Request) -> Response:
    return JSONResponse({"pending_deliveries": _runtime(request).dispatcher.pending})


async def _acknowledged(request: Request) -> Response:
    """``?above=N&timeout_s=T``: answer once more than N deliveries were acknowledged, or
    after T seconds (a long poll, so a fault can land just after an acknowledgement)."""
    dispatcher = _runtime(request).dispatcher
    try:
        above = int(request.query_params.get("above", "-1"))
        timeout_s = float(request.query_params.get("timeout_s", "0"))
    except ValueError:
        return _control_error("above must be an integer and timeout_s a number")
    if above < -1 or not 0 <= timeout_s <= WAIT_ACKNOWLEDGED_S_MAX:
        return _control_error(f"above must be -1 or more and timeout_s from 0 to "
                              f"{WAIT_ACKNOWLEDGED_S_MAX:g}")
    count = await dispatcher.wait_acknowledged(above, timeout_s)
    return JSONResponse({"acknowledged_deliveries": count})


async def _truth(request: Request) -> Response:
    return JSONResponse(_runtime(request).truth_json())


async def _envelope(request: Request) -> Response:
    runtime = _runtime(request)
    try:
        data = await _json_object(request)
        unknown = sorted(set(data) - {"intent_id", "event_type", "variant", "metadata"})
        if unknown:
            raise ValueError(f"unknown envelope keys {unknown}; known: intent_id, "
                             "event_type, variant, metadata")
        intent_id, event_type = data.get("intent_id"), data.get("event_type")
        variant = DeliveryVariant(data.get("variant", "genuine"))
        metadata = data.get("metadata")
        if intent_id is not None and not isinstance(intent_id, str):
            raise ValueError("intent_id must be a string or null")
        if not isinstance(event_type, str):
            raise ValueError("event_type must be a string, e.g. payment_intent.succeeded")
        if metadata is not None and not (isinstance(metadata, Mapping) and all(
                isinstance(v, str) for v in metadata.values())):
            raise ValueError("metadata must be an object of strings")
    except ValueError as exc:
        return _control_error(str(exc))
    try:
        signed = build_envelope(
            runtime.state, intent_id=intent_id, event_type=event_type, variant=variant,
            secret=runtime.dispatcher.webhook_secret, tolerance_s=runtime.dispatcher.tolerance_s,
            rng=runtime.envelope_rng, metadata=metadata)
    except StripeError as error:
        return _stripe_error(error, None)
    return JSONResponse(signed.to_json())


async def _reset(request: Request) -> Response:
    runtime = _runtime(request)
    runtime.state.forget_events()  # before awaiting: later events belong to the next scenario
    await runtime.dispatcher.reset()
    return JSONResponse({"reset": True, "intents_kept": len(runtime.state.intents)})


async def _health(_: Request) -> Response:
    return JSONResponse({"ok": True})


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await _read_body(request, _CONTROL_BODY_BYTES_MAX)
    except StripeError as error:
        raise ValueError(error.message) from error
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise ValueError(f"the body must be a JSON object: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"the body must be a JSON object, not {type(data).__name__}")
    return data


def _control_error(message: str, *, status_code: int = 400) -> Response:
    return JSONResponse({"error": {"type": "invalid_request_error", "message": message}},
                        status_code=status_code)


def _check_url(url: object) -> None:
    if not isinstance(url, str):
        raise ValueError(f"webhook_url must be a string or null, got {url!r}")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"webhook_url {url!r} is not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"webhook_url {url!r} must be http(s)://host[:port]/path")


_ROUTES = [
    Route("/v1/payment_intents", _mutation("create_intent"), methods=["POST"]),
    Route("/v1/payment_intents/{id}", _reader("payment_intent"), methods=["GET"]),
    Route("/v1/payment_intents/{id}", _mutation("update_intent", "id"), methods=["POST"]),
    Route("/v1/payment_intents/{id}/confirm", _mutation("confirm_intent", "id"),
          methods=["POST"]),
    Route("/v1/payment_intents/{id}/cancel", _mutation("cancel_intent", "id"),
          methods=["POST"]),
    Route("/v1/charges/{id}", _reader("charge"), methods=["GET"]),
    Route("/v1/refunds", _mutation("create_refund"), methods=["POST"]),
    Route("/v1/refunds/{id}", _reader("refund"), methods=["GET"]),
    Route("/v1/disputes/{id}", _reader("dispute"), methods=["GET"]),
    Route("/v1/events", _list_events, methods=["GET"]),
    Route("/v1/events/{id}", _reader("event"), methods=["GET"]),
    Route("/v1/test_helpers/payment_intents/{id}/authenticate",
          _mutation("authenticate_intent", "id"), methods=["POST"]),
    Route("/v1/test_helpers/disputes", _mutation("create_dispute"), methods=["POST"]),
    Route("/v1/test_helpers/disputes/{id}/close", _mutation("close_dispute", "id"),
          methods=["POST"]),
    Route("/_tokenchaos/config", _guarded(_get_config), methods=["GET"]),
    Route("/_tokenchaos/config", _guarded(_put_config), methods=["PUT"]),
    Route("/_tokenchaos/policy", _guarded(_get_policy), methods=["GET"]),
    Route("/_tokenchaos/policy", _guarded(_put_policy), methods=["PUT"]),
    Route("/_tokenchaos/pending", _guarded(_pending), methods=["GET"]),
    Route("/_tokenchaos/acknowledged", _guarded(_acknowledged), methods=["GET"]),
    Route("/_tokenchaos/truth", _guarded(_truth), methods=["GET"]),
    Route("/_tokenchaos/envelope", _guarded(_envelope), methods=["POST"]),
    Route("/_tokenchaos/reset", _guarded(_reset), methods=["POST"]),
    Route("/_tokenchaos/health", _guarded(_health), methods=["GET"]),
    # Anything else under the prefix is refused the same way before it is found missing,
    # so an unauthenticated caller cannot map the control API.
    Route(_CONTROL_PREFIX + "/{path:path}", _guarded(_unknown_control),
          methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
    Route("/{path:path}", _unrecognized,
          methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
]
