"""Sans-IO protocol: the HTTP requests an op needs, and how the answers become an Outcome.

Rule 1: nothing here touches a socket, a clock or randomness; there is no httpx import.
Transports (``harness/targets/http_async.py``, a locust client) carry our small
``HttpRequest``/``HttpResponse`` values and never judge; this module never sends.

Rule 2: one op is one *flow*, a generator in the manner of httpx's ``auth_flow``: it
yields requests, is sent responses, and returns the ``Outcome``. Most ops are one step;
a harness-sent ``webhook`` is two (ask the provider for a signed or forged envelope, then
post it to the target). ``drive_sync`` here and ``drive_async`` in the transport run them.

Classification is a table, as h11 keeps its transitions: the profile lists the OK and
the FAIL statuses of every op; any 5xx, any status it does not list, and any body over
the size bound are INFO, because the write may have been committed (the outcome keeps a
bounded excerpt of such a body). An OK answer the profile's ``replay`` rule matches
carries ``"replayed": 1``: the first answer again, nothing new applied.

One answer is not the target's behaviour but our own mistake: the target refusing our
credentials (a 401 to any target op; a 403 to a user reading their own balance). The
flow then raises ``CredentialsRefused`` (a ``TargetError``, exit 2) instead of returning
an outcome, so a run with a wrong ``[auth]`` stops at once with the fix, rather than
recording thousands of refusals. Ops against the
provider (``authenticate``, ``refund``, ``dispute_open``, ``dispute_close``) speak its
Stripe-compatible, form-encoded API; they do not depend on the target's profile.

Logical names (``fan_0``, ``p_3``, ``c_1``) become the target's and the provider's ids
through a ``Resolver``, which learns them from completions (``Resolver.learn``). A name
that cannot be resolved yet raises ``Unresolved`` when the flow is built, before anything
is sent, so the runner can skip the op instead of inventing an id.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.errors import ProviderError, TargetError, UsageError
from harness.model import BODY_EXCERPT_CHARS_MAX, F, Kind, Op, Outcome
from harness.targets.profile import (
    RESULT_KEYS,
    TEMPLATE_VARIABLES,
    FileProvisioning,
    OpSpec,
    Profile,
    ReplayRule,
    Template,
)

__all__ = [
    "ACTOR_KEY",
    "FLOW_STEPS_MAX",
    "PROVIDER_API_KEY_DEFAULT",
    "REPLAYED_KEY",
    "SERVER_ERROR",
    "Credentials",
    "CredentialsRefused",
    "Endpoints",
    "Flow",
    "FlowContext",
    "HttpRequest",
    "HttpResponse",
    "Resolver",
    "Unresolved",
    "Unsupported",
    "body_excerpt",
    "build_request",
    "classify",
    "credentials_refused",
    "drive_sync",
    "json_path",
    "op_flow",
    "read_response",
    "render_json",
    "render_text",
    "replayed",
    "server_error",
]

FLOW_STEPS_MAX = 4  # requests one flow may make; the webhook flow makes two
PROVIDER_API_KEY_DEFAULT = "sk_test_tokenchaos"

# Whose bearer token an op carries: the user who acts.
ACTOR_KEY: Mapping[F, str] = {
    F.PURCHASE: "user", F.TIP: "sender", F.CALL_OPEN: "user", F.CALL_CHARGE: "user",
    F.CALL_END: "user", F.READ_BALANCE: "user",
}
_USER_ROLES = frozenset({"user", "sender", "recipient", "creator"})
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}")
_INTEGER_TEXT = re.compile(r"^-?[0-9]+$")


# ---------------------------------------------------------------------------------------
# Values.


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest:
    """One request to send. ``url`` is absolute; ``body`` is already encoded."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpResponse:
    """One answer. A transport may cut ``body`` just past the size bound it was given."""

    status_code: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


