"""Every key the profile parser accepts has a meaning in ``PROFILE_KEYS``, and the reverse.

The parser is probed, not read: a profile with an unknown key in a section is refused with
the list of the keys that section knows, and that list is compared with the table.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from harness.errors import UsageError
from harness.model import F
from harness.targets.profile import RESULT_KEYS, TEMPLATE_VARIABLES, parse_profile
from harness.targets.profile_keys import (
    OBSERVER_FIELDS,
    OP_LEFT_OUT,
    PROFILE_KEYS,
    RESULT_KEY_MEANINGS,
    TEMPLATE_VARIABLE_MEANINGS,
    TOTALS_FIELDS,
)

# The smallest profile the parser takes; tests add or replace sections of a copy.
PROBE_PROFILE: dict[str, Any] = {
    "target": {"name": "probe", "base_url": "http://127.0.0.1:9000"},
    "auth": {"header": "Authorization", "scheme": "Bearer"},
    "metadata": {"user_key": "user_id", "tokens_keys": ["tokens"]},
    "ops": {"tip": {"path": "/tips", "status_ok": [201]}},
    "provisioning": {"mode": "http", "path": "/users", "id": "id", "token": "token"},
    "observer": {"kind": "sql", "database_url": "postgresql://127.0.0.1/x",
                 "accounts_query": "SELECT 1"},
}
_VARIANTS: dict[str, dict[str, Any]] = {
    "provisioning": {"mode": "file", "users_file": "users.json"},
    "observer": {"kind": "admin_http", "accounts_path": "/accounts",
                 "account": {"user_id": "id", "balance_tokens": "balance"}},
}
_KNOWN = re.compile(r"(?:known keys|known): (.*)$")


def parse_with(**sections: dict[str, Any]) -> Any:
    """Parse the probe profile with some keys of some sections replaced or added."""
    data = copy.deepcopy(PROBE_PROFILE)
    for name, keys in sections.items():
        data[name] = {**data.get(name, {}), **keys}
    return parse_profile(data, source="probe.toml", environ={})


def _accepted(section: str, replace: dict[str, Any] | None = None) -> set[str]:
    data = copy.deepcopy(PROBE_PROFILE)
    if replace is not None:
        data[section] = copy.deepcopy(replace)
    target = data
    for part in section.split("."):
        target = target.setdefault(part, {})
    target["zz_not_a_key"] = "x"
    with pytest.raises(UsageError) as caught:
        parse_profile(data, source="probe.toml", environ={})
    match = _KNOWN.search(str(caught.value))
    assert match, str(caught.value)
    return set(match.group(1).split(", "))


def _documented(section: str, when: str | None = "*") -> set[str]:
    return {k.key for k in PROFILE_KEYS if k.section == section
            and (when == "*" or k.when is None or k.when == when)}


@pytest.mark.parametrize(("section", "probe", "variant", "when"), [
    ("target", "target", None, None),
    ("auth", "auth", None, None),
    ("metadata", "metadata", None, None),
    ("responses", "responses", None, None),
    ("ops.<op>", "ops.tip", None, None),
    ("provisioning", "provisioning", None, 'mode = "http"'),
    ("provisioning", "provisioning", "provisioning", 'mode = "file"'),
    ("observer", "observer", None, 'kind = "sql"'),
    ("observer", "observer", "observer", 'kind = "admin_http"'),
    ("faults", "faults", None, None),
    ("faults.toxiproxy", "faults.toxiproxy", None, None),
])
def test_every_key_the_parser_accepts_is_documented(section: str, probe: str,
                                                     variant: str | None,
                                                     when: str | None) -> None:
    accepted = _accepted(probe, _VARIANTS[variant] if variant else None)
    assert accepted <= _documented(section, when), accepted - _documented(section, when)


def test_every_observer_field_the_parser_accepts_is_documented() -> None:
    for table, documented in (("observer.account", OBSERVER_FIELDS),
                              ("observer.totals", TOTALS_FIELDS)):
        accepted = _field_names(table)
        assert accepted == {f.name for f in documented}, table


def _field_names(table: str) -> set[str]:
    observer = copy.deepcopy(_VARIANTS["observer"])
    key = table.split(".")[1]
    observer.setdefault(key, {})["zz_not_a_field"] = "x"
    if key == "totals":
        observer["totals_path"] = "/totals"
    data = {**copy.deepcopy(PROBE_PROFILE), "observer": observer}
    with pytest.raises(UsageError) as caught:
        parse_profile(data, source="probe.toml", environ={})
    match = _KNOWN.search(str(caught.value))
    assert match, str(caught.value)
    return set(match.group(1).split(", "))


def test_every_template_variable_and_result_key_has_a_meaning() -> None:
    variables = set().union(*TEMPLATE_VARIABLES.values()) | {"kind", "name"}
    assert variables <= set(TEMPLATE_VARIABLE_MEANINGS)
    assert set().union(*RESULT_KEYS.values()) <= set(RESULT_KEY_MEANINGS)


def test_every_op_kind_says_what_leaving_it_out_means() -> None:
    assert set(OP_LEFT_OUT) == {f.value for f in TEMPLATE_VARIABLES}
    assert F.WEBHOOK.value in OP_LEFT_OUT


def test_every_documented_key_has_a_meaning_and_one_row() -> None:
    rows = [(k.section, k.key, k.when) for k in PROFILE_KEYS]
    assert len(rows) == len(set(rows))
    assert all(k.meaning.strip() for k in PROFILE_KEYS)
