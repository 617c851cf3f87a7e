"""Target profiles: how to talk to one deployment, loaded from TOML into frozen data.

A profile says, for each op kind, which HTTP request to send (method, path template, body
template, headers, where its idempotency key goes: ``harness.targets.idempotency``) and how
to read the answer (which status codes are OK, which are a FAIL and with what error code,
where the result fields sit in the body, what marks a replayed answer).
It also says how users are provisioned (an HTTP call, or a file of existing users), how
the end state is observed (admin HTTP endpoints, or read-only SQL), and which metadata
keys of a PaymentIntent name the user and the tokens it mints.

Templates are deliberately small. In a path or header, ``{name}`` is replaced by the
variable's text (URL-quoted in paths). In a JSON body, a string that is exactly one
placeholder keeps the variable's type (``"{amount_tokens}"`` stays an int), or converts
it with ``:int`` / ``:str`` (``"{recipient_id:int}"``); any other string interpolates.
``{{`` and ``}}`` are literal braces. The variables an op may use are listed in
``TEMPLATE_VARIABLES``; a profile using another name is rejected when it is loaded.

``[auth]`` must say how a token is sent: ``scheme = "Bearer"`` (or any word) puts it
after the word, ``scheme = "none"`` sends it bare. ``[provisioning]`` (HTTP) may add
``headers`` whose ``{env:NAME}`` parts are read from the environment when the profile
loads, and ``kinds``, the body fields that make a user a fan or a creator.

``[target] environment`` (``local``, ``staging`` or ``production``) says what the
deployment is; ``harness.targets.address`` uses it to decide whether a non-loopback
address may be loaded (only ``staging`` opts in; ``production`` is always refused).

``[faults]`` (``harness.targets.fault_profile``) may name the commands that kill, restart,
pause and resume the service, and a running Toxiproxy's proxies, for fault scenarios on a
target the harness does not manage.

Everything a user can get wrong here raises ``UsageError`` naming the file, the key, the
value and what to write instead, when the profile is loaded: a profile that loads can run
every op it declares (a template never needs an op the profile lacks, an id the op cannot
know, or an environment variable that is not set). This module does no network I/O and
reads no clock; it reads the environment only for the ``*_env`` keys and ``{env:NAME}``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.fees import NO_FEES, Fees
from harness.model import F
from harness.targets.address import ENVIRONMENTS, Environment, http_address
from harness.targets.fault_profile import FaultsSpec, ToxiproxySpec, parse_faults
from harness.targets.fee_profile import parse_fees
from harness.targets.idempotency import (
    NO_IDEMPOTENCY,
    Idempotency,
    ReplayRule,
    parse_idempotency,
    parse_replay,
)
from harness.targets.pricing import REFERENCE_PRICING, Pricing, parse_pricing
from harness.targets.settle_profile import SettleSpec, parse_settle
from harness.targets.toml_table import METHODS, Table, Template, placeholders

__all__ = [
    "BUNDLED_PROFILES",
    "PROVISIONING_VARIABLES",
    "RESULT_KEYS",
    "TEMPLATE_VARIABLES",
    "AdminHttpObserverSpec",
    "AuthSpec",
    "FaultsSpec",
    "FileProvisioning",
    "HttpProvisioning",
    "Idempotency",
    "MetadataSpec",
    "ObserverSpec",
    "OpSpec",
    "Profile",
    "ProvisioningSpec",
    "ReplayRule",
    "SchemaNames",
    "SqlObserverSpec",
    "Template",
    "ToxiproxySpec",
    "load_profile",
    "parse_profile",
    "placeholders",
]

BUNDLED_PROFILES = ("reference", "seed")

# Variables an op's templates may use. ``<role>_id`` is the target's id of the user named
# by the op's ``<role>`` value; ``call_id`` the id the target gave the call; the rest are
# the op's own arguments (logical names included) and its idempotency key.
TEMPLATE_VARIABLES: Mapping[F, frozenset[str]] = {
    F.PURCHASE: frozenset({"user", "user_id", "purchase", "amount_tokens", "package",
                           "payment_method", "idempotency_key"}),
    F.TIP: frozenset({"sender", "sender_id", "recipient", "recipient_id", "amount_tokens",
                      "idempotency_key"}),
    F.CALL_OPEN: frozenset({"user", "user_id", "creator", "creator_id", "call",
                            "rate_tokens_per_minute", "idempotency_key"}),
    F.CALL_CHARGE: frozenset({"user", "user_id", "creator", "creator_id", "call", "call_id",
                              "minute", "amount_tokens", "idempotency_key"}),
    F.CALL_END: frozenset({"user", "user_id", "call", "call_id", "idempotency_key"}),
    F.READ_BALANCE: frozenset({"user", "user_id"}),
    F.WEBHOOK: frozenset(),
}

# Result keys a profile may read from an OK body, and the ones it must.
RESULT_KEYS: Mapping[F, frozenset[str]] = {
    F.PURCHASE: frozenset({"intent_id", "purchase_status"}),
    F.TIP: frozenset({"tip_id", "balance_tokens"}),
    F.CALL_OPEN: frozenset({"call_id"}),
    F.CALL_CHARGE: frozenset({"charge_id", "balance_tokens"}),
    F.CALL_END: frozenset(),
    F.READ_BALANCE: frozenset({"balance_tokens", "debt_tokens", "status"}),
    F.WEBHOOK: frozenset(),
}
_RESULT_KEYS_REQUIRED: Mapping[F, frozenset[str]] = {
    F.PURCHASE: frozenset({"intent_id"}),
    F.CALL_OPEN: frozenset({"call_id"}),
    F.READ_BALANCE: frozenset({"balance_tokens"}),
}

# Variables that only another op of the profile can supply: ``{call_id}`` is the id the
# target gave in its answer to ``call_open``, so a profile using it must have that op.
_VARIABLE_SOURCES: Mapping[str, F] = {"call_id": F.CALL_OPEN}

# The user kinds scenarios provision; ``[provisioning] kinds`` maps each one.
USER_KINDS = ("creator", "fan")
PROVISIONING_VARIABLES = frozenset({"kind", "name"})

_ACCOUNT_FIELDS = frozenset({"user_id", "balance_tokens", "debt_tokens", "status",
                             "ledger_sum_tokens", "credited_tokens", "clawed_back_tokens"})
_TOTALS_FIELDS = frozenset({"minted_tokens", "clawed_back_tokens", "balances_tokens",
                            "debts_tokens", "drift_accounts_count"})
_ENV_PLACEHOLDER = re.compile(r"\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True, kw_only=True)
class OpSpec:
    """How one op kind maps to HTTP, and how its answers map to outcomes."""

    f: F
    method: str
    path: str  # template, relative to the base URL: "/v1/calls/{call_id}/charges"
    body: Template | None = None  # JSON body template; None sends no body
    headers: Mapping[str, str] = field(default_factory=dict)  # name -> text template
    idempotency: Idempotency = NO_IDEMPOTENCY  # where the op's key goes, if anywhere
    replay: ReplayRule | None = None  # how an OK answer that is a replay is recognised
    status_ok: frozenset[int] = frozenset()
    status_fail: Mapping[int, str] = field(default_factory=dict)  # status -> error code
    fail_by_code: Mapping[str, str] = field(default_factory=dict)  # body code -> error code
    result: Mapping[str, str] = field(default_factory=dict)  # result key -> dotted JSON path
    variables: frozenset[str] = frozenset()  # every placeholder the templates use

    def __post_init__(self) -> None:
        assert self.method in METHODS, self.method
        assert self.status_ok.isdisjoint(self.status_fail), "a status is both OK and FAIL"
        for status in self.status_ok | set(self.status_fail):
            assert 100 <= status < 500, status  # 5xx is always INFO

    @property
    def idempotent(self) -> bool:
        """Whether the op carries an idempotency key (scenarios test its retries only then)."""
        return self.idempotency.idempotent

    @property
    def idempotency_header(self) -> str | None:
        """The header that carries the key, if a header does (the older profile key)."""
        return self.idempotency.name if self.idempotency.carrier == "header" else None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSpec:
    """How a token is presented: ``{header}: {scheme} {token}``; scheme None: the token alone."""

    header: str = "Authorization"
    scheme: str | None = "Bearer"

    def value(self, token: str) -> str:
        return f"{self.scheme} {token}" if self.scheme else token


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataSpec:
    """Which PaymentIntent metadata keys name the user and the tokens it mints (summed)."""

    user_key: str
    tokens_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpProvisioning:
    """Create each user with one admin HTTP call."""

    method: str
    path: str
    body: Template | None
    status_ok: frozenset[int]
    id_path: str  # dotted JSON path of the new user's id in the answer
    token_path: str  # ... and of their bearer token
    headers: Mapping[str, str] = field(default_factory=dict)  # {env:NAME} already read
    kinds: Mapping[str, Mapping[str, Template]] = field(default_factory=dict)  # kind -> fields

    def body_for(self, kind: str) -> Template | None:
        """The body template for a user of ``kind``: ``body`` with ``kinds[kind]`` merged in."""
        fields = self.kinds.get(kind)
        if fields is None:
            return self.body
        return {**(self.body or {}), **fields}


@dataclass(frozen=True, slots=True, kw_only=True)
class FileProvisioning:
    """Take existing users from a JSON file: ``{"users": [{"id", "token", "kind"}, ...]}``."""

    users_file: Path | None  # resolved against the profile's folder; None: from the env only
    users_file_env: str | None  # an environment variable that overrides ``users_file``


ProvisioningSpec = HttpProvisioning | FileProvisioning


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminHttpObserverSpec:
    """Read the end state from admin HTTP endpoints."""

    accounts_path: str
    accounts_list_path: str  # where the list is in the body; "" when the body is the list
    account_fields: Mapping[str, str]  # AccountState field -> dotted path in one item
    totals_path: str | None = None
    totals_fields: Mapping[str, str] = field(default_factory=dict)  # Totals field -> path
    statuses: Mapping[str, str] = field(default_factory=dict)  # target's word -> ACCOUNT_STATUSES
    system_accounts: Mapping[str, str] = field(default_factory=dict)  # logical name -> id
    headers: Mapping[str, str] = field(default_factory=dict)  # beside the admin key


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaNames:
    """Where balances and payment intents live, for the schema check (``schema_check``)."""

    balances_table: str  # may be schema-qualified: "public.token_balances"
    balance_column: str
    intents_table: str
    intent_column: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlObserverSpec:
    """Read the end state with read-only SQL over psycopg."""

    database_url: str | None  # from the profile or its environment variable
    database_url_env: str | None
    accounts_query: str  # columns: user_id, balance_tokens, and optional AccountState fields
    totals_query: str | None = None  # one row with Totals columns
    schema: SchemaNames | None = None  # None: the profile names no tables; schema not checked
    statuses: Mapping[str, str] = field(default_factory=dict)  # target's word -> ACCOUNT_STATUSES
    system_accounts: Mapping[str, str] = field(default_factory=dict)  # logical name -> id


ObserverSpec = AdminHttpObserverSpec | SqlObserverSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """One deployment's dialect. ``ops`` lacks the op kinds the target does not offer."""

    name: str
    source: str  # the file it came from, for messages
    base_url: str
    admin_key: str | None
    health_path: str | None
    auth: AuthSpec
    metadata: MetadataSpec
    ops: Mapping[F, OpSpec]
    provisioning: ProvisioningSpec
    observer: ObserverSpec | None
    error_code_path: str | None = None  # dotted path of an error code in FAIL bodies
    environment: Environment | None = None  # None: only loopback addresses may be loaded
    pricing: Pricing = REFERENCE_PRICING  # [pricing]: the packages scenarios buy
    faults: FaultsSpec = field(default_factory=FaultsSpec)  # [faults]: commands, Toxiproxy
    settle: SettleSpec | None = None  # [settle]: how to tell nothing is pending; None: never
    fees: Fees = NO_FEES  # [fees]: what the service keeps of tips and call charges

    def __post_init__(self) -> None:
        for f, spec in self.ops.items():
            assert spec.f == f, (f, spec.f)


