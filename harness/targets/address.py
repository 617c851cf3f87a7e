"""Where a run will send traffic: URLs validated up front, and the opt-in for remote hosts.

Every address a run connects to (the target's base URL, the provider simulator's URL, the
SQL observer's database) passes through here before any socket is opened. A URL must have
scheme http or https (``postgresql``/``postgres`` for a database), a host, and a port from
1 to 65535; anything else is a ``UsageError`` naming the flag or profile key it came from.

Loopback needs nothing: ``localhost``, 127.0.0.0/8, ``::1`` (and a database over a Unix
socket). Any other host carries load to another machine, so it must be opted into, in the
profile (``[target] environment = "staging"``) or on the command line (``--allow-remote
HOST``, naming that host, so that a typo in the URL is not opted in by the same flag).
A host name is judged as written, never resolved: ``db.internal`` is remote even if it
resolves to 127.0.0.1. A profile that says ``environment = "production"`` is refused:
a run creates users, buys tokens and forges webhooks, which a production deployment must
never receive. This module is pure: no DNS, no sockets, no clock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from harness.errors import UsageError

__all__ = [
    "ENVIRONMENTS",
    "Address",
    "Environment",
    "check_remote_allowed",
    "database_hosts",
    "http_address",
    "is_loopback",
]

_HTTP_SCHEMES = ("http", "https")
_DATABASE_SCHEMES = ("postgresql", "postgres")
_PORT_MIN = 1
_PORT_MAX = 65535


class Environment(StrEnum):
    """What a profile says its deployment is (``[target] environment``)."""

    LOCAL = "local"  # on this machine: its addresses must be loopback
    STAGING = "staging"  # another machine, meant for tests: remote addresses are opted in
    PRODUCTION = "production"  # refused: the harness never loads production


ENVIRONMENTS = tuple(e.value for e in Environment)


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    """One validated URL: what it is for, where it came from, and its host."""

    role: str  # "target", "provider", "database"
    origin: str  # the flag or profile key that gave it, for messages: "--target-url"
    url: str
    host: str  # without brackets; "" for a database over a Unix socket

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def http_address(url: str, *, role: str, origin: str) -> Address:
    """Validate an http(s) URL: scheme, host, and a port from 1 to 65535 when one is given.

    Raises:
        UsageError: naming ``origin``, the value, and what to write instead.
    """
    parts = urlsplit(url)
    if parts.scheme not in _HTTP_SCHEMES:
        raise UsageError(f"{origin} {url!r}: the scheme must be http or https, "
                         "e.g. http://127.0.0.1:8000")
    host = parts.hostname or ""
    if not host:
        raise UsageError(f"{origin} {url!r}: has no host; write e.g. http://127.0.0.1:8000")
    _check_port(url, origin=origin)
    return Address(role=role, origin=origin, url=url, host=host)


def database_hosts(url: str, *, origin: str) -> tuple[str, ...]:
    """The hosts a PostgreSQL connection string names ("" for a Unix socket).

    Takes the URL form (``postgresql://user@host:port/db``, several ``host:port`` pairs
    separated by commas allowed) or the keyword form (``host=... port=... dbname=...``).

    Raises:
        UsageError: a scheme other than postgresql, or a port outside 1 to 65535.
    """
    if "://" not in url:
        return _keyword_hosts(url, origin=origin)
    scheme, _, rest = url.partition("://")
    if scheme not in _DATABASE_SCHEMES:
        raise UsageError(f"{origin}: the scheme {scheme!r} is not PostgreSQL's; write "
                         "postgresql://user:password@host:5432/dbname")
    netloc = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    hosts = []
    for item in netloc.split(",") if netloc else [""]:
        hosts.append(_host_of(item))
        _check_port(f"postgresql://{item}", origin=origin)
    query = rest.partition("?")[2]
    for pair in query.split("&") if query else []:
        key, _, value = pair.partition("=")
        if key in ("host", "hostaddr"):
            hosts.extend(value.split(","))
    return tuple(hosts)


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8, ``::1``, or a Unix socket path (``""`` or ``/...``)."""
    if host == "" or host.startswith("/"):
        return True
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False  # a name: judged as written, never resolved
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def check_remote_allowed(addresses: Sequence[Address], *, environment: Environment | None,
                         profile_source: str, allowed_hosts: Collection[str]) -> None:
    """Refuse, before any connection, an address the user did not opt into.

    Args:
        addresses: every address the run will connect to.
        environment: the profile's ``[target] environment``, None when it says none.
        profile_source: the profile's file, for messages.
        allowed_hosts: the hosts given with ``--allow-remote``.

    Raises:
        UsageError: a production profile; a ``local`` profile with a remote address; a
            remote address neither the profile nor ``--allow-remote`` opted into; an
            ``--allow-remote`` host that no address of the run uses (a typo on one side).
    """
    if environment is Environment.PRODUCTION:
        raise UsageError(f"profile {profile_source} says [target] environment = "
                         "\"production\": tokenchaos never loads production (it creates "
                         "users, buys tokens and forges webhooks); point it at a staging "
                         'deployment with environment = "staging"')
    allowed = {host.strip("[]").lower() for host in allowed_hosts}
    used = {address.host.lower() for address in addresses if not address.loopback}
    for host in sorted(allowed - used):
        loads = ", ".join(sorted({a.host or "a Unix socket" for a in addresses})) or "nothing"
        raise UsageError(f"--allow-remote {host}: no address of this run is on that host "
                         f"(it connects to {loads}); drop the flag, or fix the URL it was "
                         "meant for")
    for address in addresses:
        if address.loopback or address.host.lower() in allowed:
            continue
        if environment is Environment.LOCAL:
            raise UsageError(f"{address.origin} names {address.host}, which is not this "
                             f"machine, but profile {profile_source} says [target] "
                             'environment = "local"; fix the address, or set environment = '
                             '"staging" if that deployment is meant for tests')
        if environment is Environment.STAGING:
            continue
        raise UsageError(
            f"{address.origin} names {address.host}, which is not this machine; tokenchaos "
            f"sends load only to loopback unless told otherwise. If {address.host} is a "
            f"test deployment, add --allow-remote {address.host}, or set [target] "
            f'environment = "staging" in its profile (now {profile_source}; for a bundled '
            "profile, in a copy of it given as --target FILE)")


def _check_port(url: str, *, origin: str) -> None:
    try:
        port = urlsplit(url).port
    except ValueError:
        port = -1  # urlsplit refuses ports past 65535 and text ports
    if port is not None and not _PORT_MIN <= port <= _PORT_MAX:
        raise UsageError(f"{origin} {url!r}: the port must be a number from {_PORT_MIN} "
                         f"to {_PORT_MAX}")


def _host_of(netloc_item: str) -> str:
    if netloc_item.startswith("["):
        return netloc_item[1:].split("]", 1)[0]
    return netloc_item.rsplit(":", 1)[0] if netloc_item.count(":") == 1 else netloc_item


def _keyword_hosts(dsn: str, *, origin: str) -> tuple[str, ...]:
    hosts: list[str] = []
    for word in dsn.split():
        key, _, value = word.partition("=")
        if key in ("host", "hostaddr"):
            hosts.extend(value.strip("'").split(","))
        elif key == "port":
            for port in value.strip("'").split(","):
                if not (port.isdigit() and _PORT_MIN <= int(port) <= _PORT_MAX):
                    raise UsageError(f"{origin}: port={port!r} must be a number from "
                                     f"{_PORT_MIN} to {_PORT_MAX}")
    return tuple(hosts) or ("",)
