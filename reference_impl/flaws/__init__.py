"""The bug zoo: named replacements of one operation each, installed by name at start-up.

A flaw is a buggy function with the same signature as the correct operation it replaces
(``service.OPERATIONS[flaw.operation]``); the correct code never branches on flaws. Each
flaw module under this package defines one replacement, whose docstring's first line
names the real bug, and registers a ``Flaw`` in ``FLAWS``. ``caught_by`` lists the
checkers (``harness.checkers.CHECKERS`` names) that must catch it.

``install_flaws`` resolves names from ``TOKENCHAOS_FLAWS``; an unknown name, or two flaws
replacing one operation, stops the service with a message listing the known flaws.

For whoever writes a flaw: a replacement may reuse ``ledger``, ``idempotency`` and
``db`` helpers, but remember what the schema itself still enforces, whatever the Python
does: ``balance >= 0``, ``debt >= 0``, never both a balance and a debt, ledger
transactions that sum to zero (checked at COMMIT), and append-only journals. A flaw that
must show drift therefore changes ``accounts.balance`` without writing ledger entries; one
that writes unbalanced entries only produces 500s. Leave ``retry_transient`` off a flaw
that must deadlock, or the service quietly recovers from its own bug.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reference_impl.errors import ConfigError

__all__ = ["FLAWS", "Flaw", "install_flaws"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Flaw:
    """One bug seen in real token systems, as a replacement of one operation."""

    name: str  # kebab- or snake-case, as on the command line: "tip_lost_update"
    operation: str  # the key in service.OPERATIONS it replaces
    replacement: Callable[..., Any]
    description: str  # one sentence: what goes wrong, as a QA engineer would say it
    caught_by: tuple[str, ...]  # checkers that must flag it


FLAWS: dict[str, Flaw] = {}


def install_flaws(operations: Mapping[str, Callable[..., Any]],
                  names: Iterable[str]) -> dict[str, Callable[..., Any]]:
    """A copy of ``operations`` with each named flaw's replacement installed.

    Raises:
        ConfigError: a name is not in ``FLAWS``, names an operation that does not exist,
        or two flaws replace the same operation.
    """
    installed = dict(operations)
    replaced_by: dict[str, str] = {}
    for name in names:
        flaw = FLAWS.get(name)
        if flaw is None:
            known = ", ".join(sorted(FLAWS)) or "(none registered yet)"
            raise ConfigError(f"unknown flaw {name!r} in TOKENCHAOS_FLAWS; known flaws: {known}")
        if flaw.operation not in installed:
            raise ConfigError(f"flaw {name!r} replaces {flaw.operation!r}, which is not an "
                              "operation of this service")
        if flaw.operation in replaced_by:
            raise ConfigError(f"flaws {replaced_by[flaw.operation]!r} and {name!r} both replace "
                              f"{flaw.operation!r}; install one of them")
        replaced_by[flaw.operation] = name
        installed[flaw.operation] = flaw.replacement
    return installed