def load_profile(name_or_path: str | Path, *,
                 environ: Mapping[str, str] | None = None) -> Profile:
    """Load a bundled profile by name (``reference``, ``seed``) or a TOML file by path.

    Environment variables the profile names (``base_url_env``, ``admin_key_env``,
    ``database_url_env``, ``users_file_env``) override the values written in it.

    Raises:
        UsageError: no such profile, TOML that does not parse, or any invalid key or value.
    """
    environ = os.environ if environ is None else environ
    text, source, folder = _read_profile(name_or_path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"profile {source}: not valid TOML: {exc}") from exc
    return parse_profile(data, source=source, folder=folder, environ=environ)


def _read_profile(name_or_path: str | Path) -> tuple[str, str, Path | None]:
    text_name = str(name_or_path)
    if text_name in BUNDLED_PROFILES:
        resource = resources.files("harness.targets").joinpath(f"{text_name}.toml")
        return resource.read_text(encoding="utf-8"), f"{text_name}.toml", None
    path = Path(name_or_path)
    if not path.is_file():
        raise UsageError(
            f"no target profile {text_name!r}: not a file and not a bundled profile; "
            f"give the path of a .toml profile or one of: {', '.join(BUNDLED_PROFILES)}")
    try:
        return path.read_text(encoding="utf-8"), str(path), path.parent
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"profile {path}: cannot read it: {exc}") from exc


