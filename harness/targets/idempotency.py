"""How an op carries its idempotency key, and how a replayed answer is recognised.

Real services differ: one takes the key in a header, another in a JSON body field, a
third takes none on some spends. ``[ops.<kind>] idempotency`` says which::

    idempotency = "none"                          # no key: retries of the op are not tested
    idempotency = { header = "Idempotency-Key" }  # the harness adds the header
    idempotency = { body = "clientKey" }          # the harness adds the top-level body field
    idempotency_header = "Idempotency-Key"        # the older spelling of the header form

Left out, it is read from the op's templates: a header or a top-level body field whose
value is ``"{idempotency_key}"`` carries the key; nothing carrying it means ``"none"``.

A service may answer a replay (the same key again) with a body unlike the first answer,
e.g. ``{"billed": false}``. ``replay`` says how to recognise one::

    replay = { header = "Idempotent-Replayed", equals = "true" }
    replay = { body = "billed", equals = false }  # a dotted path and the JSON value

Everything here is parsing and checking at load time (``UsageError`` naming the key and
the fix); ``harness.protocol`` applies the result. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from harness.targets.toml_table import PLACEHOLDER, Table, Template, placeholders

__all__ = ["NO_IDEMPOTENCY", "Idempotency", "ReplayRule", "parse_idempotency", "parse_replay"]

KEY_VARIABLE = "idempotency_key"


@dataclass(frozen=True, slots=True)
class Idempotency:
    """Where an op's idempotency key goes.

    ``carrier`` is ``"header"``, ``"body"`` (a JSON body field) or ``"none"`` (the op takes
    no key: the protocol sends none, and scenarios do not test retries of it). ``name`` is
    the header or top-level body field; None with ``"body"`` when the body template puts
    the key somewhere deeper itself.
    """

    carrier: Literal["header", "body", "none"]
    name: str | None = None

    def __post_init__(self) -> None:
        assert self.carrier in ("header", "body", "none"), self.carrier
        if self.carrier == "none":
            assert self.name is None, self.name
        if self.carrier == "header":
            assert self.name, "a header carrier needs the header's name"

    @property
    def idempotent(self) -> bool:
        """Whether the op carries a key at all."""
        return self.carrier != "none"


NO_IDEMPOTENCY = Idempotency("none")

ReplayValue = str | int | float | bool


@dataclass(frozen=True, slots=True)
class ReplayRule:
    """An OK answer is a replay (nothing new applied) when ``name`` equals ``equals``.

    ``carrier`` ``"header"``: ``name`` is a header (any case) and ``equals`` its text;
    ``"body"``: ``name`` is a dotted JSON path and ``equals`` the JSON value (``false`` is
    not ``0``).
    """

    carrier: Literal["header", "body"]
    name: str
    equals: ReplayValue

    def __post_init__(self) -> None:
        assert self.carrier in ("header", "body"), self.carrier
        if self.carrier == "header":
            assert isinstance(self.equals, str), self.equals


def parse_idempotency(table: Table, *, path: str, body: Template | None,
                      headers: Mapping[str, str]) -> Idempotency:
    """The op's ``idempotency`` (or older ``idempotency_header``), checked against its templates.

    Raises:
        UsageError: both keys given, a malformed value, a carrier that collides with a
            header or body field of the templates, a body carrier without a JSON object
            body, ``"none"`` while a template sends the key, or the key in the path.
    """
    if KEY_VARIABLE in placeholders(path):
        raise table.error("path", path, "puts {idempotency_key} in the path; carry it in a "
                          'header or a body field instead: idempotency = { header = '
                          '"Idempotency-Key" } or idempotency = { body = "clientKey" }')
    if "idempotency" in table and "idempotency_header" in table:
        raise table.error("idempotency_header", table.raw("idempotency_header"),
                          "is given together with idempotency; keep one: idempotency = "
                          '{ header = "..." } replaces idempotency_header')
    if "idempotency_header" in table:
        declared: Idempotency | None = Idempotency("header", table.text("idempotency_header"))
    elif "idempotency" in table:
        declared = _declared(table)
    else:
        declared = None
    in_headers = sorted(name for name, text in headers.items()
                        if KEY_VARIABLE in placeholders(text))
    in_body = KEY_VARIABLE in placeholders(body)
    if declared is None:
        return _inferred(in_headers, body, in_body)
    if declared.carrier == "none":
        if in_headers or in_body:
            where = f"headers.{in_headers[0]}" if in_headers else "body"
            raise table.error("idempotency", "none", f"says the op takes no key, and {where} "
                              "sends {idempotency_key}; remove one of them")
        return declared
    assert declared.name is not None
    if declared.carrier == "header":
        _check_header_carrier(table, declared.name, headers)
    else:
        _check_body_carrier(table, declared.name, body)
    return declared


def parse_replay(table: Table) -> ReplayRule | None:
    """The op's ``replay`` rule, or None when it has none.

    Raises:
        UsageError: not a table of exactly one of ``header``/``body`` and ``equals``, or an
            ``equals`` of the wrong type.
    """
    if "replay" not in table:
        return None
    example = ('e.g. replay = { header = "Idempotent-Replayed", equals = "true" } or '
               'replay = { body = "billed", equals = false }')
    if not isinstance(table.raw("replay"), Mapping):
        raise table.error("replay", table.raw("replay"), f"is not a rule; {example}")
    replay = table.sub("replay", table.raw("replay"))
    replay.only("header", "body", "equals")
    carriers = sorted({"header", "body"} & replay.keys())
    if len(carriers) != 1:
        raise table.error("replay", table.raw("replay"), f"needs exactly one of header or "
                          f"body; {example}")
    if "equals" not in replay:
        raise table.error("replay", table.raw("replay"), f"lacks equals, the value that marks "
                          f"a replay; {example}")
    carrier: Literal["header", "body"] = "header" if carriers[0] == "header" else "body"
    name = replay.text(carrier)
    equals = replay.raw("equals")
    if carrier == "header" and not isinstance(equals, str):
        raise replay.error("equals", equals, 'must be the header\'s text, a string: equals = '
                           f'"{str(equals).lower()}"')
    if not isinstance(equals, str | int | float | bool):
        raise replay.error("equals", equals, "must be a JSON scalar: a string, a number, true "
                           "or false")
    return ReplayRule(carrier, name, equals)


def _declared(table: Table) -> Idempotency:
    value = table.raw("idempotency")
    example = ('write idempotency = "none", idempotency = { header = "Idempotency-Key" } or '
               'idempotency = { body = "clientKey" }')
    if value == "none":
        return NO_IDEMPOTENCY
    if not isinstance(value, Mapping):
        raise table.error("idempotency", value, f"is not a carrier; {example}")
    carrier_table = table.sub("idempotency", value)
    carrier_table.only("header", "body")
    if len(value) != 1:
        raise table.error("idempotency", value, f"needs exactly one of header or body; {example}")
    if "header" in value:
        return Idempotency("header", carrier_table.text("header"))
    field_name = carrier_table.text("body")
    if "." in field_name or "{" in field_name:
        raise carrier_table.error("body", field_name, "must be a top-level body field name; "
                                  "for a key deeper in the body, leave idempotency out and "
                                  'write "{idempotency_key}" in the body template there')
    return Idempotency("body", field_name)


def _inferred(in_headers: list[str], body: Template | None, in_body: bool) -> Idempotency:
    """The carrier the templates imply when the profile does not declare one."""
    if in_headers:
        return Idempotency("header", in_headers[0])
    if not in_body:
        return NO_IDEMPOTENCY
    if isinstance(body, Mapping):
        for field_name, value in body.items():
            if _is_key(value):
                return Idempotency("body", str(field_name))
    return Idempotency("body", None)  # deeper in the body: the template carries it


def _check_header_carrier(table: Table, name: str, headers: Mapping[str, str]) -> None:
    for header_name, text in headers.items():
        if header_name.lower() == name.lower() and not _is_key(text):
            raise table.error(f"headers.{header_name}", text, f"collides with the "
                              f"idempotency header {name!r}, which carries the key; remove "
                              "the header or write it as \"{idempotency_key}\"")


def _check_body_carrier(table: Table, name: str, body: Template | None) -> None:
    if body is not None and not isinstance(body, Mapping):
        raise table.error("idempotency", {"body": name}, "needs a JSON object body to put the "
                          "key in, and body is not a table; write body = { ... } or carry "
                          'the key in a header: idempotency = { header = "Idempotency-Key" }')
    if isinstance(body, Mapping) and name in body and not _is_key(body[name]):
        raise table.error(f"body.{name}", body[name], f"collides with idempotency = "
                          f"{{ body = {name!r} }}, where the harness puts the key; rename "
                          "one of them, or write this field as \"{idempotency_key}\"")


def _is_key(value: object) -> bool:
    """Whether a template value is exactly the key (``"{idempotency_key}"``, maybe ``:str``)."""
    if not isinstance(value, str):
        return False
    match = PLACEHOLDER.fullmatch(value)
    return bool(match and match.group(1) == KEY_VARIABLE and match.group(2) in (None, "str"))
