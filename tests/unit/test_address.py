"""Addresses: validated before any connection, loopback free, anything else opted into."""

from __future__ import annotations

import pytest

from harness.errors import UsageError
from harness.targets.address import (
    Address,
    Environment,
    check_remote_allowed,
    database_hosts,
    http_address,
    is_loopback,
)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.9.9", "::1", "localhost", "LOCALHOST.",
                                  "::ffff:127.0.0.1", "", "/var/run/postgresql"])
def test_loopback_hosts_need_nothing(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["10.9.9.9", "0.0.0.0", "::", "128.0.0.1", "db.internal",
                                  "localhost.example", "::ffff:10.0.0.1"])
def test_other_hosts_are_remote_judged_as_written(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize("url", ["http://127.0.0.1:65536", "http://127.0.0.1:0",
                                 "http://127.0.0.1:port", "https://[::1]:99999"])
def test_a_port_outside_1_to_65535_is_a_usage_error(url: str) -> None:
    with pytest.raises(UsageError, match=r"--target-url .* port must be a number from 1"):
        http_address(url, role="target", origin="--target-url")


def test_an_http_address_keeps_its_host() -> None:
    assert http_address("https://[::1]:8443/x", role="target", origin="-").host == "::1"


@pytest.mark.parametrize(("url", "hosts"), [
    ("postgresql://ro:p%40ss@10.0.0.5:5432/db", ("10.0.0.5",)),
    ("postgres://a@127.0.0.1,10.0.0.6:5433/db", ("127.0.0.1", "10.0.0.6")),
    ("postgresql:///db?host=/tmp", ("", "/tmp")),
    ("postgresql://[::1]:5432/db", ("::1",)),
    ("host=db.internal port=5432 dbname=x", ("db.internal",)),
    ("dbname=x", ("",)),
])
def test_database_hosts_reads_both_forms(url: str, hosts: tuple[str, ...]) -> None:
    assert database_hosts(url, origin="--database-url") == hosts


@pytest.mark.parametrize("url", ["mysql://h/db", "postgresql://h:70000/db", "host=h port=0"])
def test_a_bad_database_url_is_a_usage_error(url: str) -> None:
    with pytest.raises(UsageError, match="--database-url"):
        database_hosts(url, origin="--database-url")


def _remote(host: str = "10.9.9.9") -> Address:
    return Address(role="target", origin="--target-url", url=f"http://{host}:1", host=host)


def test_a_remote_address_is_refused_saying_how_to_opt_in() -> None:
    with pytest.raises(UsageError, match=r"add --allow-remote 10\.9\.9\.9, or set .*staging"):
        check_remote_allowed([_remote()], environment=None, profile_source="p.toml",
                             allowed_hosts=())


def test_the_flag_or_a_staging_profile_opts_in() -> None:
    check_remote_allowed([_remote()], environment=None, profile_source="p", allowed_hosts=[
        "10.9.9.9"])
    check_remote_allowed([_remote()], environment=Environment.STAGING, profile_source="p",
                         allowed_hosts=())


def test_a_local_profile_with_a_remote_address_is_a_contradiction() -> None:
    with pytest.raises(UsageError, match='environment = "local"'):
        check_remote_allowed([_remote()], environment=Environment.LOCAL,
                             profile_source="p", allowed_hosts=())


def test_production_is_refused_whatever_else_is_said() -> None:
    with pytest.raises(UsageError, match="never loads production"):
        check_remote_allowed([_remote()], environment=Environment.PRODUCTION,
                             profile_source="p", allowed_hosts=["10.9.9.9"])


def test_an_allowed_host_no_address_uses_is_a_typo() -> None:
    with pytest.raises(UsageError, match=r"--allow-remote 10\.9\.9\.8: no address"):
        check_remote_allowed([_remote()], environment=None, profile_source="p",
                             allowed_hosts=["10.9.9.8"])