def parse_profile(data: Mapping[str, Any], *, source: str, folder: Path | None = None,
                  environ: Mapping[str, str] | None = None) -> Profile:
    """Validate parsed TOML into a ``Profile``. See ``load_profile``."""
    environ = os.environ if environ is None else environ
    root = Table(data, source=source, where="")
    root.only("target", "auth", "metadata", "responses", "ops", "provisioning", "observer",
              "pricing", "faults", "settle", "fees")
    target = root.table("target")
    target.only("name", "base_url", "base_url_env", "admin_key", "admin_key_env", "health_path",
                "environment")
    name = target.text("name")
    environment = Environment(target.choice("environment", ENVIRONMENTS)) \
        if "environment" in target else None
    written_url = target.opt_text("base_url")
    base_url = _from_env(target, "base_url", environ) or written_url
    if not base_url:
        raise target.error("base_url", None, 'is missing; add e.g. base_url = '
                           '"http://127.0.0.1:8000", or base_url_env and set that variable')
    if not base_url.startswith(("http://", "https://")):
        raise target.error("base_url", base_url, "must start with http:// or https://")
    http_address(base_url, role="target", origin=f"profile {source}: [target] base_url")
    written_key = target.opt_text("admin_key")
    admin_key = _from_env(target, "admin_key", environ) or written_key
    health_path = target.opt_path("health_path", frozenset())
    auth = _parse_auth(root)
    metadata = _parse_metadata(root.table("metadata"))
    responses = root.opt_table("responses")
    if responses:
        responses.only("error_code_path")
    error_code_path = responses.opt_text("error_code_path") if responses else None
    ops = _parse_ops(root.table("ops"), error_code_path=error_code_path)
    provisioning = _parse_provisioning(root.table("provisioning"), folder, environ)
    observer_table = root.opt_table("observer")
    observer = _parse_observer(observer_table, environ) if observer_table else None
    faults = parse_faults(root.opt_table("faults"), source=source, health_path=health_path,
                          folder=folder, environ=environ)
    return _check_package_names(Profile(
        name=name, source=source, base_url=base_url.rstrip("/"), admin_key=admin_key,
        health_path=health_path, auth=auth, metadata=metadata, ops=ops,
        provisioning=provisioning, observer=observer, error_code_path=error_code_path,
        environment=environment, pricing=parse_pricing(data.get("pricing"), where=source),
        faults=faults, settle=_parse_settle(root.opt_table("settle"), observer, environ),
        fees=parse_fees(root.opt_table("fees"), system_accounts=None if observer is None
                        else observer.system_accounts)))


