"""Target profiles: how to talk to one deployment, loaded from TOML into frozen data.

A profile says, for each op kind, which HTTP request to send (method, path template, body
template, headers, idempotency header) and how to read the answer (which status codes are
OK, which are a FAIL and with what error code, where the result fields sit in the body).
It also says how users are provisioned (an HTTP call, or a file of existing users), how
the end state is observed (admin HTTP endpoints, or read-only SQL), and which metadata
keys of a PaymentIntent name the user and the tokens it mints.

Templates are deliberately small. In a path or header, ``{name}`` is replaced by the
variable's text (URL-quoted in paths). In a JSON body, a string that is exactly one
placeholder keeps the variable's type (``"{amount_tokens}"`` stays an int), or converts
it with ``:int`` / ``:str`` (``"{recipient_id:int}"``); any other string interpolates.
``{{`` and ``}}`` are literal braces. The variables an op may use are listed in
``TEMPLATE_VARIABLES``; a profile using another name is rejected when it is loaded.

``[target] environment`` (``local``, ``staging`` or ``production``) says what the
deployment is; ``harness.targets.address`` uses it to decide whether a non-loopback
address may be loaded (only ``staging`` opts in; ``production`` is always refused).

Everything a user can get wrong here raises ``UsageError`` naming the file, the key, the
value and what to write instead. This module does no network I/O and reads no clock.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.model import F
from harness.targets.address import ENVIRONMENTS, Environment, http_address
from harness.targets.pricing import REFERENCE_PRICING, Pricing, parse_pricing

__all__ = [
    "BUNDLED_PROFILES",
    "PROVISIONING_VARIABLES",
    "RESULT_KEYS",
    "TEMPLATE_VARIABLES",
    "AdminHttpObserverSpec",
    "AuthSpec",
    "FileProvisioning",
    "HttpProvisioning",
    "MetadataSpec",
    "ObserverSpec",
    "OpSpec",
    "Profile",
    "ProvisioningSpec",
    "SqlObserverSpec",
    "Template",
    "load_profile",
    "parse_profile",
    "placeholders",
]

BUNDLED_PROFILES = ("reference", "seed")

Template = Any  # a TOML value: str, int, bool, float, list of templates, table of templates

# Variables an op's templates may use. ``<role>_id`` is the target's id of the user named
# by the op's ``<role>`` value; ``call_id`` the id the target gave the call; the rest are
# the op's own arguments (logical names included) and its idempotency key.
TEMPLATE_VARIABLES: Mapping[F, frozenset[str]] = {
    F.PURCHASE: frozenset({"user", "user_id", "purchase", "amount_tokens", "payment_method",
                           "idempotency_key"}),
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

PROVISIONING_VARIABLES = frozenset({"kind", "name"})

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_ACCOUNT_FIELDS = frozenset({"user_id", "balance_tokens", "debt_tokens", "status",
                             "ledger_sum_tokens", "credited_tokens", "clawed_back_tokens"})
_TOTALS_FIELDS = frozenset({"minted_tokens", "clawed_back_tokens", "balances_tokens",
                            "debts_tokens", "drift_accounts_count"})
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}")
_CASTS = frozenset({"int", "str"})
_ERROR_CODE = re.compile(r"^[a-z][a-z0-9_]*$")
_REQUIRED: Any = object()  # a sentinel: the key must be present


@dataclass(frozen=True, slots=True, kw_only=True)
class OpSpec:
    """How one op kind maps to HTTP, and how its answers map to outcomes."""

    f: F
    method: str
    path: str  # template, relative to the base URL: "/v1/calls/{call_id}/charges"
    body: Template | None = None  # JSON body template; None sends no body
    headers: Mapping[str, str] = field(default_factory=dict)  # name -> text template
    idempotency_header: str | None = None  # header carrying the op's key; None: not sent
    status_ok: frozenset[int] = frozenset()
    status_fail: Mapping[int, str] = field(default_factory=dict)  # status -> error code
    fail_by_code: Mapping[str, str] = field(default_factory=dict)  # body code -> error code
    result: Mapping[str, str] = field(default_factory=dict)  # result key -> dotted JSON path
    variables: frozenset[str] = frozenset()  # every placeholder the templates use

    def __post_init__(self) -> None:
        assert self.method in _METHODS, self.method
        assert self.status_ok.isdisjoint(self.status_fail), "a status is both OK and FAIL"
        for status in self.status_ok | set(self.status_fail):
            assert 100 <= status < 500, status  # 5xx is always INFO


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSpec:
    """How a token is presented: ``{header}: {scheme} {token}`` (no scheme: the token alone)."""

    header: str = "Authorization"
    scheme: str = "Bearer"

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


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlObserverSpec:
    """Read the end state with read-only SQL over psycopg."""

    database_url: str | None  # from the profile or its environment variable
    database_url_env: str | None
    accounts_query: str  # columns: user_id, balance_tokens, and optional AccountState fields
    totals_query: str | None = None  # one row with Totals columns


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
    root = _Table(data, source=source, where="")
    root.only("target", "auth", "metadata", "responses", "ops", "provisioning", "observer",
              "pricing")
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
    health_path = target.opt_path("health_path")
    auth = _parse_auth(root.opt_table("auth"))
    metadata = _parse_metadata(root.table("metadata"))
    responses = root.opt_table("responses")
    if responses:
        responses.only("error_code_path")
    error_code_path = responses.opt_text("error_code_path") if responses else None
    ops = _parse_ops(root.table("ops"))
    provisioning = _parse_provisioning(root.table("provisioning"), folder, environ)
    observer_table = root.opt_table("observer")
    observer = _parse_observer(observer_table, environ) if observer_table else None
    return Profile(name=name, source=source, base_url=base_url.rstrip("/"), admin_key=admin_key,
                   health_path=health_path, auth=auth, metadata=metadata, ops=ops,
                   provisioning=provisioning, observer=observer,
                   error_code_path=error_code_path, environment=environment,
                   pricing=parse_pricing(data.get("pricing"), where=source))


def placeholders(template: Template) -> frozenset[str]:
    """Every variable name a template uses (its casts and literal braces left out)."""
    names: set[str] = set()
    if isinstance(template, str):
        for match in _PLACEHOLDER.finditer(template):
            if match.group(1):
                names.add(match.group(1))
    elif isinstance(template, list):
        for item in template:
            names |= placeholders(item)
    elif isinstance(template, Mapping):
        for item in template.values():
            names |= placeholders(item)
    return frozenset(names)


# ---------------------------------------------------------------------------------------
# Sections.


def _parse_auth(table: _Table | None) -> AuthSpec:
    if table is None:
        return AuthSpec()
    table.only("header", "scheme")
    header = table.opt_text("header", "Authorization") or "Authorization"
    scheme = table.opt_text("scheme", "Bearer") or "Bearer"
    if scheme == "none":  # the header carries the token alone
        scheme = ""
    return AuthSpec(header=header, scheme=scheme)


def _parse_metadata(table: _Table) -> MetadataSpec:
    table.only("user_key", "tokens_keys")
    user_key = table.text("user_key")
    tokens_keys = table.text_list("tokens_keys")
    if not tokens_keys:
        raise table.error("tokens_keys", tokens_keys, 'is empty; write e.g. tokens_keys = '
                          '["tokens"] or ["tokenAmount", "bonusTokens"]')
    return MetadataSpec(user_key=user_key, tokens_keys=tuple(tokens_keys))


def _parse_ops(table: _Table) -> dict[F, OpSpec]:
    table.only(*(f.value for f in TEMPLATE_VARIABLES))
    return {f: _parse_op(table.table(f.value), f) for f in TEMPLATE_VARIABLES if f.value in table}


def _parse_op(table: _Table, f: F) -> OpSpec:
    table.only("method", "path", "body", "headers", "idempotency_header", "status_ok",
               "status_fail", "fail_by_code", "result")
    allowed = TEMPLATE_VARIABLES[f]
    method = table.method("method", default="POST")
    path = table.path("path")
    body = table.template("body", allowed)
    headers = table.text_table("headers")
    for header_name, header_value in headers.items():
        table.check_template(f"headers.{header_name}", header_value, allowed)
    idempotency_header = table.opt_text("idempotency_header")
    webhook = f == F.WEBHOOK
    status_ok = table.status_list("status_ok", default=_WEBHOOK_OK if webhook else ())
    if not status_ok:
        raise table.error("status_ok", None, "is missing or empty; add e.g. status_ok = [200]")
    status_fail = table.status_codes("status_fail", default=_WEBHOOK_FAIL if webhook else {})
    both = sorted(status_ok & set(status_fail))
    if both:
        raise table.error("status_fail", both[0], "is also in status_ok; a status is OK or "
                          "FAIL, not both")
    fail_by_code = table.code_table("fail_by_code")
    result = _parse_result(table, f)
    variables = placeholders(path) | placeholders(body) | placeholders(list(headers.values()))
    return OpSpec(f=f, method=method, path=path, body=body, headers=headers,
                  idempotency_header=idempotency_header, status_ok=status_ok,
                  status_fail=status_fail, fail_by_code=fail_by_code, result=result,
                  variables=variables)


def _parse_result(table: _Table, f: F) -> dict[str, str]:
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


def _parse_provisioning(table: _Table, folder: Path | None,
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
    table.only("mode", "method", "path", "body", "status_ok", "id", "token")
    method = table.method("method", default="POST")
    path = table.path("path")
    body = table.template("body", PROVISIONING_VARIABLES)
    status_ok = table.status_list("status_ok", default=(200, 201))
    id_path = table.text("id")
    token_path = table.text("token")
    return HttpProvisioning(method=method, path=path, body=body, status_ok=status_ok,
                            id_path=id_path, token_path=token_path)


def _parse_observer(table: _Table, environ: Mapping[str, str]) -> ObserverSpec:
    kind = table.choice("kind", ("admin_http", "sql"))
    if kind == "sql":
        table.only("kind", "database_url", "database_url_env", "accounts_query", "totals_query")
        written_url = table.opt_text("database_url")
        url = _from_env(table, "database_url", environ) or written_url
        env_name = table.opt_text("database_url_env")
        if not url and not env_name:
            raise table.error("database_url", None, "is missing; add database_url_env = "
                              '"TOKENCHAOS_TARGET_DATABASE_URL" (read-only credentials)')
        accounts_query = table.text("accounts_query")
        totals_query = table.opt_text("totals_query")
        return SqlObserverSpec(database_url=url, database_url_env=env_name,
                               accounts_query=accounts_query, totals_query=totals_query)
    table.only("kind", "accounts_path", "accounts_list", "account", "totals_path", "totals")
    accounts_path = table.path("accounts_path")
    accounts_list_path = table.opt_text("accounts_list", "", empty_ok=True) or ""
    account_fields = table.text_table("account")
    _check_fields(table, "account", account_fields, _ACCOUNT_FIELDS,
                  required=("user_id", "balance_tokens"))
    totals_path = table.opt_path("totals_path")
    totals_fields = table.text_table("totals")
    _check_fields(table, "totals", totals_fields, _TOTALS_FIELDS,
                  required=tuple(sorted(_TOTALS_FIELDS)) if totals_path else ())
    return AdminHttpObserverSpec(accounts_path=accounts_path,
                                 accounts_list_path=accounts_list_path,
                                 account_fields=account_fields, totals_path=totals_path,
                                 totals_fields=totals_fields)


def _check_fields(table: _Table, key: str, fields: Mapping[str, str], known: frozenset[str],
                  *, required: tuple[str, ...]) -> None:
    unknown = sorted(set(fields) - known)
    if unknown:
        raise table.error(f"{key}.{unknown[0]}", fields[unknown[0]],
                          f"is not a field; known: {', '.join(sorted(known))}")
    missing = [name for name in required if name not in fields]
    if missing:
        raise table.error(key, dict(fields), f'lacks {missing[0]}; add {missing[0]} = "<path '
                          'of it in the JSON>"')


def _from_env(table: _Table, key: str, environ: Mapping[str, str]) -> str | None:
    """The value of the environment variable ``<key>_env`` names, if set and not empty."""
    env_name = table.opt_text(f"{key}_env")
    if env_name is None:
        return None
    return environ.get(env_name) or None


# ---------------------------------------------------------------------------------------
# A TOML table that knows where it is, so every message names file, key and value.


class _Table:
    def __init__(self, data: Any, *, source: str, where: str) -> None:
        if not isinstance(data, Mapping):
            place = f"[{where}]" if where else "the file"
            raise UsageError(f"profile {source}: {place} must be a table, got "
                             f"{type(data).__name__} {data!r}")
        self._data = data
        self._source = source
        self._where = where

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def error(self, key: str, value: object, advice: str) -> UsageError:
        place = f"[{self._where}] {key}" if self._where else key
        shown = "" if value is None else f" = {value!r}"
        return UsageError(f"profile {self._source}: {place}{shown} {advice}")

    def only(self, *known: str) -> None:
        """Reject keys this table does not have, before reading any: they are typos."""
        unknown = sorted(set(self._data) - set(known))
        if unknown:
            raise self.error(unknown[0], self._data[unknown[0]],
                             f"is not a known key here; known keys: {', '.join(sorted(known))}")

    def _get(self, key: str, default: Any) -> Any:
        if key in self._data:
            return self._data[key]
        if default is _REQUIRED:
            raise self.error(key, None, "is missing; add it")
        return default

    def table(self, key: str) -> _Table:
        where = f"{self._where}.{key}" if self._where else key
        return _Table(self._get(key, _REQUIRED), source=self._source, where=where)

    def opt_table(self, key: str) -> _Table | None:
        return self.table(key) if key in self._data else None

    def text(self, key: str, *, empty_ok: bool = False) -> str:
        value = self._get(key, _REQUIRED)
        if not isinstance(value, str) or not (value or empty_ok):
            raise self.error(key, value, 'must be a non-empty string, e.g. "value"')
        return value

    def opt_text(self, key: str, default: str | None = None, *,
                 empty_ok: bool = False) -> str | None:
        return self.text(key, empty_ok=empty_ok) if key in self._data else default

    def choice(self, key: str, options: tuple[str, ...]) -> str:
        value = self.text(key)
        if value not in options:
            raise self.error(key, value, f"must be one of {', '.join(map(repr, options))}")
        return value

    def method(self, key: str, default: str) -> str:
        value = self.opt_text(key, default) or default
        if value.upper() not in _METHODS:
            raise self.error(key, value, f"is not an HTTP method; use one of "
                             f"{', '.join(sorted(_METHODS))}")
        return value.upper()

    def path(self, key: str) -> str:
        value = self.text(key)
        if not value.startswith("/"):
            raise self.error(key, value, f'must start with "/", e.g. "/{value}"; the base URL '
                             "goes in [target] base_url")
        self.check_template(key, value, None)
        return value

    def opt_path(self, key: str) -> str | None:
        return self.path(key) if key in self._data else self.opt_text(key)

    def text_list(self, key: str) -> list[str]:
        value = self._get(key, _REQUIRED)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(key, value, 'must be a list of strings, e.g. ["tokens"]')
        return list(value)

    def text_table(self, key: str) -> dict[str, str]:
        value = self._get(key, {})
        if not isinstance(value, Mapping) or not all(
                isinstance(v, str) and v for v in value.values()):
            raise self.error(key, value, 'must be a table of strings, e.g. { name = "value" }')
        return dict(value)

    def code_table(self, key: str) -> dict[str, str]:
        table = self.text_table(key)
        for code, error in table.items():
            if not _ERROR_CODE.match(error):
                raise self.error(f"{key}.{code}", error, "must be a snake_case error code, "
                                 'e.g. "idempotency_conflict"')
        return table

    def status_list(self, key: str, default: Iterable[int]) -> frozenset[int]:
        value = self._get(key, list(default))
        if not isinstance(value, list) or not all(type(v) is int for v in value):
            raise self.error(key, value, "must be a list of status codes, e.g. [200, 201]")
        for status in value:
            if not 100 <= status < 500:
                raise self.error(key, status, "is not a 1xx-4xx status; a 5xx answer is "
                                 "always indeterminate (INFO), so it cannot be listed")
        return frozenset(value)

    def status_codes(self, key: str, default: Mapping[int, str]) -> dict[int, str]:
        value = self._get(key, default)
        if not isinstance(value, Mapping):
            raise self.error(key, value, 'must be a table, e.g. { 402 = "insufficient_funds" }')
        codes: dict[int, str] = {}
        for status_text, error in value.items():
            status = int(status_text) if str(status_text).isdigit() else None
            if status is None or not 400 <= status < 500:
                raise self.error(f"{key}.{status_text}", error, "is not a 4xx status; write "
                                 'e.g. status_fail = { 402 = "insufficient_funds" } (a 5xx '
                                 "is always INFO)")
            if not isinstance(error, str) or not _ERROR_CODE.match(error):
                raise self.error(f"{key}.{status_text}", error, "must be a snake_case error "
                                 'code, e.g. "insufficient_funds"')
            codes[status] = error
        return codes

    def template(self, key: str, allowed: frozenset[str]) -> Template | None:
        value = self._get(key, None)
        if value is not None:
            self.check_template(key, value, allowed)
        return value

    def check_template(self, key: str, template: Template, allowed: frozenset[str] | None) -> None:
        """Check placeholders, casts and braces; ``allowed`` None means any name."""
        if isinstance(template, list):
            for index, item in enumerate(template):
                self.check_template(f"{key}[{index}]", item, allowed)
        elif isinstance(template, Mapping):
            for item_key, item in template.items():
                self.check_template(f"{key}.{item_key}", item, allowed)
        elif isinstance(template, str):
            self._check_string(key, template, allowed)

    def _check_string(self, key: str, text: str, allowed: frozenset[str] | None) -> None:
        for match in _PLACEHOLDER.finditer(text):
            name, cast = match.group(1), match.group(2)
            if name and allowed is not None and name not in allowed:
                raise self.error(key, text, f"uses {{{name}}}, which is not available here; "
                                 f"available: {', '.join(sorted(allowed)) or '(none)'}")
            if cast and cast not in _CASTS:
                raise self.error(key, text, f"casts with :{cast}; use :int or :str")
        leftover = _PLACEHOLDER.sub("", text)
        if "{" in leftover or "}" in leftover:
            raise self.error(key, text, "has an unbalanced brace; write {{ or }} for a "
                             "literal brace and {name} for a variable")