Flow = Generator[HttpRequest, HttpResponse, Outcome]


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """A provisioned user: the target's id for them (as text) and their bearer token."""

    target_id: str
    token: str


class Unresolved(LookupError):
    """A logical name the op needs has no id yet (its referent failed or never ran)."""


class Unsupported(LookupError):
    """The target's profile (or the run) offers no way to perform this op kind."""


class CredentialsRefused(TargetError):
    """The target refused the credentials the profile presents: fix ``[auth]``, not the service."""


@dataclass(slots=True)
class Resolver:
    """Logical names to ids: users from provisioning, the rest learned from completions."""

    users: dict[str, Credentials] = field(default_factory=dict)
    intents: dict[str, str] = field(default_factory=dict)  # purchase -> PaymentIntent id
    calls: dict[str, str] = field(default_factory=dict)  # call -> the target's call id
    disputes: dict[str, str] = field(default_factory=dict)  # dispute -> provider dispute id

    def target_id(self, user: object) -> str:
        return self._user(user).target_id

    def token(self, user: object) -> str:
        return self._user(user).token

    def intent_id(self, purchase: object) -> str:
        return _lookup(self.intents, purchase, "purchase", "its purchase did not succeed")

    def call_id(self, call: object) -> str:
        return _lookup(self.calls, call, "call", "its call_open did not succeed")

    def dispute_id(self, dispute: object) -> str:
        return _lookup(self.disputes, dispute, "dispute", "its dispute_open did not succeed")

    def learn(self, op: Op, outcome: Outcome) -> None:
        """Remember the ids an OK completion names. The first id learned for a name wins."""
        if outcome.kind != Kind.OK:
            return
        learned = {F.PURCHASE: (self.intents, "purchase", "intent_id"),
                   F.AUTHENTICATE: (self.intents, "purchase", "intent_id"),
                   F.CALL_OPEN: (self.calls, "call", "call_id"),
                   F.DISPUTE_OPEN: (self.disputes, "dispute", "dispute_id")}.get(op.f)
        if learned is None:
            return
        table, name_key, id_key = learned
        name, new_id = op.value.get(name_key), outcome.value.get(id_key)
        if isinstance(name, str) and new_id is not None:
            table.setdefault(name, str(new_id))

    def _user(self, user: object) -> Credentials:
        if not isinstance(user, str) or user not in self.users:
            raise Unresolved(f"user {user!r} was not provisioned")
        return self.users[user]


def _lookup(table: Mapping[str, str], name: object, what: str, why: str) -> str:
    if not isinstance(name, str):
        raise Unresolved(f"the op names no {what} (got {name!r})")
    if name not in table:
        raise Unresolved(f"{what} {name!r} has no id: {why}")
    return table[name]


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoints:
    """Where requests go: the target, and the provider for provider ops and envelopes."""

    target_url: str
    provider_url: str | None = None
    provider_api_key: str = PROVIDER_API_KEY_DEFAULT
    provider_control_key: str | None = None  # the simulator's /_tokenchaos key, for envelopes


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowContext:
    """Everything a flow needs besides its op."""

    profile: Profile
    endpoints: Endpoints
    resolver: Resolver
    response_body_bytes_max: int


# ---------------------------------------------------------------------------------------
# Flows.


def op_flow(op: Op, ctx: FlowContext) -> Flow:
    """The flow that performs ``op``. Its first request is built now, eagerly.

    Raises:
        Unresolved: a logical name the op needs has no id yet; nothing was sent.
        Unsupported: the profile has no such op, or a provider op runs without a provider.
        UsageError: a template cannot convert a value as the profile asks.
    """
    if op.f in _PROVIDER_BUILDERS:
        request, read = _PROVIDER_BUILDERS[op.f](op, ctx)
        return _one_step(request, read)
    spec = _spec(ctx.profile, op.f)
    if op.f == F.WEBHOOK:
        return _webhook_flow(op, spec, ctx, _envelope_request(op, ctx))
    request = build_request(op, spec, ctx)
    return _target_step(op, spec, request, ctx)