def _check_package_names(profile: Profile) -> Profile:
    """A purchase that sends ``{package}`` needs the service's name of every package."""
    spec = profile.ops.get(F.PURCHASE)
    if spec is None or "package" not in spec.variables:
        return profile
    unnamed = [package.tokens for package in profile.pricing.packages if package.name is None]
    if unnamed:
        raise UsageError(f"profile {profile.source}: [ops.purchase] sends {{package}}, and "
                         f"the package(s) of {unnamed} tokens have no name; add name = "
                         '"<the service\'s bundle name>" to each [pricing] package')
    return profile


def _parse_settle(table: Table | None, observer: ObserverSpec | None,
                  environ: Mapping[str, str]) -> SettleSpec | None:
    if table is None:
        return None
    spec = parse_settle(table, headers=_plain_headers(table, environ))
    if spec.mode == "stable" and observer is None:
        raise table.error("mode", spec.mode, "reads the end state, and the profile has no "
                          '[observer]; add one, or use mode = "pending"')
    return spec


# ---------------------------------------------------------------------------------------
# Sections.


def _parse_auth(root: Table) -> AuthSpec:
    fix = ('add [auth] with header = "Authorization" and scheme = "Bearer" (the token after '
           'a word), or scheme = "none" to send the bare token (e.g. header = "X-Api-Key")')
    if "auth" not in root:
        raise root.error("[auth]", None, f"is missing; {fix}")
    table = root.table("auth")
    table.only("header", "scheme")
    header = table.opt_text("header", "Authorization") or "Authorization"
    if "scheme" not in table:
        raise table.error("scheme", None, "is missing, so it is not clear how the token is "
                          f"sent; write scheme = \"Bearer\" or scheme = \"none\" ({fix[4:]})")
    scheme = table.text("scheme").strip()
    if not scheme or any(char.isspace() for char in scheme):
        raise table.error("scheme", table.raw("scheme"), 'must be one word, e.g. "Bearer" or '
                          '"Token", or "none" for the bare token')
    return AuthSpec(header=header, scheme=None if scheme == "none" else scheme)


