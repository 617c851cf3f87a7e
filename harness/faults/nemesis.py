"""The nemesis: what carries faults out on a target, as Jepsen's nemesis does.

The runner never knows how a fault is made. It asks a ``Nemesis`` which faults it can do
(``capabilities``, the ``Fault.capability`` strings; anything else is "not run for this
target", with ``why_not`` as the reason), then ``inject``s and ``heal``s on the scenario's
schedule. Implementations: the local stack's (process signals, PostgreSQL, our fault
proxy), the profile's ``[faults]`` commands for a target we do not manage, and a real
Toxiproxy's HTTP API for links. A nemesis never judges: whether the target survived is
for the checkers.
"""

from __future__ import annotations

from typing import Protocol

from harness.faults.spec import Fault

__all__ = ["Nemesis", "NoNemesis"]


class Nemesis(Protocol):
    """Injects and heals faults on one target."""

    @property
    def capabilities(self) -> frozenset[str]:
        """The ``Fault.capability`` strings this nemesis can inject."""
        ...

    def why_not(self, capability: str) -> str:
        """Why a capability is missing, in the user's terms (which profile key or flag)."""
        ...

    async def inject(self, fault: Fault) -> None:
        """Start the fault; return once it is in force. Raises ``FaultError``."""
        ...

    async def heal(self, fault: Fault) -> None:
        """End the fault; return once healed (a killed service is started again and
        answers). Raises ``FaultError``."""
        ...

    async def heal_all(self) -> None:
        """End every fault still in force, best effort; used when a run stops early."""
        ...


class NoNemesis:
    """A target with no way to inject faults: every fault is not run."""

    def __init__(self, reason: str) -> None:
        self._reason = reason

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset()

    def why_not(self, capability: str) -> str:
        del capability
        return self._reason

    async def inject(self, fault: Fault) -> None:
        raise AssertionError(f"no nemesis can inject {fault.capability}")

    async def heal(self, fault: Fault) -> None:
        raise AssertionError(f"no nemesis can heal {fault.capability}")

    async def heal_all(self) -> None:
        return None
