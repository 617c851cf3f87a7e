"""A TOML table that knows where it sits in its profile, so every message names them.

``Table`` wraps one parsed TOML table with the file it came from and its dotted place
(``ops.tip``); each accessor checks a key's type and raises ``UsageError`` naming the
file, the key, the value and what to write instead. Template strings are checked here
too (placeholders, casts, braces); what they mean is ``harness.targets.profile``'s and
``harness.protocol``'s business. No I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from harness.errors import UsageError

__all__ = ["CASTS", "ERROR_CODE", "METHODS", "PLACEHOLDER", "Table", "Template", "placeholders"]

Template = Any  # a TOML value: str, int, bool, float, list of templates, table of templates

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}")
CASTS = frozenset({"int", "str"})
ERROR_CODE = re.compile(r"^[a-z][a-z0-9_]*$")
_REQUIRED: Any = object()  # a sentinel: the key must be present


def placeholders(template: Template) -> frozenset[str]:
    """Every variable name a template uses (its casts and literal braces left out)."""
    names: set[str] = set()
    if isinstance(template, str):
        for match in PLACEHOLDER.finditer(template):
            if match.group(1):
                names.add(match.group(1))
    elif isinstance(template, list):
        for item in template:
            names |= placeholders(item)
    elif isinstance(template, Mapping):
        for item in template.values():
            names |= placeholders(item)
    return frozenset(names)


class Table:
    """One TOML table of a profile; every accessor checks its key and names it on error."""

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

    def keys(self) -> frozenset[str]:
        return frozenset(self._data)

    def raw(self, key: str, default: Any = None) -> Any:
        """The key's value as TOML gave it (any type), or ``default``; the caller checks it."""
        return self._data.get(key, default)

    def sub(self, key: str, data: Any) -> Table:
        """A table nested under ``key`` whose value the caller already holds."""
        where = f"{self._where}.{key}" if self._where else key
        return Table(data, source=self._source, where=where)

    def _get(self, key: str, default: Any) -> Any:
        if key in self._data:
            return self._data[key]
        if default is _REQUIRED:
            raise self.error(key, None, "is missing; add it")
        return default

    def table(self, key: str) -> Table:
        where = f"{self._where}.{key}" if self._where else key
        return Table(self._get(key, _REQUIRED), source=self._source, where=where)

    def opt_table(self, key: str) -> Table | None:
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
        if value.upper() not in METHODS:
            raise self.error(key, value, f"is not an HTTP method; use one of "
                             f"{', '.join(sorted(METHODS))}")
        return value.upper()

    def path(self, key: str, allowed: frozenset[str]) -> str:
        """A path template: starts with "/", and uses only the ``allowed`` variables."""
        value = self.text(key)
        if not value.startswith("/"):
            raise self.error(key, value, f'must start with "/", e.g. "/{value}"; the base URL '
                             "goes in [target] base_url")
        self.check_template(key, value, allowed)
        return value

    def opt_path(self, key: str, allowed: frozenset[str]) -> str | None:
        return self.path(key, allowed) if key in self._data else None

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
            if not ERROR_CODE.match(error):
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
            if not isinstance(error, str) or not ERROR_CODE.match(error):
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
        for match in PLACEHOLDER.finditer(text):
            name, cast = match.group(1), match.group(2)
            if name and allowed is not None and name not in allowed:
                raise self.error(key, text, f"uses {{{name}}}, which is not available here; "
                                 f"available: {', '.join(sorted(allowed)) or '(none)'}")
            if cast and cast not in CASTS:
                raise self.error(key, text, f"casts with :{cast}; use :int or :str")
        leftover = PLACEHOLDER.sub("", text)
        if "{" in leftover or "}" in leftover:
            raise self.error(key, text, "has an unbalanced brace; write {{ or }} for a "
                             "literal brace and {name} for a variable")