def _parse_metadata(table: Table) -> MetadataSpec:
    table.only("user_key", "tokens_keys")
    user_key = table.text("user_key")
    tokens_keys = table.text_list("tokens_keys")
    if not tokens_keys:
        raise table.error("tokens_keys", tokens_keys, 'is empty; write e.g. tokens_keys = '
                          '["tokens"] or ["tokenAmount", "bonusTokens"]')
    return MetadataSpec(user_key=user_key, tokens_keys=tuple(tokens_keys))


def _parse_ops(table: Table, *, error_code_path: str | None) -> dict[F, OpSpec]:
    table.only(*(f.value for f in TEMPLATE_VARIABLES))
    ops = {f: _parse_op(table.table(f.value), f, error_code_path=error_code_path)
           for f in TEMPLATE_VARIABLES if f.value in table}
    for f, spec in ops.items():
        for variable in sorted(spec.variables):
            source = _VARIABLE_SOURCES.get(variable)
            if source is not None and source not in ops:
                raise table.error(f.value, None, f"uses {{{variable}}}, which comes from the "
                                  f"answer to {source.value}, and the profile has no "
                                  f"[ops.{source.value}]; add it, or leave {{{variable}}} out "
                                  f"of [ops.{f.value}]")
    return ops


# Keys only ops that change state have: a read or a webhook carries no key of ours.
_KEYED_OP_KEYS = ("idempotency", "idempotency_header", "replay")


