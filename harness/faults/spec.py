"""What a fault is, as data: its kind, the link it acts on, and its attributes.

The vocabulary below the application is Toxiproxy's, so that a schedule written for our
own proxy drives a real Toxiproxy unchanged: on a *link* (a TCP path between two parts of
the system) a fault is one of ``latency`` (with ``jitter``), ``bandwidth``,
``slow_close``, ``timeout``, ``reset_peer``, ``limit_data``, or ``down`` (the link refuses
and drops every connection). Attributes keep Toxiproxy's names and units: ``latency`` and
``jitter`` in ms, ``rate`` in KB/s, ``delay`` and ``timeout`` in ms, ``bytes``.

The other faults act on processes: the service killed with SIGKILL (healed by starting it
again), paused with SIGSTOP (healed by SIGCONT, a stalled process holding its locks), its
database sessions terminated, and PostgreSQL restarted fast or crashed (immediate stop,
healed by starting it again, which runs crash recovery).

Nothing here does I/O; a ``Nemesis`` (``harness.faults.nemesis``) carries a ``Fault`` out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["ALL_CAPABILITIES", "ATTRIBUTES", "LINK_KINDS", "PROCESS_KINDS", "Fault",
           "FaultKind", "Link"]


class Link(StrEnum):
    """A TCP path a fault proxy sits on."""

    SERVICE = "service"  # harness -> service: the API calls
    WEBHOOKS = "webhooks"  # provider -> service: webhook deliveries
    DATABASE = "database"  # service -> PostgreSQL


class FaultKind(StrEnum):
    """What is done. Link kinds need a ``Link``; process kinds take none."""

    # On a link, in Toxiproxy's words.
    LATENCY = "latency"  # {latency, jitter} ms added to every chunk
    JITTER = "jitter"  # {jitter} ms: latency of 0 +- jitter
    BANDWIDTH = "bandwidth"  # {rate} KB/s
    SLOW_CLOSE = "slow_close"  # {delay} ms before a close is passed on
    TIMEOUT = "timeout"  # {timeout} ms: data is held, then the connection closed (0: never)
    RESET_PEER = "reset_peer"  # {timeout} ms: then the connection is reset (RST)
    LIMIT_DATA = "limit_data"  # {bytes}: the connection is closed after that many bytes
    DOWN = "down"  # the proxy is disabled: connections are refused and cut
    # On processes of the stack (or by the profile's [faults] commands).
    KILL_SERVICE = "kill_service"  # SIGKILL; heal: start it again and wait until healthy
    PAUSE_SERVICE = "pause_service"  # SIGSTOP; heal: SIGCONT
    TERMINATE_SESSIONS = "terminate_sessions"  # pg_terminate_backend of the service's sessions
    DATABASE_RESTART = "database_restart"  # pg_ctl restart -m fast
    DATABASE_CRASH = "database_crash"  # pg_ctl stop -m immediate; heal: start (crash recovery)


LINK_KINDS = frozenset({FaultKind.LATENCY, FaultKind.JITTER, FaultKind.BANDWIDTH,
                        FaultKind.SLOW_CLOSE, FaultKind.TIMEOUT, FaultKind.RESET_PEER,
                        FaultKind.LIMIT_DATA, FaultKind.DOWN})
PROCESS_KINDS = frozenset(FaultKind) - LINK_KINDS

# The attributes each kind takes, with Toxiproxy's names; every one is a non-negative int.
ATTRIBUTES: Mapping[FaultKind, frozenset[str]] = {
    FaultKind.LATENCY: frozenset({"latency", "jitter"}),
    FaultKind.JITTER: frozenset({"jitter"}),
    FaultKind.BANDWIDTH: frozenset({"rate"}),
    FaultKind.SLOW_CLOSE: frozenset({"delay"}),
    FaultKind.TIMEOUT: frozenset({"timeout"}),
    FaultKind.RESET_PEER: frozenset({"timeout"}),
    FaultKind.LIMIT_DATA: frozenset({"bytes"}),
    **{kind: frozenset() for kind in PROCESS_KINDS | {FaultKind.DOWN}},
}
ATTRIBUTE_VALUE_MAX = 10**9

# Every capability a nemesis may have: each process kind, and each link kind on each link.
ALL_CAPABILITIES = frozenset({kind.value for kind in PROCESS_KINDS}
                             | {f"{kind.value}@{link.value}" for kind in LINK_KINDS
                                for link in Link})


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One fault to inject: ``Fault(kind=FaultKind.LATENCY, link=Link.DATABASE,
    attributes={"latency": 200, "jitter": 50})``."""

    kind: FaultKind
    link: Link | None = None
    attributes: Mapping[str, int] = field(default_factory=dict)
    stream: str = "downstream"  # Toxiproxy's: "downstream" (to the client) or "upstream"

    def __post_init__(self) -> None:
        assert (self.link is not None) == (self.kind in LINK_KINDS), (self.kind, self.link)
        assert set(self.attributes) <= ATTRIBUTES[self.kind], (self.kind, self.attributes)
        assert all(0 <= v <= ATTRIBUTE_VALUE_MAX for v in self.attributes.values())
        assert self.stream in ("downstream", "upstream"), self.stream

    def __hash__(self) -> int:  # attributes is a mapping: hash what it holds
        return hash((self.kind, self.link, tuple(sorted(self.attributes.items())), self.stream))

    @property
    def capability(self) -> str:
        """What a target must be able to do for this fault: ``"kill_service"``,
        ``"latency@database"``. Attributes never change what is needed."""
        return self.kind.value if self.link is None else f"{self.kind.value}@{self.link.value}"

    def describe(self) -> str:
        """In words, for the console and the report: ``latency 200±50 ms on database``."""
        a = self.attributes
        words = {
            FaultKind.LATENCY: f"latency {a.get('latency', 0)}±{a.get('jitter', 0)} ms",
            FaultKind.JITTER: f"jitter ±{a.get('jitter', 0)} ms",
            FaultKind.BANDWIDTH: f"bandwidth {a.get('rate', 0)} KB/s",
            FaultKind.SLOW_CLOSE: f"slow close {a.get('delay', 0)} ms",
            FaultKind.TIMEOUT: f"timeout {a.get('timeout', 0)} ms",
            FaultKind.RESET_PEER: f"reset peer after {a.get('timeout', 0)} ms",
            FaultKind.LIMIT_DATA: f"limit data {a.get('bytes', 0)} bytes",
            FaultKind.DOWN: "link down",
        }.get(self.kind, self.kind.value.replace("_", " "))
        return words if self.link is None else f"{words} on {self.link.value}"

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind.value, "link": None if self.link is None else self.link.value,
                "attributes": dict(self.attributes), "stream": self.stream}
