"""The ``Flaw`` record: one bug seen in real token systems, as a replacement of one operation.

Every flaw module under this package builds one ``FLAW`` with it; the package's
``__init__`` collects them into ``FLAWS``. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Flaw"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Flaw:
    """One bug seen in real token systems, as a replacement of one operation."""

    name: str  # snake_case, the module's name, as on the command line: "tip_lost_update"
    operation: str  # the key in service.OPERATIONS it replaces
    replacement: Callable[..., Any]
    description: str  # one sentence: what goes wrong, and which checker sees it
    caught_by: tuple[str, ...]  # checkers (harness.checkers.CHECKERS names) that must flag it
    # Only a fault reveals some bugs (a crash between answer and commit): the fault
    # scenarios that catch this one; every other scenario must pass it clean (it changes
    # nothing else). Empty: a scenario without a fault catches it.
    scenarios: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        assert self.name.isidentifier(), self.name
        assert self.name == self.name.lower(), self.name
        assert self.operation, self.name
        assert self.description and "\n" not in self.description, self.name
        assert len(set(self.scenarios)) == len(self.scenarios), self.name
