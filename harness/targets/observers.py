"""Observers: read a target's end state into an ``Observation``, keyed by logical user name.

``AdminHttpObserver`` reads admin HTTP endpoints (the reference service's audit);
``SqlObserver`` runs the profile's queries over psycopg in a READ ONLY transaction, so a
mistaken query cannot change what it observes; it also runs the schema check
(``SqlObserver.check_schema``) on the tables the profile names. Both report only the accounts of the
scenario's users (others may share a staging database), and both raise ``TargetError``
when they cannot observe: what the target *says* is never judged here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import httpx
import psycopg
from psycopg.rows import dict_row

from harness.errors import TargetError
from harness.model import AccountState, Observation, Totals
from harness.protocol import json_path
from harness.targets.profile import AdminHttpObserverSpec, AuthSpec, Profile, SqlObserverSpec
from harness.targets.schema_check import SchemaFinding, check_schema

__all__ = ["AdminHttpObserver", "Observer", "SqlObserver", "make_observer"]

_INTEGER_TEXT = re.compile(r"^-?[0-9]+$")
_ACCOUNT_INT_FIELDS = ("balance_tokens", "debt_tokens", "ledger_sum_tokens", "credited_tokens",
                       "clawed_back_tokens")
_TOTALS_FIELDS = ("minted_tokens", "clawed_back_tokens", "balances_tokens", "debts_tokens",
                  "drift_accounts_count")


class Observer(Protocol):
    """Reads the end state of the accounts named in ``target_ids`` (logical -> target id)."""

    async def observe(self, target_ids: Mapping[str, str]) -> Observation: ...


def make_observer(profile: Profile, *, client: httpx.AsyncClient, base_url: str,
                  admin_key: str | None, database_url: str | None = None,
                  timeout_s: float = 10.0) -> Observer | None:
    """The observer the profile asks for, or None when it names none."""
    spec = profile.observer
    if spec is None:
        return None
    if isinstance(spec, AdminHttpObserverSpec):
        return AdminHttpObserver(spec, client=client, base_url=base_url, admin_key=admin_key,
                                 auth=profile.auth, source=profile.source)
    url = database_url or spec.database_url
    if not url:
        raise TargetError(f"profile {profile.source}: the SQL observer needs a database URL; "
                          f"set {spec.database_url_env or 'database_url_env'} to a read-only "
                          "connection string of the target's database")
    return SqlObserver(spec, database_url=url, timeout_s=timeout_s, source=profile.source)


class AdminHttpObserver:
    """GET the accounts (and totals) endpoints with the admin key."""

    def __init__(self, spec: AdminHttpObserverSpec, *, client: httpx.AsyncClient, base_url: str,
                 admin_key: str | None, auth: AuthSpec, source: str) -> None:
        self._spec = spec
        self._client = client
        self._base_url = base_url.rstrip("/")
        self._headers = {"Accept": "application/json", **spec.headers}
        if admin_key:
            self._headers[auth.header] = auth.value(admin_key)
        self._source = source

    async def observe(self, target_ids: Mapping[str, str]) -> Observation:
        spec = self._spec
        items = json_path(await self._get(spec.accounts_path), spec.accounts_list_path)
        if not isinstance(items, list):
            raise TargetError(f"GET {spec.accounts_path} gave no list at "
                              f"{spec.accounts_list_path or '(the body)'!r}; fix [observer] "
                              f"accounts_list in {self._source}")
        rows = [{name: json_path(item, path) for name, path in spec.account_fields.items()}
                for item in items]
        accounts = _accounts(rows, target_ids, statuses=spec.statuses,
                             where=f"GET {spec.accounts_path}")
        totals = None
        if spec.totals_path is not None:
            body = await self._get(spec.totals_path)
            totals = _totals({name: json_path(body, path)
                              for name, path in spec.totals_fields.items()},
                             where=f"GET {spec.totals_path}")
        return Observation(accounts=accounts, totals=totals)

    async def _get(self, path: str) -> Any:
        url = self._base_url + path
        try:
            response = await self._client.get(url, headers=self._headers)
        except httpx.HTTPError as exc:
            raise TargetError(f"cannot observe the end state: GET {url} failed: "
                              f"{type(exc).__name__} {exc}") from exc
        if response.status_code != 200:
            raise TargetError(f"cannot observe the end state: GET {url} answered "
                              f"{response.status_code} {response.text[:200]!r}; check the "
                              "admin key and [observer] in the profile")
        try:
            return response.json()
        except ValueError as exc:
            raise TargetError(f"GET {url} answered with a body that is not JSON") from exc


class SqlObserver:
    """Run the profile's queries in a READ ONLY transaction with a statement timeout."""

    def __init__(self, spec: SqlObserverSpec, *, database_url: str, timeout_s: float,
                 source: str) -> None:
        self._spec = spec
        self._database_url = database_url
        self._timeout_s = timeout_s
        self._source = source

    @property
    def checks_schema(self) -> bool:
        """Whether the profile names the tables the schema check reads."""
        return self._spec.schema is not None

    async def check_schema(self) -> tuple[SchemaFinding, ...]:
        """The schema check's findings (``harness.targets.schema_check``); () if not named.

        Raises:
            TargetError: the database cannot be reached or its catalog cannot be read.
        """
        if self._spec.schema is None:
            return ()
        return await check_schema(self._database_url, self._spec.schema,
                                  timeout_s=self._timeout_s, source=self._source)

    async def observe(self, target_ids: Mapping[str, str]) -> Observation:
        params = {"user_ids": sorted(set(target_ids.values()))}
        try:
            async with await psycopg.AsyncConnection.connect(
                    self._database_url, autocommit=False,
                    connect_timeout=max(1, int(self._timeout_s))) as conn, conn.transaction():
                await conn.execute("SET TRANSACTION READ ONLY")
                await conn.execute("SELECT set_config('statement_timeout', %s, true)",
                                   (str(int(self._timeout_s * 1000)),))
                rows = await self._query(conn, self._spec.accounts_query, params)
                total_rows = None
                if self._spec.totals_query:
                    total_rows = await self._query(conn, self._spec.totals_query, params)
        except psycopg.Error as exc:
            raise TargetError(f"cannot observe the end state: the SQL observer of "
                              f"{self._source} failed: {type(exc).__name__}: "
                              f"{str(exc).strip()}") from exc
        accounts = _accounts(rows, target_ids, statuses=self._spec.statuses,
                             where=f"the accounts_query of {self._source}")
        totals = None
        if total_rows is not None:
            if len(total_rows) != 1:
                raise TargetError(f"the totals_query of {self._source} returned "
                                  f"{len(total_rows)} rows; it must return exactly one")
            totals = _totals(total_rows[0], where=f"the totals_query of {self._source}")
        return Observation(accounts=accounts, totals=totals)

    @staticmethod
    async def _query(conn: psycopg.AsyncConnection[Any], query: str,
                     params: Mapping[str, Any]) -> list[dict[str, Any]]:
        async with conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(query.encode(), params if "%(" in query else None)
            return list(await cursor.fetchall())