def drive_sync(flow: Flow, send: Callable[[HttpRequest], HttpResponse | Outcome]) -> Outcome:
    """Run a flow over a synchronous transport.

    ``send`` returns the response, or the Outcome its transport failure maps to (which
    then ends the flow).
    """
    request = next(flow)
    for _ in range(FLOW_STEPS_MAX):
        answer = send(request)
        if isinstance(answer, Outcome):
            flow.close()
            return answer
        try:
            request = flow.send(answer)
        except StopIteration as stop:
            outcome: Outcome = stop.value
            return outcome
    raise AssertionError(f"a flow made more than {FLOW_STEPS_MAX} requests")


def _one_step(request: HttpRequest, read: Callable[[HttpResponse], Outcome]) -> Flow:
    response = yield request
    return read(response)


def _target_step(op: Op, spec: OpSpec, request: HttpRequest, ctx: FlowContext) -> Flow:
    response = yield request
    if credentials_refused(op.f, response.status_code):
        raise CredentialsRefused(
            f"the target refused our credentials ({response.status_code} on {op.f.value} "
            f"#{op.id}): check [auth] header and scheme in {ctx.profile.source} (it sends "
            f"{ctx.profile.auth.header}: {_scheme_shown(ctx.profile)}<token>)"
            f"{_stale_tokens_hint(ctx.profile)}; the answer was "
            f"{body_excerpt(response.body)[:200]!r}")
    return read_response(op, spec, response, ctx)


def credentials_refused(f: F, status_code: int) -> bool:
    """Whether an answer to a target op means our credentials were refused. Pure.

    A 401 to any op but a webhook (which carries no token of ours: a 401 there is the
    target rejecting a forged signature, as it should). A 403 only to ``read_balance``:
    it reads the caller's own account, which no correct service forbids; a 403 to a tip
    or a call charge may be the right answer (another user's call), so it stays a FAIL.
    """
    if f == F.WEBHOOK or f not in ACTOR_KEY:
        return False
    return status_code == 401 or (status_code == 403 and f == F.READ_BALANCE)


def _scheme_shown(profile: Profile) -> str:
    return f"{profile.auth.scheme} " if profile.auth.scheme else ""


def _stale_tokens_hint(profile: Profile) -> str:
    if isinstance(profile.provisioning, FileProvisioning):
        return ", and that the users file's tokens are still valid"
    return ""


def _spec(profile: Profile, f: F) -> OpSpec:
    spec = profile.ops.get(f)
    if spec is None:
        raise Unsupported(f"profile {profile.name!r} ({profile.source}) has no [ops.{f.value}]")
    return spec


# ---------------------------------------------------------------------------------------
# Target ops: requests from the profile's templates, outcomes from its status lists.


def build_request(op: Op, spec: OpSpec, ctx: FlowContext) -> HttpRequest:
    """The request for a target op, from its profile templates. Pure."""
    assert spec.f == op.f, (spec.f, op.f)
    assert spec.variables <= TEMPLATE_VARIABLES[op.f], spec.variables
    variables = {name: _variable(name, op, ctx) for name in spec.variables}
    headers: list[tuple[str, str]] = [("Accept", "application/json")]
    actor = ACTOR_KEY.get(op.f)
    if actor is not None:
        token = ctx.resolver.token(op.value.get(actor))
        headers.append((ctx.profile.auth.header, ctx.profile.auth.value(token)))
    carrier, key_name = spec.idempotency.carrier, spec.idempotency.name
    key = op.idempotency_key if carrier != "none" else None  # "none": no key, ever
    templated = {name.lower() for name in spec.headers}
    if carrier == "header" and key is not None and key_name is not None \
            and key_name.lower() not in templated:
        headers.append((key_name, key))
    headers.extend((name, render_text(text, variables)) for name, text in spec.headers.items())
    data = None if spec.body is None else render_json(spec.body, variables)
    if carrier == "body" and key is not None and key_name is not None:
        assert data is None or isinstance(data, dict), "checked when the profile loaded"
        data = {**(data or {}), key_name: key}  # the template's own field is the same key
    body = b""
    if data is not None:
        body = json.dumps(data, separators=(",", ":")).encode()
        headers.append(("Content-Type", "application/json"))
    path = render_text(spec.path, variables, quote=True)
    return HttpRequest(method=spec.method, url=ctx.endpoints.target_url + path,
                       headers=tuple(headers), body=body)