def _parse_op(table: Table, f: F, *, error_code_path: str | None) -> OpSpec:
    webhook = f == F.WEBHOOK
    keyed = "idempotency_key" in TEMPLATE_VARIABLES[f]
    table.only("method", "path", "status_ok", "status_fail",
               *(() if webhook else ("body", "headers", "fail_by_code", "result")),
               *(_KEYED_OP_KEYS if keyed else ()))
    allowed = TEMPLATE_VARIABLES[f]
    method = table.method("method", default="POST")
    path = table.path("path", allowed)
    body = table.template("body", allowed)
    headers = table.text_table("headers")
    for header_name, header_value in headers.items():
        table.check_template(f"headers.{header_name}", header_value, allowed)
    idempotency = parse_idempotency(table, path=path, body=body, headers=headers) \
        if keyed else NO_IDEMPOTENCY
    replay = parse_replay(table) if keyed else None
    status_ok = table.status_list("status_ok", default=_WEBHOOK_OK if webhook else ())
    if not status_ok:
        raise table.error("status_ok", None, "is missing or empty; add e.g. status_ok = [200]")
    status_fail = table.status_codes("status_fail", default=_WEBHOOK_FAIL if webhook else {})
    both = sorted(status_ok & set(status_fail))
    if both:
        raise table.error("status_fail", both[0], "is also in status_ok; a status is OK or "
                          "FAIL, not both")
    fail_by_code = table.code_table("fail_by_code")
    if fail_by_code and error_code_path is None:
        raise table.error("fail_by_code", fail_by_code, "needs to know where the error code "
                          'is in a FAIL body; add [responses] error_code_path = "error.code" '
                          "(the dotted path of it)")
    result = _parse_result(table, f)
    variables = placeholders(path) | placeholders(body) | placeholders(list(headers.values()))
    return OpSpec(f=f, method=method, path=path, body=body, headers=headers,
                  idempotency=idempotency, replay=replay, status_ok=status_ok,
                  status_fail=status_fail, fail_by_code=fail_by_code, result=result,
                  variables=variables)


def _parse_result(table: Table, f: F) -> dict[str, str]:
    result = table.text_table("result")
    unknown = sorted(set(result) - RESULT_KEYS[f])
    if unknown:
        raise table.error(f"result.{unknown[0]}", result[unknown[0]],
                          f"is not a result of {f.value}; known: "
                          f"{', '.join(sorted(RESULT_KEYS[f])) or '(none)'}")
    missing = sorted(_RESULT_KEYS_REQUIRED.get(f, frozenset()) - set(result))
    if missing:
        raise table.error("result", None, f"lacks {missing[0]}; add e.g. result = "
                          f'{{ {missing[0]} = "{missing[0]}" }}, the path of it in the body')
    return result


_WEBHOOK_OK = tuple(range(200, 300))
_WEBHOOK_FAIL = {status: "rejected" for status in range(400, 500)}


def _parse_provisioning(table: Table, folder: Path | None,
                        environ: Mapping[str, str]) -> ProvisioningSpec:
    mode = table.choice("mode", ("http", "file"))
    if mode == "file":
        table.only("mode", "users_file", "users_file_env")
        env_name = table.opt_text("users_file_env")
        written = table.opt_text("users_file")
        from_env = environ.get(env_name) if env_name else None
        users_file: Path | None = None
        if from_env:
            users_file = Path(from_env)
        elif written:
            written_path = Path(written)
            users_file = folder / written_path if folder and not written_path.is_absolute() \
                else written_path
        if users_file is None and not env_name:
            raise table.error("users_file", None, 'is missing; add users_file = "users.json" '
                              'or users_file_env = "TOKENCHAOS_USERS_FILE"')
        return FileProvisioning(users_file=users_file, users_file_env=env_name)
    table.only("mode", "method", "path", "body", "headers", "kinds", "status_ok", "id", "token")
    method = table.method("method", default="POST")
    path = table.path("path", PROVISIONING_VARIABLES)
    body = table.template("body", PROVISIONING_VARIABLES)
    headers = _provisioning_headers(table, environ)
    kinds = _provisioning_kinds(table, body)
    status_ok = table.status_list("status_ok", default=(200, 201))
    id_path = table.text("id")
    token_path = table.text("token")
    return HttpProvisioning(method=method, path=path, body=body, status_ok=status_ok,
                            id_path=id_path, token_path=token_path, headers=headers,
                            kinds=kinds)


def _plain_headers(table: Table, environ: Mapping[str, str]) -> dict[str, str]:
    """``headers`` of a control-plane call: text, each ``{env:NAME}`` read from the environment."""
    headers: dict[str, str] = {}
    for name, text in _provisioning_headers(table, environ, allowed=frozenset()).items():
        headers[name] = text.replace("{{", "{").replace("}}", "}")
    return headers


