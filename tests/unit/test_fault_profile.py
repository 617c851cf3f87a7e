"""The profile's ``[faults]`` table: commands in pairs, bounded timeouts, a Toxiproxy."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from harness.errors import UsageError
from harness.profile_docs import render_chapter
from harness.targets.fault_profile import (
    COMMAND_TIMEOUT_S_DEFAULT,
    RECOVER_TIMEOUT_S_DEFAULT,
    FaultsSpec,
    ToxiproxySpec,
)
from harness.targets.profile import Profile, parse_profile

_BASE: dict[str, Any] = {
    "target": {"name": "probe", "base_url": "http://127.0.0.1:9000", "health_path": "/healthz"},
    "auth": {"header": "Authorization", "scheme": "Bearer"},
    "metadata": {"user_key": "user_id", "tokens_keys": ["tokens"]},
    "ops": {"tip": {"path": "/tips", "status_ok": [201]}},
    "provisioning": {"mode": "http", "path": "/users", "id": "id", "token": "token"},
}
_KILL = {"kill": ["kubectl", "delete", "pod", "tokens-0"],
         "restart": ["kubectl", "rollout", "status", "sts/tokens"]}


def _parse(faults: dict[str, Any] | None, *, environ: dict[str, str] | None = None,
           health_path: str | None = "/healthz", folder: Path | None = None) -> Profile:
    data = copy.deepcopy(_BASE)
    if faults is not None:
        data["faults"] = faults
    if health_path is None:
        del data["target"]["health_path"]
    return parse_profile(data, source="probe.toml", folder=folder, environ=environ or {})


def _error(faults: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(UsageError) as caught:
        _parse(faults, **kwargs)
    return str(caught.value)


def test_a_profile_without_faults_has_no_commands_and_no_toxiproxy() -> None:
    faults = _parse(None).faults
    assert faults == FaultsSpec()
    assert faults.commands == {}
    assert faults.toxiproxy is None


def test_kill_and_restart_load_as_argv_tuples_with_default_timeouts(tmp_path: Path) -> None:
    faults = _parse(dict(_KILL), folder=tmp_path).faults
    assert faults.kill == ("kubectl", "delete", "pod", "tokens-0")
    assert faults.restart == ("kubectl", "rollout", "status", "sts/tokens")
    assert set(faults.commands) == {"kill", "restart"}
    assert faults.command_timeout_s == COMMAND_TIMEOUT_S_DEFAULT
    assert faults.recover_timeout_s == RECOVER_TIMEOUT_S_DEFAULT
    assert faults.workdir == tmp_path


def test_pause_and_resume_load_with_their_timeouts() -> None:
    faults = _parse({"pause": ["docker", "pause", "t"], "resume": ["docker", "unpause", "t"],
                     "command_timeout_s": 5, "recover_timeout_s": 12.5}).faults
    assert faults.pause == ("docker", "pause", "t")
    assert faults.command_timeout_s == 5.0
    assert faults.recover_timeout_s == 12.5


@pytest.mark.parametrize(("faults", "expected"), [
    ({"kill": ["k"]}, "[faults] kill = ['k'] needs restart too"),
    ({"restart": ["r"]}, "[faults] restart = ['r'] needs kill too"),
    ({"pause": ["p"]}, "needs resume too"),
    ({"resume": ["r"]}, "needs pause too"),
])
def test_a_command_without_its_pair_is_refused(faults: dict[str, Any], expected: str) -> None:
    assert expected in _error(faults)


def test_a_command_given_as_one_string_is_refused_as_no_shell_is_used() -> None:
    message = _error({**_KILL, "kill": "kubectl delete pod tokens-0"})
    assert "an argv run without a shell" in message
    assert '["sh", "-c", "..."]' in message


@pytest.mark.parametrize("argv", [[], [""], ["kill", 3], {"a": "b"}])
def test_a_command_that_is_not_a_list_of_strings_is_refused(argv: Any) -> None:
    assert "must be a non-empty list of non-empty strings" in _error({**_KILL, "kill": argv})


def test_timeouts_without_the_commands_they_apply_to_are_refused() -> None:
    assert "[faults] command_timeout_s = 5 applies to the commands, and there are none" \
        in _error({"command_timeout_s": 5})
    assert "is the wait for health after restart or resume, and there is neither" \
        in _error({"recover_timeout_s": 5})


@pytest.mark.parametrize("value", [0, -1, 601, True, "60"])
def test_a_timeout_must_be_positive_and_bounded(value: Any) -> None:
    assert "must be a number of seconds above 0 and at most 600" \
        in _error({**_KILL, "command_timeout_s": value})
    assert "must be a number of seconds above 0 and at most 600" \
        in _error({**_KILL, "recover_timeout_s": value})


def test_restart_without_a_health_path_is_refused_naming_it() -> None:
    message = _error(dict(_KILL), health_path=None)
    assert "[target] has no health_path" in message
    assert 'add health_path = "/healthz"' in message


def test_an_unknown_key_in_faults_lists_the_known_ones() -> None:
    message = _error({**_KILL, "stop": ["x"]})
    assert "[faults] stop = ['x'] is not a known key here" in message
    assert "command_timeout_s, kill, pause, recover_timeout_s, restart, resume, toxiproxy" \
        in message


def test_toxiproxy_loads_its_url_and_a_proxy_per_link() -> None:
    faults = _parse({"toxiproxy": {"url": "http://127.0.0.1:8474/", "service": "api",
                                   "database": "pg"}}).faults
    assert faults.toxiproxy == ToxiproxySpec(url="http://127.0.0.1:8474",
                                             proxies={"service": "api", "database": "pg"})
    assert faults.commands == {}


def test_toxiproxy_url_env_overrides_the_url_written() -> None:
    toxiproxy = {"url": "http://127.0.0.1:8474", "url_env": "TOXI", "webhooks": "hooks"}
    spec = _parse({"toxiproxy": toxiproxy}, environ={"TOXI": "http://127.0.0.1:9999"}).faults
    assert spec.toxiproxy is not None
    assert spec.toxiproxy.url == "http://127.0.0.1:9999"
    assert _parse({"toxiproxy": toxiproxy}).faults.toxiproxy == ToxiproxySpec(
        url="http://127.0.0.1:8474", proxies={"webhooks": "hooks"})


@pytest.mark.parametrize(("toxiproxy", "expected"), [
    ({"service": "api"}, "[faults.toxiproxy] url is missing"),
    ({"url_env": "TOXI", "service": "api"}, "reads the environment variable TOXI, which is "
                                            "not set"),
    ({"url": "http://127.0.0.1:8474"}, "name the Toxiproxy proxy on at least one link"),
    ({"url": "ftp://127.0.0.1:8474", "service": "api"}, "ftp://127.0.0.1:8474"),
    ({"url": "http://127.0.0.1:8474", "service": ""}, "[faults.toxiproxy] service = ''"),
    ({"url": "http://127.0.0.1:8474", "db": "pg"}, "[faults.toxiproxy] db = 'pg' is not a "
                                                   "known key here"),
])
def test_a_bad_toxiproxy_table_is_refused(toxiproxy: dict[str, Any], expected: str) -> None:
    assert expected in _error({"toxiproxy": toxiproxy})


def test_the_readme_example_of_faults_loads() -> None:
    chapter = render_chapter()
    example = chapter.split("### Faults by your own commands")[1].split("```toml")[1]
    data = tomllib.loads(example.split("```")[0])
    profile = _parse(data["faults"])
    assert set(profile.faults.commands) == {"kill", "restart", "pause", "resume"}
    assert profile.faults.recover_timeout_s == 120