def read_response(op: Op, spec: OpSpec, response: HttpResponse, ctx: FlowContext) -> Outcome:
    """The Outcome of a target op's answer. Pure."""
    outcome = classify(spec, response, response_body_bytes_max=ctx.response_body_bytes_max,
                       error_code_path=ctx.profile.error_code_path)
    if outcome.kind != Kind.OK:
        return outcome
    body = response.json()
    value = {key: _scalar(key, json_path(body, spec.result[key]) if key in spec.result else None)
             for key in sorted(RESULT_KEYS[op.f])}
    if spec.replay is not None and replayed(spec.replay, response, body):
        value[REPLAYED_KEY] = 1
    return Outcome(kind=Kind.OK, value=value, status_code=response.status_code)


REPLAYED_KEY = "replayed"  # in an OK value: 1 when the answer is a replay of an earlier one


def replayed(rule: ReplayRule, response: HttpResponse, body: Any) -> bool:
    """Whether an OK answer is a replay by the profile's rule. Pure.

    A header rule compares the header's text (name in any case, value exactly, spaces
    around it ignored); a body rule compares the JSON value at the dotted path, type and
    all (``false`` is not ``0``, and ``"1"`` is not ``1``).
    """
    if rule.carrier == "header":
        wanted = rule.name.lower()
        return any(name.lower() == wanted and text.strip() == rule.equals
                   for name, text in response.headers)
    return _same_json(json_path(body, rule.name), rule.equals)


def _same_json(seen: Any, equals: Any) -> bool:
    if isinstance(seen, bool) or isinstance(equals, bool):
        return isinstance(seen, bool) and isinstance(equals, bool) and seen == equals
    if isinstance(seen, int | float) and isinstance(equals, int | float):
        return seen == equals
    return type(seen) is type(equals) and bool(seen == equals)


def classify(spec: OpSpec, response: HttpResponse, *, response_body_bytes_max: int,
             error_code_path: str | None = None) -> Outcome:
    """OK, FAIL or INFO by the profile's status lists, without results. Pure.

    A body over the bound, any 5xx, and any status the profile does not list are INFO:
    the target may have applied the op.
    """
    status = response.status_code
    if len(response.body) > response_body_bytes_max:
        return Outcome(kind=Kind.INFO, error="response_too_large", status_code=status,
                       body_excerpt=body_excerpt(response.body))
    if status >= 500:
        return Outcome(kind=Kind.INFO, error=server_error(response, error_code_path),
                       status_code=status, body_excerpt=body_excerpt(response.body))
    if status in spec.status_ok:
        return Outcome(kind=Kind.OK, status_code=status)
    if status in spec.status_fail:
        error = spec.status_fail[status]
        if error_code_path and spec.fail_by_code:
            code = json_path(response.json(), error_code_path)
            error = spec.fail_by_code.get(str(code), error) if code is not None else error
        return Outcome(kind=Kind.FAIL, error=error, status_code=status)
    return Outcome(kind=Kind.INFO, error="unexpected_status", status_code=status,
                   body_excerpt=body_excerpt(response.body))


def body_excerpt(body: bytes) -> str:
    """The body's first ``BODY_EXCERPT_CHARS_MAX`` characters, as UTF-8 (bad bytes replaced).

    Only what the excerpt can hold is decoded (4 bytes per character at most), so a huge
    body costs no more than a small one.
    """
    text = body[:BODY_EXCERPT_CHARS_MAX * 4].decode("utf-8", errors="replace")
    return text[:BODY_EXCERPT_CHARS_MAX]


