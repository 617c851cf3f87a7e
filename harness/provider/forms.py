"""Stripe's form encoding, read back into nested data: ``metadata[user_id]=7``, ``expand[]=x``.

Stripe's API (and its SDK) send ``application/x-www-form-urlencoded`` bodies in which
brackets build hashes and arrays: ``metadata[user_id]=7`` is ``{"metadata": {"user_id":
"7"}}``; ``expand[]=latest_charge`` and ``expand[0]=latest_charge`` are both
``{"expand": ["latest_charge"]}``. This module turns pairs into that shape, within fixed
bounds, and refuses ambiguous input with a ``StripeError`` as Stripe would. Pure: no I/O.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from harness.provider.objects import StripeError

__all__ = ["FORM_BODY_BYTES_MAX", "parse_form", "parse_pairs"]

FORM_BODY_BYTES_MAX = 1 << 20  # Stripe itself refuses far smaller requests
_PAIRS_MAX = 1_000
_DEPTH_MAX = 5
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_NOT_ARRAYS = frozenset({"metadata"})  # hashes whose keys may well be digits


def parse_form(body: bytes) -> dict[str, Any]:
    """Parse a form-encoded body into nested dicts and lists of strings.

    Raises:
        StripeError: 400 when the body is too large, not UTF-8, or its keys conflict.
    """
    if len(body) > FORM_BODY_BYTES_MAX:
        raise StripeError(400, f"Request body larger than {FORM_BODY_BYTES_MAX} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StripeError(400, "Request body is not valid UTF-8") from exc
    pairs = urllib.parse.parse_qsl(text, keep_blank_values=True,
                                   max_num_fields=_PAIRS_MAX)
    return parse_pairs(pairs)


def parse_pairs(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Nest ``(key, value)`` pairs; ``a[]`` appends, ``a[0]`` indexes, ``a[b]`` nests."""
    if len(pairs) > _PAIRS_MAX:
        raise StripeError(400, f"More than {_PAIRS_MAX} parameters")
    root: dict[str, Any] = {}
    for key, value in pairs:
        path = _split_key(key)
        _insert(root, path, value, key)
    return {name: _arrays(value, name) for name, value in root.items()}


def _split_key(key: str) -> list[str]:
    match = _KEY.match(key)
    if match is None:
        raise StripeError(400, f"Invalid parameter name: {key!r}", param=key)
    parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
    if len(parts) > _DEPTH_MAX:
        raise StripeError(400, f"Parameter nested deeper than {_DEPTH_MAX}: {key!r}",
                          param=key)
    return parts


def _insert(root: dict[str, Any], path: list[str], value: str, key: str) -> None:
    """Walk ``path`` from ``root``, creating hashes; an empty part appends to an array."""
    node: Any = root
    for position, part in enumerate(path):
        last = position == len(path) - 1
        if part == "":  # "a[]": the parent holds an array of the values that follow
            if not isinstance(node, list):
                raise StripeError(400, f"Conflicting parameter: {key!r}", param=key)
            if not last:
                node.append({})
                node = node[-1]
                continue
            node.append(value)
            return
        next_is_array = not last and path[position + 1] == ""
        if not isinstance(node, dict):
            raise StripeError(400, f"Conflicting parameter: {key!r}", param=key)
        if last:
            if part in node:
                raise StripeError(400, f"Parameter given twice: {key!r}", param=key)
            node[part] = value
            return
        child = node.setdefault(part, [] if next_is_array else {})
        if isinstance(child, str) or isinstance(child, list) != next_is_array:
            raise StripeError(400, f"Conflicting parameter: {key!r}", param=key)
        node = child


def _arrays(value: Any, name: str) -> Any:
    """Turn hashes keyed ``0, 1, …`` into arrays (``expand[0]=x``), except under metadata."""
    if isinstance(value, list):
        return [_arrays(item, name) for item in value]
    if not isinstance(value, dict):
        return value
    converted = {key: _arrays(item, key) for key, item in value.items()}
    if name in _NOT_ARRAYS or not converted:
        return converted
    if all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted
