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
    Idempotency,
    Profile,
    ReplayRule,
    SqlObserverSpec,
    load_profile,
    parse_profile,
)

MINIMAL = """
[target]
name = "mini"
base_url = "http://127.0.0.1:9000/"

[auth]
header = "Authorization"
scheme = "Bearer"

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
    assert not profile.ops[F.TIP].idempotent
    assert not profile.ops[F.CALL_CHARGE].idempotent
    assert profile.ops[F.PURCHASE].idempotency == Idempotency("body", "clientIdempotencyKey")
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


def _load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Profile:
    return load_profile(_write(tmp_path, text), environ=environ or {})


def _tip(text: str) -> str:
    """MINIMAL with extra lines at the end of its [ops.tip] table."""
    marker = 'status_fail = { 402 = "insufficient_funds" }\n'
    assert marker in MINIMAL
    return MINIMAL.replace(marker, marker + text + "\n", 1)


def test_bundled_reference_profile_carries_keys_in_a_header_and_recognises_replays() -> None:
    profile = load_profile("reference", environ={})
    for f in (F.PURCHASE, F.TIP, F.CALL_OPEN, F.CALL_CHARGE, F.CALL_END):
        assert profile.ops[f].idempotency == Idempotency("header", "Idempotency-Key"), f
        assert profile.ops[f].idempotent
        assert profile.ops[f].replay == ReplayRule("header", "Idempotent-Replayed", "true"), f
    assert not profile.ops[F.READ_BALANCE].idempotent


# -- [auth] ---------------------------------------------------------------------------------


def test_a_profile_without_auth_says_to_write_a_scheme(tmp_path: Path) -> None:
    text = MINIMAL.replace('[auth]\nheader = "Authorization"\nscheme = "Bearer"\n', "")
    message = _error(tmp_path, text)
    assert "[auth] is missing" in message
    assert 'scheme = "none"' in message


def test_leaving_the_scheme_out_is_an_error_not_a_silent_bearer(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL.replace('scheme = "Bearer"\n', ""))
    assert "[auth] scheme is missing" in message
    assert 'write scheme = "Bearer" or scheme = "none"' in message


def test_scheme_none_sends_the_bare_token_and_a_word_goes_before_it(tmp_path: Path) -> None:
    bare = _load(tmp_path, MINIMAL.replace('header = "Authorization"\nscheme = "Bearer"',
                                           'header = "X-Api-Key"\nscheme = "none"'))
    assert (bare.auth.header, bare.auth.scheme, bare.auth.value("k1")) == ("X-Api-Key", None,
                                                                           "k1")
    token = _load(tmp_path, MINIMAL.replace('scheme = "Bearer"', 'scheme = "Token"'))
    assert token.auth.value("k1") == "Token k1"


def test_a_scheme_of_two_words_is_refused(tmp_path: Path) -> None:
    assert "[auth] scheme = 'Bearer token' must be one word" in _error(
        tmp_path, MINIMAL.replace('scheme = "Bearer"', 'scheme = "Bearer token"'))


# -- idempotency ------------------------------------------------------------------------------


@pytest.mark.parametrize(("lines", "expected"), [
    ('idempotency = "none"', Idempotency("none")),
    ('idempotency = { header = "Idem-Key" }', Idempotency("header", "Idem-Key")),
    ('idempotency = { body = "clientKey" }', Idempotency("body", "clientKey")),
    ('idempotency_header = "Idem-Key"', Idempotency("header", "Idem-Key")),
    # Left out: what the templates carry.
    ('headers = { "X-Key" = "{idempotency_key}" }', Idempotency("header", "X-Key")),
    ('', Idempotency("none")),
])
def test_idempotency_carriers(tmp_path: Path, lines: str, expected: Idempotency) -> None:
    spec = _load(tmp_path, _tip(lines)).ops[F.TIP]
    assert spec.idempotency == expected
    assert spec.idempotent == (expected.carrier != "none")
    assert spec.idempotency_header == (expected.name if expected.carrier == "header" else None)


def test_a_key_in_a_body_template_field_is_that_fields_carrier(tmp_path: Path) -> None:
    text = MINIMAL.replace('amount = "{amount_tokens}" }',
                           'amount = "{amount_tokens}", ref = "{idempotency_key}" }')
    assert _load(tmp_path, text).ops[F.TIP].idempotency == Idempotency("body", "ref")


def test_a_body_field_that_is_the_key_itself_does_not_collide(tmp_path: Path) -> None:
    text = _tip('idempotency = { body = "ref" }').replace(
        'amount = "{amount_tokens}" }', 'amount = "{amount_tokens}", ref = "{idempotency_key}" }')
    assert _load(tmp_path, text).ops[F.TIP].idempotency == Idempotency("body", "ref")


@pytest.mark.parametrize(("text", "expected"), [
    (_tip('idempotency = { header = "K" }\nidempotency_header = "K"'),
     "[ops.tip] idempotency_header = 'K' is given together with idempotency; keep one"),
    (_tip('idempotency = "yes"'), "[ops.tip] idempotency = 'yes' is not a carrier; write "
     'idempotency = "none"'),
    (_tip('idempotency = { header = "K", body = "k" }'), "needs exactly one of header or body"),
    (_tip('idempotency = { cookie = "k" }'), "[ops.tip.idempotency] cookie = 'k' is not a known "
     "key here"),
    (_tip('idempotency = { body = "meta.key" }'), "[ops.tip.idempotency] body = 'meta.key' must "
     "be a top-level body field name"),
    # The body field the key goes in is already a field of the body.
    (_tip('idempotency = { body = "amount" }'), "[ops.tip] body.amount = '{amount_tokens}' "
     "collides with idempotency = { body = 'amount' }"),
    (_tip('idempotency = { header = "X-Key" }\nheaders = { "x-key" = "fixed" }'),
     "[ops.tip] headers.x-key = 'fixed' collides with the idempotency header 'X-Key'"),
    (_tip('idempotency = "none"\nheaders = { "X-Key" = "{idempotency_key}" }'),
     "[ops.tip] idempotency = 'none' says the op takes no key, and headers.X-Key sends "
     "{idempotency_key}"),
    (MINIMAL.replace('path = "/tips"', 'path = "/tips/{idempotency_key}"'),
     "[ops.tip] path = '/tips/{idempotency_key}' puts {idempotency_key} in the path"),
    (MINIMAL.replace('body = { to = "{recipient_id}", amount = "{amount_tokens}" }',
                     'body = ["{recipient_id}"]\nidempotency = { body = "key" }'),
     "needs a JSON object body to put the key in"),
])
def test_idempotency_mistakes_are_caught_when_the_profile_loads(
        tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _error(tmp_path, text)


def test_a_read_or_a_webhook_takes_no_idempotency_or_replay(tmp_path: Path) -> None:
    read = MINIMAL + ('\n[ops.read_balance]\nmethod = "GET"\npath = "/me"\nstatus_ok = [200]\n'
                      'result = { balance_tokens = "balance" }\nidempotency = "none"\n')
    assert "[ops.read_balance] idempotency = 'none' is not a known key here" in _error(
        tmp_path, read)
    hook = MINIMAL + '\n[ops.webhook]\npath = "/hooks"\nbody = { x = 1 }\n'
    assert "[ops.webhook] body = {'x': 1} is not a known key here" in _error(tmp_path, hook)


# -- replay -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "expected"), [
    ('replay = { header = "Idempotent-Replayed", equals = "true" }',
     ReplayRule("header", "Idempotent-Replayed", "true")),
    ('replay = { body = "charge.billed", equals = false }', ReplayRule("body", "charge.billed",
                                                                       False)),
    ('replay = { body = "status", equals = "duplicate" }', ReplayRule("body", "status",
                                                                      "duplicate")),
])
def test_replay_rules_load(tmp_path: Path, line: str, expected: ReplayRule) -> None:
    assert _load(tmp_path, _tip(line)).ops[F.TIP].replay == expected


@pytest.mark.parametrize(("line", "expected"), [
    ('replay = { header = "R", body = "b", equals = 1 }', "needs exactly one of header or body"),
    ('replay = { body = "billed" }', "lacks equals, the value that marks a replay"),
    ('replay = { header = "R", equals = true }', "[ops.tip.replay] equals = True must be the "
     "header's text, a string: equals = \"true\""),
    ('replay = { body = "b", equals = [1] }', "must be a JSON scalar"),
    ('replay = "Idempotent-Replayed"', "[ops.tip] replay = 'Idempotent-Replayed' is not a rule"),
])
def test_replay_mistakes_are_caught_when_the_profile_loads(
        tmp_path: Path, line: str, expected: str) -> None:
    assert expected in _error(tmp_path, _tip(line))


# -- what a template needs --------------------------------------------------------------------

CALLS = ('\n[ops.call_charge]\npath = "/calls/{call_id}/charges"\nbody = { minute = "{minute}" }'
         '\nstatus_ok = [200]\n')


def test_a_template_that_needs_an_op_the_profile_lacks_is_refused(tmp_path: Path) -> None:
    message = _error(tmp_path, MINIMAL + CALLS)
    assert "[ops] call_charge uses {call_id}, which comes from the answer to call_open, and the "\
        "profile has no [ops.call_open]" in message
    with_open = MINIMAL + CALLS + ('\n[ops.call_open]\npath = "/calls"\nstatus_ok = [201]\n'
                                   'result = { call_id = "id" }\n')
    assert F.CALL_CHARGE in _load(tmp_path, with_open).ops


def test_a_path_variable_the_op_does_not_offer_is_refused_at_load(tmp_path: Path) -> None:
    text = MINIMAL.replace('path = "/tips"', 'path = "/tips/{minute}"')
    assert "[ops.tip] path = '/tips/{minute}' uses {minute}, which is not available here" in \
        _error(tmp_path, text)


@pytest.mark.parametrize(("table", "key"), [
    ('[ops.call_open]\npath = "/calls"\nstatus_ok = [201]\n', "call_id"),
    ('[ops.read_balance]\nmethod = "GET"\npath = "/me"\nstatus_ok = [200]\n', "balance_tokens"),
])
def test_required_result_keys(tmp_path: Path, table: str, key: str) -> None:
    assert f"result lacks {key}" in _error(tmp_path, MINIMAL + "\n" + table)


def test_fail_by_code_without_an_error_code_path_is_refused(tmp_path: Path) -> None:
    text = _tip('fail_by_code = { dup = "idempotency_conflict" }')
    assert "[ops.tip] fail_by_code = {'dup': 'idempotency_conflict'} needs to know where the " \
        'error code is in a FAIL body; add [responses] error_code_path = "error.code"' in \
        _error(tmp_path, text)
    assert _load(tmp_path, text + '\n[responses]\nerror_code_path = "code"\n').ops[
        F.TIP].fail_by_code == {"dup": "idempotency_conflict"}


def test_observer_and_health_paths_take_no_variables(tmp_path: Path) -> None:
    text = MINIMAL.replace('[target]\n', '[target]\nhealth_path = "/health/{kind}"\n')
    assert "[target] health_path = '/health/{kind}' uses {kind}, which is not available here; " \
        "available: (none)" in _error(tmp_path, text)


# -- provisioning -----------------------------------------------------------------------------

_PROVISIONING_BODY = 'body = { kind = "{kind}" }\n'


def _provisioning(lines: str, body: str = _PROVISIONING_BODY) -> str:
    assert _PROVISIONING_BODY in MINIMAL
    return MINIMAL.replace(_PROVISIONING_BODY, body + lines + "\n", 1)


def test_provisioning_headers_read_the_environment_when_the_profile_loads(
        tmp_path: Path) -> None:
    text = _provisioning('headers = { "X-Staging-Token" = "{env:STAGING_TOKEN}", '
                         '"X-Who" = "harness-{name}" }')
    spec = _load(tmp_path, text, {"STAGING_TOKEN": "s3{cr}t"}).provisioning
    assert isinstance(spec, HttpProvisioning)
    # The value is taken literally: braces in it are not template braces.
    assert spec.headers == {"X-Staging-Token": "s3{{cr}}t", "X-Who": "harness-{name}"}


def test_a_missing_environment_variable_names_it_and_the_header(tmp_path: Path) -> None:
    text = _provisioning('headers = { "X-Staging-Token" = "{env:STAGING_TOKEN}" }')
    message = _error(tmp_path, text, {"OTHER": "1"})
    assert "[provisioning] headers.X-Staging-Token = '{env:STAGING_TOKEN}' reads the " \
        "environment variable STAGING_TOKEN, which is not set; export STAGING_TOKEN=" in message


def test_kinds_are_merged_into_the_body_per_kind(tmp_path: Path) -> None:
    text = _provisioning('kinds = { fan = { isCreator = false }, creator = { isCreator = true, '
                         'role = "{kind}" } }', body='body = { source = "harness" }\n')
    spec = _load(tmp_path, text).provisioning
    assert isinstance(spec, HttpProvisioning)
    assert spec.body_for("fan") == {"source": "harness", "isCreator": False}
    assert spec.body_for("creator") == {"source": "harness", "isCreator": True,
                                        "role": "{kind}"}
    no_body = _load(tmp_path, _provisioning('kinds = { fan = { c = 0 }, creator = { c = 1 } }',
                                            body="")).provisioning
    assert isinstance(no_body, HttpProvisioning)
    assert no_body.body_for("creator") == {"c": 1}


@pytest.mark.parametrize(("lines", "body", "expected"), [
    ('kinds = { fan = { isCreator = false } }', _PROVISIONING_BODY,
     "[provisioning.kinds] creator must be a table of body fields for a creator"),
    ('kinds = { fan = { a = 1 }, creator = { a = 2 }, admin = { a = 3 } }', _PROVISIONING_BODY,
     "[provisioning.kinds] admin = {'a': 3} is not a known key here"),
    ('kinds = { fan = { kind = "f" }, creator = { a = 2 } }', _PROVISIONING_BODY,
     "[provisioning.kinds] fan.kind = 'f' is also in body"),
    ('kinds = { fan = { a = 1 }, creator = { a = 2 } }', 'body = ["{kind}"]\n',
     "merges fields into the body, and body is not a table"),
    ('kinds = { fan = { a = "{fan_id}" }, creator = { a = 2 } }', _PROVISIONING_BODY,
     "uses {fan_id}, which is not available here; available: kind, name"),
    ('', 'path = "/users/{team}"\n', "uses {team}, which is not available here"),
])
def test_provisioning_mistakes_are_caught_when_the_profile_loads(
        tmp_path: Path, lines: str, body: str, expected: str) -> None:
    text = _provisioning(lines, body)
    if body.startswith("path"):
        text = text.replace('path = "/users"\n', "")
    assert expected in _error(tmp_path, text)


_ADMIN_OBSERVER = ('\n[observer]\nkind = "admin_http"\naccounts_path = "/a"\n{statuses}'
                   '[observer.account]\nuser_id = "id"\nbalance_tokens = "balance"\n')


def test_observer_statuses_map_the_services_words_to_ours(tmp_path: Path) -> None:
    text = MINIMAL + _ADMIN_OBSERVER.format(statuses='statuses = { OWING = "debt", OK = '
                                                     '"active" }\n')
    observer = _load(tmp_path, text).observer
    assert isinstance(observer, AdminHttpObserverSpec)
    assert observer.statuses == {"OWING": "debt", "OK": "active"}
    assert _load(tmp_path, MINIMAL + _ADMIN_OBSERVER.format(statuses="")).observer is not None


def test_observer_statuses_are_refused_outside_our_words_or_without_debt(
        tmp_path: Path) -> None:
    wrong = MINIMAL + _ADMIN_OBSERVER.format(statuses='statuses = { OWING = "owing" }\n')
    assert "statuses.OWING = 'owing' must be one of active, debt" in _error(tmp_path, wrong)
    no_debt = MINIMAL + _ADMIN_OBSERVER.format(statuses='statuses = { OK = "active" }\n')
    assert 'names no word for "debt"' in _error(tmp_path, no_debt)


_SETTLE = '\n[settle]\nmode = "pending"\npath = "/inbox"\npending = "pending"\n'


def test_settle_reads_its_mode_its_bounds_and_headers_from_the_environment(
        tmp_path: Path) -> None:
    text = MINIMAL + _SETTLE + ('headers = { "X-Staging-Token" = "{env:STAGING}" }\n'
                                "interval_ms = 50\ntimeout_s = 12.5\n")
    settle = _load(tmp_path, text, environ={"STAGING": "s3{c}ret"}).settle
    assert settle is not None
    assert (settle.mode, settle.path, settle.pending) == ("pending", "/inbox", "pending")
    assert settle.headers == {"X-Staging-Token": "s3{c}ret"}
    assert (settle.interval_ms, settle.timeout_s) == (50, 12.5)
    assert _load(tmp_path, MINIMAL).settle is None


@pytest.mark.parametrize(("extra", "message"), [
    ("interval_ms = 0\n", "interval_ms = 0 must be an integer from 10 to 10000"),
    ("interval_ms = 2.5\n", "interval_ms = 2.5 must be an integer"),
    ('timeout_s = "soon"\n', "timeout_s = 'soon' must be a number from 0.1 to 600"),
    ("stable_ms = 100\n", "stable_ms = 100 is not a known key here"),
    ('headers = { "X-T" = "{env:UNSET}" }\n', "reads the environment variable UNSET"),
    ('headers = { "X-T" = "{user_id}" }\n', "headers.X-T"),
])
def test_settle_refuses_what_it_cannot_use(tmp_path: Path, extra: str, message: str) -> None:
    assert message in _error(tmp_path, MINIMAL + _SETTLE + extra)


def test_settle_by_a_stable_end_state_needs_an_observer(tmp_path: Path) -> None:
    text = MINIMAL + '\n[settle]\nmode = "stable"\nstable_ms = 500\n'
    assert '[settle] mode = \'stable\' reads the end state, and the profile has no [observer]' \
        in _error(tmp_path, text)
    spec = _load(tmp_path, text + _ADMIN_OBSERVER.format(statuses="")).settle
    assert spec is not None and spec.stable_ms == 500


_PURCHASE_BY_NAME = ('\n[ops.purchase]\npath = "/purchases"\nbody = { bundle = "{package}" }\n'
                     'status_ok = [201]\nresult = { intent_id = "intent" }\n')


def test_a_purchase_by_bundle_name_needs_a_name_for_every_package(tmp_path: Path) -> None:
    priced = ('\n[pricing]\ncents_per_token = 1\npackages = [{ tokens = 250, cents = 250, '
              'name = "starter" }, { tokens = 1000, cents = 1000%s }]\n')
    named = _load(tmp_path, MINIMAL + _PURCHASE_BY_NAME + priced % ', name = "plus"')
    assert "package" in named.ops[F.PURCHASE].variables
    message = _error(tmp_path, MINIMAL + _PURCHASE_BY_NAME + priced % "")
    assert "[ops.purchase] sends {package}, and the package(s) of [1000] tokens have no " \
           "name" in message