SERVER_ERROR = "server_error_5xx"  # the error of every 5xx outcome; the service's code may follow
_SERVER_CODE_CHARS_MAX = 64


def server_error(response: HttpResponse, error_code_path: str | None) -> str:
    """``server_error_5xx``, followed by the service's own error code when its body has one.

    A deadlock or a lock wait the service gave up on then reads as what it is
    (``server_error_5xx: deadlock_detected``), not as a bare status. The code is cut to a
    bound: it comes from the target, and the history keeps it.
    """
    code = json_path(response.json(), error_code_path) if error_code_path else None
    if not isinstance(code, str) or not code.strip():
        return SERVER_ERROR
    return f"{SERVER_ERROR}: {code.strip()[:_SERVER_CODE_CHARS_MAX]}"


def _variable(name: str, op: Op, ctx: FlowContext) -> Any:
    """One template variable: an argument, the key, an id resolved from a name, or the
    service's name of the package a purchase buys."""
    resolver = ctx.resolver
    if name == "idempotency_key":
        return op.idempotency_key
    if name in op.value:
        return op.value[name]
    if name == "package":
        try:
            amount = op.value.get("amount_tokens")
            if isinstance(amount, bool) or not isinstance(amount, int):
                raise ValueError(f"{amount!r} tokens is not a package")
            package = ctx.profile.pricing.package(amount)
        except ValueError as exc:
            raise Unresolved(f"{op.f.value} op {op.id}: {exc}, and the profile sends "
                             "{package}") from exc
        assert package.name is not None, "checked when the profile loaded"
        return package.name
    if name == "call_id":
        return resolver.call_id(op.value.get("call"))
    role = name.removesuffix("_id")
    if name.endswith("_id") and role in _USER_ROLES:
        if role not in op.value:
            raise Unresolved(f"{op.f.value} op {op.id} has no {role!r}, which the profile uses")
        return resolver.target_id(op.value[role])
    raise Unresolved(f"{op.f.value} op {op.id} has no {name!r}, which the profile uses")


# ---------------------------------------------------------------------------------------
# Templates.


def render_text(template: str, variables: Mapping[str, Any], *, quote: bool = False) -> str:
    """Interpolate ``{name}`` (its ``:int``/``:str`` cast applied); ``{{``/``}}`` are braces."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) in ("{{", "}}"):
            return match.group(0)[0]
        value = _cast(match.group(1), variables[match.group(1)], match.group(2))
        text = "" if value is None else str(value)
        return urllib.parse.quote(text, safe="") if quote else text
    return _PLACEHOLDER.sub(replace, template)


def render_json(template: Template, variables: Mapping[str, Any]) -> Any:
    """A JSON value from a body template: a lone placeholder keeps its value's type."""
    if isinstance(template, str):
        match = _PLACEHOLDER.fullmatch(template)
        if match and match.group(1):
            return _cast(match.group(1), variables[match.group(1)], match.group(2))
        return render_text(template, variables)
    if isinstance(template, list):
        return [render_json(item, variables) for item in template]
    if isinstance(template, Mapping):
        return {key: render_json(item, variables) for key, item in template.items()}
    return template


def _cast(name: str, value: Any, cast: str | None) -> Any:
    if cast is None or value is None:
        return value
    if cast == "str":
        return str(value)
    assert cast == "int", cast
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER_TEXT.match(value):
        return int(value)
    raise UsageError(f"the profile converts {{{name}:int}}, but its value {value!r} is not an "
                     f"integer; write {{{name}:str}} or {{{name}}} in the profile instead")