def _provisioning_headers(table: Table, environ: Mapping[str, str], *,
                          allowed: frozenset[str] = PROVISIONING_VARIABLES) -> dict[str, str]:
    """Extra headers of the creation call, each ``{env:NAME}`` replaced by that variable now."""
    headers: dict[str, str] = {}
    for name, text in table.text_table("headers").items():
        rendered = _env_text(table, f"headers.{name}", text, environ, template=True)
        table.check_template(f"headers.{name}", rendered, allowed)
        headers[name] = rendered
    return headers


def _env_text(table: Table, key: str, text: str, environ: Mapping[str, str], *,
              template: bool = False) -> str:
    """``text`` with each ``{env:NAME}`` replaced by that variable now; in a ``template``,
    the value's braces are escaped (a value, never a placeholder)."""
    rendered = text
    for variable in _ENV_PLACEHOLDER.findall(text):
        value = environ.get(variable)
        if not value:
            raise table.error(key, text, f"reads the environment variable {variable}, which "
                              f"is not set; export {variable}=... before the run (its value "
                              "is never written in the profile)")
        literal = value.replace("{", "{{").replace("}", "}}") if template else value
        rendered = rendered.replace(f"{{env:{variable}}}", literal)
    return rendered


def _provisioning_kinds(table: Table, body: Template | None) -> dict[str, dict[str, Template]]:
    """``kinds``: per user kind, fields merged into the creation call's body."""
    if "kinds" not in table:
        return {}
    example = 'e.g. kinds = { fan = { isCreator = false }, creator = { isCreator = true } }'
    kinds = table.table("kinds")
    kinds.only(*USER_KINDS)
    if body is not None and not isinstance(body, Mapping):
        raise table.error("kinds", table.raw("kinds"), "merges fields into the body, and body "
                          "is not a table; write body = { ... } or leave body out")
    mapped: dict[str, dict[str, Template]] = {}
    for kind in USER_KINDS:
        fields = kinds.raw(kind)
        if not isinstance(fields, Mapping):
            raise kinds.error(kind, fields, f"must be a table of body fields for a {kind}; "
                              f"{example}")
        kinds.check_template(kind, fields, PROVISIONING_VARIABLES)
        clash = sorted(set(fields) & set(body or {}))
        if clash:
            raise kinds.error(f"{kind}.{clash[0]}", fields[clash[0]], "is also in body; a "
                              "field comes from body or from kinds, not both: remove it from "
                              "one of them")
        mapped[kind] = dict(fields)
    return mapped


def _parse_observer(table: Table, environ: Mapping[str, str]) -> ObserverSpec:
    kind = table.choice("kind", ("admin_http", "sql"))
    if kind == "sql":
        table.only("kind", "database_url", "database_url_env", "accounts_query", "totals_query",
                   "statuses", "system_accounts", *_SCHEMA_KEYS)
        written_url = table.opt_text("database_url")
        url = _from_env(table, "database_url", environ) or written_url
        env_name = table.opt_text("database_url_env")
        if not url and not env_name:
            raise table.error("database_url", None, "is missing; add database_url_env = "
                              '"TOKENCHAOS_TARGET_DATABASE_URL" (read-only credentials)')
        accounts_query = table.text("accounts_query")
        totals_query = table.opt_text("totals_query")
        return SqlObserverSpec(database_url=url, database_url_env=env_name,
                               accounts_query=accounts_query, totals_query=totals_query,
                               schema=_parse_schema_names(table),
                               statuses=_parse_statuses(table),
                               system_accounts=_parse_system_accounts(table, environ))
    table.only("kind", "accounts_path", "accounts_list", "account", "totals_path", "totals",
               "statuses", "system_accounts", "headers")
    accounts_path = table.path("accounts_path", frozenset())
    accounts_list_path = table.opt_text("accounts_list", "", empty_ok=True) or ""
    account_fields = table.text_table("account")
    _check_fields(table, "account", account_fields, _ACCOUNT_FIELDS,
                  required=("user_id", "balance_tokens"))
    totals_path = table.opt_path("totals_path", frozenset())
    totals_fields = table.text_table("totals")
    _check_fields(table, "totals", totals_fields, _TOTALS_FIELDS,
                  required=tuple(sorted(_TOTALS_FIELDS)) if totals_path else ())
    return AdminHttpObserverSpec(accounts_path=accounts_path,
                                 accounts_list_path=accounts_list_path,
                                 account_fields=account_fields, totals_path=totals_path,
                                 totals_fields=totals_fields, statuses=_parse_statuses(table),
                                 system_accounts=_parse_system_accounts(table, environ),
                                 headers=_plain_headers(table, environ))


