"""The fault driver: runs a scenario's ``Inject`` steps beside its ops, as Jepsen's nemesis
process runs beside the clients.

Each ``Inject`` becomes one task: wait until ``after_ops`` more ops have completed
(counted by the runner through ``op_completed``; a ``Heal`` step, or the end of the
scenario, releases a fault still waiting), inject, hold, heal, then poll the target's
health until it answers again (bounded by ``recovery_timeout_s``). What happened is one
``FaultWindow``, handed to ``record`` when the fault's life ends. Triggering on a count of
ops, never on a clock, puts a fault among the same ops on a busy machine as on an idle one;
and from the op that reaches the count until the fault is in force, ``op_completed`` holds
every runner process that completes an op, so no op is sent while a fault is landing and
the ops after the count meet the fault however fast the target answers them.

A fault that cannot be injected or healed (``FaultError``) ends its window with the error:
the checkers treat it as not judged, never as the target's failure. Once the target has
not recovered from a fault, the scenario's later faults are skipped (``schedule`` says
so): faulting a target that is already down tells nothing more, and each would wait out
the recovery bound again. On any exit, every fault still in force is healed
(``Nemesis.heal_all``). The driver judges nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from harness.errors import FaultError, TargetError
from harness.faults.nemesis import Nemesis
from harness.model import FaultWindow
from harness.schedule import Inject

__all__ = ["FAULTS_PER_SCENARIO_MAX", "FaultDriver"]

FAULTS_PER_SCENARIO_MAX = 1_000
_RECOVERY_POLL_S = 0.05
_ACKS_POLL_S = 1.0  # one long poll of the provider; a heal is noticed within it
_LANDING_WAIT_S_MAX = 30.0  # ops held for a landing fault; past it they go on regardless


class FaultDriver:
    """Schedules, injects, heals and records the faults of one scenario.

    Args:
        nemesis: carries the faults out.
        now_ns: the history's clock (ns from the scenario's start).
        record: told each fault's window once its life has ended.
        probe: raises ``TargetError`` until the target answers its health check.
        recovery_timeout_s: how long after a heal the target may take to answer again.
        acknowledged: the provider's count of acknowledged deliveries, waiting (at most
            ``timeout_s``) until it is above ``above``; None: no provider, and a fault's
            ``after_acks`` is not waited for.
    """

    def __init__(self, nemesis: Nemesis, *, now_ns: Callable[[], int],
                 record: Callable[[FaultWindow], None], probe: Callable[[], Awaitable[None]],
                 recovery_timeout_s: float,
                 acknowledged: Callable[[int, float], Awaitable[int]] | None = None) -> None:
        assert recovery_timeout_s > 0, recovery_timeout_s
        self._nemesis = nemesis
        self._now_ns = now_ns
        self._record = record
        self._probe = probe
        self._recovery_timeout_s = recovery_timeout_s
        self._acknowledged = acknowledged
        self._tasks: list[asyncio.Task[None]] = []
        self._names: set[str] = set()
        self._completed_count = 0
        self._completed = asyncio.Condition()
        # Faults that land on a count of ops, by name, until they are in force: the count.
        self._triggers: dict[str, int] = {}
        self._released = asyncio.Event()
        self._wall_offsets: dict[str, int] = {}
        self._unrecovered: str | None = None

    @property
    def pending_count(self) -> int:
        """Faults scheduled whose life has not ended yet."""
        return sum(1 for task in self._tasks if not task.done())

    @property
    def unrecovered(self) -> str | None:
        """The name of a fault the target never recovered from, if one."""
        return self._unrecovered

    def schedule(self, step: Inject) -> bool:
        """Start the life of one fault in the background; False: skipped, because the
        target never recovered from an earlier one (``unrecovered``)."""
        assert step.name not in self._names, f"fault name {step.name!r} repeats"
        if self._unrecovered is not None:
            return False
        assert len(self._names) < FAULTS_PER_SCENARIO_MAX, "too many faults in one scenario"
        self._names.add(step.name)
        self._released.clear()
        trigger_count = self._completed_count + step.after_ops
        if not step.after_acks:
            self._triggers[step.name] = trigger_count
        self._tasks.append(asyncio.create_task(self._life(step, trigger_count),
                                               name=f"fault {step.name}"))
        return True

    async def op_completed(self) -> None:
        """Count one completed op; a fault waiting for it may now land. While a fault whose
        count is reached is not in force yet, wait (at most ``_LANDING_WAIT_S_MAX``)."""
        async with self._completed:
            self._completed_count += 1
            self._completed.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._completed.wait_for(self._none_landing),
                                       _LANDING_WAIT_S_MAX)

    def _none_landing(self) -> bool:
        return self._released.is_set() or all(
            trigger > self._completed_count for trigger in self._triggers.values())

    async def heal(self) -> None:
        """Wait until every fault scheduled so far has healed and its target recovered.

        A fault still waiting for its ops lands now, so a ``Heal`` always follows a fault.
        Raises what a fault's task raised other than ``FaultError`` (a bug).
        """
        self._released.set()
        async with self._completed:
            self._completed.notify_all()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            await task

    async def abort(self) -> None:
        """Stop every fault's life and heal whatever is in force (the run is ending early)."""
        tasks, self._tasks = self._tasks, []
        self._released.set()  # no op waits for a fault that will not land
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(FaultError):
            await self._nemesis.heal_all()

    async def _life(self, step: Inject, trigger_count: int) -> None:
        acks_base = None
        if step.after_acks and self._acknowledged is not None:
            acks_base = await self._acknowledged(-1, 0.0)
        await self._wait_for_ops(trigger_count)
        if acks_base is not None:
            await self._wait_for_acks(acks_base + step.after_acks)
        fault = step.fault
        started_ns = self._now_ns()
        self._wall_offsets[step.name] = time.time_ns() - started_ns
        try:
            await self._nemesis.inject(fault)
        except FaultError as exc:
            self._finish(step, started_ns, None, None, f"could not inject: {exc}")
            return
        finally:  # in force, or failed: the ops held for it go on
            await self._landed(step.name)
        try:
            await asyncio.sleep(step.hold_ms / 1000)
        finally:
            # Cancelled mid-hold (the run is ending): heal before letting go.
            healed_ns: int | None = None
            error: str | None = None
            heal_started_ns = self._now_ns()
            try:
                await self._nemesis.heal(fault)
                # The heal's start: the time to recover then counts a restart's own time.
                healed_ns = heal_started_ns
            except FaultError as exc:
                error = f"could not heal: {exc}"
        if error is not None:
            self._finish(step, started_ns, None, None, error)
            return
        assert healed_ns is not None
        recovered_ns = await self._recovered_ns()
        if recovered_ns is None and self._unrecovered is None:
            self._unrecovered = step.name
        self._finish(step, started_ns, healed_ns, recovered_ns, None)

    async def _landed(self, name: str) -> None:
        async with self._completed:
            self._triggers.pop(name, None)
            self._completed.notify_all()

    async def _wait_for_ops(self, trigger_count: int) -> None:
        async with self._completed:
            await self._completed.wait_for(
                lambda: self._completed_count >= trigger_count or self._released.is_set())

    async def _wait_for_acks(self, wanted: int) -> None:
        """Until ``wanted`` deliveries were acknowledged, or a heal releases the fault."""
        assert self._acknowledged is not None
        while not self._released.is_set():
            if await self._acknowledged(wanted - 1, _ACKS_POLL_S) >= wanted:
                return

    async def _recovered_ns(self) -> int | None:
        """When the target first answered its health check after the heal; None if never."""
        deadline = time.monotonic() + self._recovery_timeout_s
        while True:
            try:
                await self._probe()
                return self._now_ns()
            except TargetError:
                if time.monotonic() >= deadline:
                    return None
            await asyncio.sleep(_RECOVERY_POLL_S)

    def _finish(self, step: Inject, started_ns: int, healed_ns: int | None,
                recovered_ns: int | None, error: str | None) -> None:
        fault = step.fault
        self._record(FaultWindow(
            name=step.name, kind=fault.kind.value,
            link=None if fault.link is None else fault.link.value,
            description=fault.describe(), attributes=dict(fault.attributes),
            started_ns=started_ns, healed_ns=healed_ns, recovered_ns=recovered_ns,
            error=error, wall_offset_ns=self._wall_offsets.get(step.name)))