def json_path(data: Any, path: str) -> Any:
    """The value at a dotted path (``paymentIntent.id``, ``items.0.id``), or None."""
    if path == "":
        return data
    for part in path.split("."):
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _scalar(key: str, value: Any) -> int | str | None:
    """A JSON value as a history value: counts of tokens become ints even if sent as text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else str(value)
    if isinstance(value, str):
        if key.endswith(("_tokens", "_count")) and _INTEGER_TEXT.match(value):
            return int(value)
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# ---------------------------------------------------------------------------------------
# Provider ops: form-encoded Stripe-compatible calls, independent of the target.

_ProviderBuild = Callable[[Op, FlowContext], tuple[HttpRequest, Callable[[HttpResponse], Outcome]]]


def _provider_request(ctx: FlowContext, op: Op, path: str,
                      form: Mapping[str, object]) -> HttpRequest:
    provider_url = ctx.endpoints.provider_url
    if provider_url is None:
        raise Unsupported(f"{op.f.value} is a provider op, and this run has no provider")
    headers = [("Authorization", f"Bearer {ctx.endpoints.provider_api_key}"),
               ("Content-Type", "application/x-www-form-urlencoded"),
               ("Accept", "application/json")]
    if op.idempotency_key is not None:
        headers.append(("Idempotency-Key", op.idempotency_key))
    pairs = [(key, str(value)) for key, value in form.items() if value is not None]
    return HttpRequest(method="POST", url=provider_url + path, headers=tuple(headers),
                       body=urllib.parse.urlencode(pairs).encode())


def _provider_reader(ctx: FlowContext, fields: Mapping[str, str]
                     ) -> Callable[[HttpResponse], Outcome]:
    """Read a provider answer: 200 OK with ``fields``; a 4xx FAIL with Stripe's error code."""
    def read(response: HttpResponse) -> Outcome:
        status = response.status_code
        if len(response.body) > ctx.response_body_bytes_max:
            return Outcome(kind=Kind.INFO, error="response_too_large", status_code=status,
                           body_excerpt=body_excerpt(response.body))
        body = response.json()
        if status == 200:
            value = {key: _scalar(key, json_path(body, path)) for key, path in fields.items()}
            return Outcome(kind=Kind.OK, value=value, status_code=status)
        if 400 <= status < 500:
            code = json_path(body, "error.code") or json_path(body, "error.type")
            error = code if isinstance(code, str) and code else _PROVIDER_FAIL.get(status)
            return Outcome(kind=Kind.FAIL, error=error or "invalid", status_code=status)
        error = "server_error_5xx" if status >= 500 else "unexpected_status"
        return Outcome(kind=Kind.INFO, error=error, status_code=status,
                       body_excerpt=body_excerpt(response.body))
    return read


_PROVIDER_FAIL = {402: "card_declined", 404: "not_found", 409: "conflict"}


def _authenticate(op: Op, ctx: FlowContext) -> tuple[HttpRequest, Callable[..., Outcome]]:
    intent_id = ctx.resolver.intent_id(op.value.get("purchase"))
    path = f"/v1/test_helpers/payment_intents/{urllib.parse.quote(intent_id, safe='')}" \
           "/authenticate"
    request = _provider_request(ctx, op, path, {"outcome": op.value.get("outcome", "succeed")})
    return request, _provider_reader(ctx, {"intent_id": "id", "purchase_status": "status"})


def _refund(op: Op, ctx: FlowContext) -> tuple[HttpRequest, Callable[..., Outcome]]:
    intent_id = ctx.resolver.intent_id(op.value.get("purchase"))
    form = {"payment_intent": intent_id, "amount": op.value.get("amount_cents")}
    request = _provider_request(ctx, op, "/v1/refunds", form)
    return request, _provider_reader(ctx, {"refund_id": "id", "intent_id": "payment_intent"})


