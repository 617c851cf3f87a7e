"""The nemesis: what carries faults out on a target, as Jepsen's nemesis does.

The runner never knows how a fault is made. It asks a ``Nemesis`` which faults it can do
(``capabilities``, the ``Fault.capability`` strings; anything else is "not run for this
target", with ``why_not`` as the reason), then ``inject``s and ``heal``s on the scenario's
schedule. Implementations: the local stack's (process signals, PostgreSQL, our fault
proxy), the profile's ``[faults]`` commands for a target we do not manage, and a real
Toxiproxy's HTTP API for links; ``CombinedNemesis`` joins them. A nemesis never judges:
whether the target survived is for the checkers.

A part of a ``CombinedNemesis`` may say which capabilities its ``why_not`` is about with a
``domain`` attribute (a frozenset of capability strings): the process nemeses answer for
process kinds, a link nemesis for links. A part without one answers for every capability.
"""

from __future__ import annotations

from typing import Protocol

from harness.errors import FaultError
from harness.faults.spec import ALL_CAPABILITIES, Fault

__all__ = ["CombinedNemesis", "Nemesis", "NoNemesis"]


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


class CombinedNemesis:
    """Several nemeses as one: a fault goes to the first part that can inject it.

    ``capabilities`` is the union of the parts'. ``why_not`` is the reason of the first
    part whose ``domain`` holds the capability (the first part's when none does), so a
    missing ``kill_service`` is explained by the process nemesis, not by a link nemesis.
    ``heal_all`` heals every part, each even when an earlier one fails, then raises the
    failures together as one ``FaultError``.
    """

    def __init__(self, *parts: Nemesis) -> None:
        assert parts, "combine at least one nemesis"
        self._parts = parts

    @property
    def parts(self) -> tuple[Nemesis, ...]:
        return self._parts

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset().union(*(part.capabilities for part in self._parts))

    def why_not(self, capability: str) -> str:
        for part in self._parts:
            if capability in getattr(part, "domain", ALL_CAPABILITIES):
                return part.why_not(capability)
        return self._parts[0].why_not(capability)

    async def inject(self, fault: Fault) -> None:
        await self._part_for(fault).inject(fault)

    async def heal(self, fault: Fault) -> None:
        await self._part_for(fault).heal(fault)

    async def heal_all(self) -> None:
        failures: list[str] = []
        for part in self._parts:
            try:
                await part.heal_all()
            except FaultError as exc:
                failures.append(str(exc))
        if failures:
            raise FaultError("; ".join(failures))

    def _part_for(self, fault: Fault) -> Nemesis:
        # The same part for inject and heal: the first with the capability, in order.
        for part in self._parts:
            if fault.capability in part.capabilities:
                return part
        raise AssertionError(f"no part can inject {fault.capability}; check capabilities "
                             "first")