ACCOUNT_STATUSES = ("active", "debt")  # the harness's words for an account's status
_SYSTEM_ACCOUNT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SCENARIO_USER_NAME = re.compile(r"^(fan|creator)_[0-9]+$")  # roster names (scenarios)


def _parse_system_accounts(table: Table, environ: Mapping[str, str]) -> dict[str, str]:
    """``system_accounts = { platform = "acct_platform" }``: accounts outside the scenario's
    users that the observer reads too (where fees go), each id text or ``{env:NAME}``."""
    accounts: dict[str, str] = {}
    for name, text in table.text_table("system_accounts").items():
        if not _SYSTEM_ACCOUNT_NAME.match(name) or _SCENARIO_USER_NAME.match(name):
            raise table.error(f"system_accounts.{name}", text, "needs a name of lowercase "
                              'letters, digits and "_" (e.g. platform) that no scenario user '
                              "has (they are fan_0, creator_0, ...)")
        account_id = _env_text(table, f"system_accounts.{name}", text, environ)
        if not account_id:
            raise table.error(f"system_accounts.{name}", text, "must name an account id")
        accounts[name] = account_id
    return accounts


def _parse_statuses(table: Table) -> dict[str, str]:
    """``statuses = { OWING = "debt", OK = "active" }``: the target's status words, in ours."""
    statuses = table.text_table("statuses")
    for word, ours in statuses.items():
        if ours not in ACCOUNT_STATUSES:
            raise table.error(f"statuses.{word}", ours,
                              f"must be one of {', '.join(ACCOUNT_STATUSES)}")
    if statuses and "debt" not in statuses.values():
        raise table.error("statuses", dict(statuses), 'names no word for "debt"; add the '
                          'status the service gives an account that owes, e.g. OWING = "debt"')
    return statuses


_SCHEMA_KEYS = ("balances_table", "balance_column", "intents_table", "intent_column")
_SQL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


def _parse_schema_names(table: Table) -> SchemaNames | None:
    """The four names of the schema check: all of them, or none (the check is skipped)."""
    given = [key for key in _SCHEMA_KEYS if key in table]
    if not given:
        return None
    missing = [key for key in _SCHEMA_KEYS if key not in table]
    if missing:
        raise table.error(missing[0], None, f"is missing; the schema check needs all of "
                          f"{', '.join(_SCHEMA_KEYS)} (or none of them)")
    names = {key: table.text(key) for key in _SCHEMA_KEYS}
    for key, name in names.items():
        is_column = key.endswith("_column")
        if not _SQL_NAME.match(name) or (is_column and "." in name):
            raise table.error(key, name, "must be a plain SQL name"
                              + ("" if is_column else ", optionally schema.table")
                              + ', e.g. "token_balances"')
    return SchemaNames(**names)


def _check_fields(table: Table, key: str, fields: Mapping[str, str], known: frozenset[str],
                  *, required: tuple[str, ...]) -> None:
    unknown = sorted(set(fields) - known)
    if unknown:
        raise table.error(f"{key}.{unknown[0]}", fields[unknown[0]],
                          f"is not a field; known: {', '.join(sorted(known))}")
    missing = [name for name in required if name not in fields]
    if missing:
        raise table.error(key, dict(fields), f'lacks {missing[0]}; add {missing[0]} = "<path '
                          'of it in the JSON>"')


def _from_env(table: Table, key: str, environ: Mapping[str, str]) -> str | None:
    """The value of the environment variable ``<key>_env`` names, if set and not empty."""
    env_name = table.opt_text(f"{key}_env")
    if env_name is None:
        return None
    return environ.get(env_name) or None