def _dispute_open(op: Op, ctx: FlowContext) -> tuple[HttpRequest, Callable[..., Outcome]]:
    intent_id = ctx.resolver.intent_id(op.value.get("purchase"))
    form = {"payment_intent": intent_id, "amount": op.value.get("amount_cents")}
    request = _provider_request(ctx, op, "/v1/test_helpers/disputes", form)
    return request, _provider_reader(ctx, {"dispute_id": "id", "intent_id": "payment_intent"})


def _dispute_close(op: Op, ctx: FlowContext) -> tuple[HttpRequest, Callable[..., Outcome]]:
    dispute_id = ctx.resolver.dispute_id(op.value.get("dispute"))
    path = f"/v1/test_helpers/disputes/{urllib.parse.quote(dispute_id, safe='')}/close"
    request = _provider_request(ctx, op, path, {"outcome": op.value.get("outcome")})
    return request, _provider_reader(ctx, {"dispute_id": "id", "dispute_status": "status"})


_PROVIDER_BUILDERS: Mapping[F, _ProviderBuild] = {
    F.AUTHENTICATE: _authenticate, F.REFUND: _refund,
    F.DISPUTE_OPEN: _dispute_open, F.DISPUTE_CLOSE: _dispute_close,
}


# ---------------------------------------------------------------------------------------
# Webhooks the harness sends itself: an envelope from the provider, posted to the target.


def _envelope_request(op: Op, ctx: FlowContext) -> HttpRequest:
    purchase = op.value.get("purchase")
    intent_id = None if purchase is None else ctx.resolver.intent_id(purchase)
    provider_url = ctx.endpoints.provider_url
    if provider_url is None:
        raise Unsupported("a webhook op needs the provider to sign its envelope, and this run "
                          "has no provider")
    body = {"intent_id": intent_id, "event_type": op.value.get("event_type"),
            "variant": op.value.get("variant", "genuine")}
    headers = [("Content-Type", "application/json"), ("Accept", "application/json")]
    if ctx.endpoints.provider_control_key is not None:
        headers.append(("Authorization", f"Bearer {ctx.endpoints.provider_control_key}"))
    return HttpRequest(method="POST", url=provider_url + "/_tokenchaos/envelope",
                       headers=tuple(headers),
                       body=json.dumps(body, separators=(",", ":")).encode())


def _webhook_flow(op: Op, spec: OpSpec, ctx: FlowContext, envelope_request: HttpRequest) -> Flow:
    envelope = yield envelope_request
    body, headers = _read_envelope(envelope)
    event = _json_object(body)
    data_object = json_path(event, "data.object")
    intent_id = json_path(data_object, "payment_intent")
    if intent_id is None and json_path(data_object, "object") == "payment_intent":
        intent_id = json_path(data_object, "id")
    post = HttpRequest(method=spec.method, url=ctx.endpoints.target_url + spec.path,
                       headers=(*headers, ("Content-Type", "application/json")), body=body)
    response = yield post
    outcome = classify(spec, response, response_body_bytes_max=ctx.response_body_bytes_max)
    value: dict[str, int | str | None] = {
        "event_id": _scalar("event_id", json_path(event, "id")),
        "intent_id": _scalar("intent_id", intent_id)}
    return Outcome(kind=outcome.kind, value=value, error=outcome.error,
                   status_code=outcome.status_code, body_excerpt=outcome.body_excerpt)


def _read_envelope(response: HttpResponse) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    """The body and headers of the webhook the provider prepared; ProviderError if none."""
    data = response.json()
    body = json_path(data, "body")
    headers = json_path(data, "headers")
    if response.status_code != 200 or not isinstance(body, str) or not isinstance(
            headers, Mapping):
        raise ProviderError(
            f"the provider would not prepare a webhook envelope: POST /_tokenchaos/envelope "
            f"answered {response.status_code} {response.body[:300]!r}")
    pairs = tuple((str(name), str(text)) for name, text in headers.items()
                  if str(name).lower() != "content-type")
    return body.encode(), pairs


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None  # a tampered body need not be JSON
    return data if isinstance(data, dict) else None