def _accounts(rows: Sequence[Mapping[str, Any]], target_ids: Mapping[str, str], *,
              statuses: Mapping[str, str], where: str) -> dict[str, AccountState]:
    """AccountStates of the scenario's users; rows of other users are left out.

    With a ``statuses`` map, a status is read in the harness's words, and a word the map
    does not name is not judged (None); without one, the status is taken as written.
    """
    user_by_id = {target_id: user for user, target_id in target_ids.items()}
    accounts: dict[str, AccountState] = {}
    for row in rows:
        if "user_id" not in row or "balance_tokens" not in row:
            raise TargetError(f"{where} must give user_id and balance_tokens; it gave "
                              f"{sorted(row)}")
        user = user_by_id.get(str(row["user_id"]))
        if user is None:
            continue
        values = {name: _integer(row.get(name), name, where) for name in _ACCOUNT_INT_FIELDS}
        if values["balance_tokens"] is None:
            raise TargetError(f"{where} gave no balance for user {user} ({row['user_id']})")
        status = row.get("status")
        accounts[user] = AccountState(
            user=user, balance_tokens=values["balance_tokens"],
            debt_tokens=values["debt_tokens"] or 0,
            status=_status(status, statuses),
            ledger_sum_tokens=values["ledger_sum_tokens"],
            credited_tokens=values["credited_tokens"],
            clawed_back_tokens=values["clawed_back_tokens"])
    return accounts


def _status(status: Any, statuses: Mapping[str, str]) -> str | None:
    if status is None:
        return None
    if not statuses:
        return str(status)
    return statuses.get(str(status))


def _totals(row: Mapping[str, Any], *, where: str) -> Totals:
    values = {name: _integer(row.get(name), name, where) for name in _TOTALS_FIELDS}
    missing = sorted(name for name, value in values.items() if value is None)
    if missing:
        raise TargetError(f"{where} gave no {missing[0]}")
    return Totals(**{name: int(value) for name, value in values.items() if value is not None})


def _integer(value: Any, name: str, where: str) -> int | None:
    """An integer count of tokens, accepting what JSON and SQL drivers hand back."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TargetError(f"{where}: {name} is a boolean ({value!r}), not a count")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER_TEXT.match(value):
        return int(value)
    try:
        integral = float(value).is_integer()
    except (TypeError, ValueError):
        integral = False
    if integral:
        return int(value)  # e.g. a Decimal from SUM() in SQL
    raise TargetError(f"{where}: {name} = {value!r} is not a whole number of tokens")
