"""Target profiles: the bundled ones load, and every mistake gets a message saying what to do."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from harness.errors import UsageError
from harness.model import F
from harness.targets.profile import (
    AdminHttpObserverSpec,
    FileProvisioning,
    HttpProvisioning,
    SqlObserverSpec,
    load_profile,
    parse_profile,
)

MINIMAL = """
[target]
name = "mini"
base_url = "http://127.0.0.1:9000/"

[metadata]
user_key = "user_id"
tokens_keys = ["tokens"]

[ops.tip]
path = "/tips"
body = { to = "{recipient_id}", amount = "{amount_tokens}" }
status_ok = [201]
status_fail = { 402 = "insufficient_funds" }

[provisioning]
mode = "http"
path = "/users"
body = { kind = "{kind}" }
id = "id"
token = "token"
"""


def _write(tmp_path: Path, text: str, name: str = "mini.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(UsageError) as caught:
        load_profile(_write(tmp_path, text), environ=environ or {})
    return str(caught.value)


def test_bundled_reference_profile_loads_every_target_op_and_an_admin_observer() -> None:
    profile = load_profile("reference", environ={})
    assert set(profile.ops) == {F.PURCHASE, F.TIP, F.CALL_OPEN, F.CALL_CHARGE, F.CALL_END,
                                F.READ_BALANCE, F.WEBHOOK}
    assert isinstance(profile.provisioning, HttpProvisioning)
    assert isinstance(profile.observer, AdminHttpObserverSpec)
    assert profile.metadata.tokens_keys == ("tokens",)
    assert profile.ops[F.TIP].status_fail[402] == "insufficient_funds"


def test_bundled_seed_profile_has_no_call_objects_users_from_a_file_and_sql() -> None:
    profile = load_profile("seed", environ={"TOKENCHAOS_USERS_FILE": "/tmp/users.json"})
    assert F.CALL_OPEN not in profile.ops
    assert profile.ops[F.TIP].idempotency_header is None
    assert profile.metadata.tokens_keys == ("tokenAmount", "bonusTokens")
    assert isinstance(profile.provisioning, FileProvisioning)
    assert profile.provisioning.users_file == Path("/tmp/users.json")
    assert isinstance(profile.observer, SqlObserverSpec)


def test_environment_overrides_the_base_url_and_admin_key_a_profile_names() -> None:
    profile = load_profile("reference", environ={"TOKENCHAOS_TARGET_URL": "http://h:1/",
                                                 "TOKENCHAOS_ADMIN_KEY": "adm"})
    assert (profile.base_url, profile.admin_key) == ("http://h:1", "adm")


def test_a_minimal_profile_loads_and_strips_the_trailing_slash(tmp_path: Path) -> None:
    profile = load_profile(_write(tmp_path, MINIMAL), environ={})
    assert profile.base_url == "http://127.0.0.1:9000"
    assert profile.ops[F.TIP].variables == {"recipient_id", "amount_tokens"}
    assert profile.observer is None


def test_an_unknown_profile_name_lists_the_bundled_ones() -> None:
    with pytest.raises(UsageError, match="reference, seed"):
        load_profile("staging-typo", environ={})


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    assert "mini.toml: not valid TOML" in _error(tmp_path, "[target\nname=1")


@pytest.mark.parametrize(("old", "new", "expected"), [
    # A typo in a key names the key and lists the known ones.
    ('status_ok = [201]', 'status_okay = [201]', "[ops.tip] status_okay = [201] is not a known "
     "key here; known keys:"),
    # A 5xx cannot be a FAIL: the write may have happened.
    ('{ 402 = "insufficient_funds" }', '{ 502 = "bad_gateway" }',
     "[ops.tip] status_fail.502 = 'bad_gateway' is not a 4xx status"),
    ('status_ok = [201]', 'status_ok = [201, 503]', "is not a 1xx-4xx status"),
    ('status_ok = [201]', 'status_ok = [201, 402]', "[ops.tip] status_fail = 402 is also in "
     "status_ok"),
    ('status_ok = [201]', '', "[ops.tip] status_ok is missing or empty; add e.g. status_ok = "
     "[200]"),
    # A placeholder the op does not offer lists the ones it does.
    ('"{recipient_id}"', '"{creator_id}"', "uses {creator_id}, which is not available here; "
     "available: amount_tokens, idempotency_key, recipient, recipient_id"),
    ('"{amount_tokens}"', '"{amount_tokens:float}"', "casts with :float; use :int or :str"),
    ('path = "/tips"', 'path = "/tips/{x"', "has an unbalanced brace"),
    ('path = "/tips"', 'path = "tips"', 'must start with "/"'),
    ('base_url = "http://127.0.0.1:9000/"', 'base_url = "127.0.0.1:9000"',
     "must start with http:// or https://"),
    ('base_url = "http://127.0.0.1:9000/"', '', "[target] base_url is missing"),
    ('[ops.tip]', '[ops.tips]', "[ops] tips = "),
    ('mode = "http"', 'mode = "ldap"', "[provisioning] mode = 'ldap' must be one of 'http', "
     "'file'"),
    ('tokens_keys = ["tokens"]', 'tokens_keys = "tokens"', "[metadata] tokens_keys = 'tokens' "
     "must be a list of strings"),
    ('id = "id"', '', "[provisioning] id is missing; add it"),
])
def test_profile_mistakes_name_the_file_the_key_the_value_and_the_fix(
        tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in MINIMAL
    message = _error(tmp_path, MINIMAL.replace(old, new, 1))
    assert message.startswith(f"profile {tmp_path / 'mini.toml'}: "), message
    assert expected in message, message


def test_a_purchase_op_must_say_where_the_intent_id_is(tmp_path: Path) -> None:
    text = MINIMAL + '\n[ops.purchase]\npath = "/buy"\nstatus_ok = [200]\n'
    message = _error(tmp_path, text)
    assert "[ops.purchase] result lacks intent_id" in message
    assert 'result = { intent_id = "intent_id" }' in message


def test_a_result_key_the_op_does_not_have_is_rejected(tmp_path: Path) -> None:
    text = MINIMAL.replace('status_fail = { 402 = "insufficient_funds" }',
                           'result = { balance = "balance" }')
    assert "result.balance = 'balance' is not a result of tip; known: balance_tokens, tip_id" \
        in _error(tmp_path, text)


def test_webhook_op_defaults_to_any_2xx_ok_and_any_4xx_rejected(tmp_path: Path) -> None:
    text = MINIMAL + '\n[ops.webhook]\npath = "/hooks"\n'
    spec = load_profile(_write(tmp_path, text), environ={}).ops[F.WEBHOOK]
    assert 204 in spec.status_ok
    assert spec.status_fail[400] == spec.status_fail[499] == "rejected"


def test_users_file_is_read_relative_to_the_profile(tmp_path: Path) -> None:
    text = MINIMAL.replace('mode = "http"\npath = "/users"\nbody = { kind = "{kind}" }\n'
                           'id = "id"\ntoken = "token"', 'mode = "file"\nusers_file = "u.json"')
    profile = load_profile(_write(tmp_path, text), environ={})
    assert isinstance(profile.provisioning, FileProvisioning)
    assert profile.provisioning.users_file == tmp_path / "u.json"


def test_sql_observer_needs_a_database_url_somewhere(tmp_path: Path) -> None:
    text = MINIMAL + '\n[observer]\nkind = "sql"\naccounts_query = "SELECT 1"\n'
    assert "[observer] database_url is missing; add database_url_env" in _error(tmp_path, text)


def test_admin_observer_with_totals_must_map_every_total(tmp_path: Path) -> None:
    text = MINIMAL + ('\n[observer]\nkind = "admin_http"\naccounts_path = "/a"\n'
                      'totals_path = "/t"\n[observer.account]\nuser_id = "id"\n'
                      'balance_tokens = "balance"\n')
    assert "[observer] totals = {} lacks balances_tokens" in _error(tmp_path, text)


def test_bundled_profiles_are_plain_toml_a_user_can_copy() -> None:
    root = Path(__file__).resolve().parents[2] / "harness" / "targets"
    for name in ("reference", "seed"):
        data: dict[str, Any] = tomllib.loads((root / f"{name}.toml").read_text())
        assert data["target"]["name"] == name


def test_environment_is_read_and_checked() -> None:
    from harness.targets.address import Environment

    data = tomllib.loads(MINIMAL.replace('[target]\n', '[target]\nenvironment = "staging"\n'))
    assert parse_profile(data, source="mini.toml").environment is Environment.STAGING
    assert parse_profile(tomllib.loads(MINIMAL), source="mini.toml").environment is None
    bad = tomllib.loads(MINIMAL.replace('[target]\n', '[target]\nenvironment = "prod"\n'))
    with pytest.raises(UsageError, match="environment = 'prod' must be one of 'local', "
                                         "'staging', 'production'"):
        parse_profile(bad, source="mini.toml")


def test_a_base_url_port_out_of_range_is_refused_when_loaded() -> None:
    data = tomllib.loads(MINIMAL.replace("127.0.0.1:9000", "127.0.0.1:99999"))
    with pytest.raises(UsageError, match=r"profile mini.toml: \[target\] base_url .* port"):
        parse_profile(data, source="mini.toml")
