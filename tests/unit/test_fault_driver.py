"""The fault driver lands a fault after a count of ops, heals it, waits for recovery, and
records one window per fault; a failing nemesis is recorded, never raised."""

from __future__ import annotations

import asyncio

import pytest

from harness.errors import FaultError, TargetError
from harness.faults.driver import FaultDriver
from harness.faults.spec import Fault, FaultKind
from harness.model import FaultWindow
from harness.schedule import Inject

KILL = Fault(kind=FaultKind.KILL_SERVICE)


class Recorder:
    """A nemesis that writes down what it was asked, failing where told to."""

    def __init__(self, *, fail_inject: bool = False, fail_heal: bool = False) -> None:
        self.calls: list[str] = []
        self.fail_inject = fail_inject
        self.fail_heal = fail_heal

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({KILL.capability})

    def why_not(self, capability: str) -> str:
        return f"no {capability}"

    async def inject(self, fault: Fault) -> None:
        self.calls.append(f"inject {fault.capability}")
        if self.fail_inject:
            raise FaultError("kill failed")

    async def heal(self, fault: Fault) -> None:
        self.calls.append(f"heal {fault.capability}")
        if self.fail_heal:
            raise FaultError("restart failed")

    async def heal_all(self) -> None:
        self.calls.append("heal_all")


class Clock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        self.ns += 1_000
        return self.ns


def _driver(nemesis: Recorder, windows: list[FaultWindow], *, healthy_after: int = 0,
            recovery_timeout_s: float = 5.0) -> FaultDriver:
    probes = {"count": 0}

    async def probe() -> None:
        probes["count"] += 1
        if probes["count"] <= healthy_after:
            raise TargetError("not yet")

    return FaultDriver(nemesis, now_ns=Clock(), record=windows.append, probe=probe,
                       recovery_timeout_s=recovery_timeout_s)


def test_a_fault_lands_only_after_its_ops_and_is_healed_and_recorded() -> None:
    async def scenario() -> tuple[list[str], list[FaultWindow], list[str]]:
        nemesis, windows = Recorder(), []
        driver = _driver(nemesis, windows, healthy_after=2)
        driver.schedule(Inject(fault=KILL, name="f0", hold_ms=0, after_ops=3))
        seen = []
        for _ in range(3):
            await asyncio.sleep(0.01)
            seen.append(",".join(nemesis.calls))
            await driver.op_completed()
        await driver.heal()
        return seen, windows, nemesis.calls

    seen, windows, calls = asyncio.run(scenario())
    assert seen == ["", "", ""]  # nothing before the third op
    assert calls == ["inject kill_service", "heal kill_service"]
    (window,) = windows
    assert window.name == "f0" and window.error is None
    assert window.healed_ns is not None and window.recovered_ns is not None
    assert window.started_ns < window.healed_ns < window.recovered_ns


class SlowRecorder(Recorder):
    """A nemesis whose injection takes a while, as a restart of PostgreSQL does."""

    async def inject(self, fault: Fault) -> None:
        await asyncio.sleep(0.05)
        await super().inject(fault)


def test_the_op_that_reaches_the_count_waits_until_the_fault_is_in_force() -> None:
    async def scenario() -> list[str]:
        nemesis, windows = SlowRecorder(), []
        driver = _driver(nemesis, windows)
        driver.schedule(Inject(fault=KILL, name="f0", hold_ms=200, after_ops=2))
        await driver.op_completed()
        assert nemesis.calls == []  # below the count, an op goes on at once
        await driver.op_completed()  # reaches it: returns once the fault is in force
        seen = list(nemesis.calls)
        await driver.op_completed()  # in force: an op goes on at once again
        await driver.heal()
        return seen

    assert asyncio.run(scenario()) == ["inject kill_service"]


def test_ops_are_not_held_for_a_fault_that_waits_for_acknowledgements() -> None:
    async def scenario() -> list[str]:
        nemesis, windows = SlowRecorder(), []
        driver = _driver(nemesis, windows)
        driver.schedule(Inject(fault=KILL, name="f0", hold_ms=0, after_ops=0, after_acks=1))
        await asyncio.wait_for(driver.op_completed(), 1.0)
        seen = list(nemesis.calls)
        await driver.abort()
        return seen

    assert asyncio.run(scenario()) == []


def test_heal_releases_a_fault_still_waiting_for_ops() -> None:
    async def scenario() -> list[str]:
        nemesis, windows = Recorder(), []
        driver = _driver(nemesis, windows)
        driver.schedule(Inject(fault=KILL, name="f0", hold_ms=0, after_ops=1000))
        await driver.heal()
        assert len(windows) == 1 and driver.pending_count == 0
        return nemesis.calls

    assert asyncio.run(scenario()) == ["inject kill_service", "heal kill_service"]


@pytest.mark.parametrize(("nemesis", "error"), [
    (Recorder(fail_inject=True), "could not inject: kill failed"),
    (Recorder(fail_heal=True), "could not heal: restart failed"),
])
def test_a_failing_nemesis_is_recorded_in_the_window_never_raised(
        nemesis: Recorder, error: str) -> None:
    async def scenario() -> list[FaultWindow]:
        windows: list[FaultWindow] = []
        driver = _driver(nemesis, windows)
        driver.schedule(Inject(fault=KILL, name="f0", hold_ms=0))
        await driver.heal()
        return windows

    (window,) = asyncio.run(scenario())
    assert window.error == error
    assert window.healed_ns is None and window.recovered_ns is None


def test_a_target_that_never_answers_again_is_recorded_unrecovered() -> None:
    async def scenario() -> list[FaultWindow]:
        windows: list[FaultWindow] = []
        driver = _driver(Recorder(), windows, healthy_after=10**9, recovery_timeout_s=0.2)
        driver.schedule(Inject(fault=KILL, name="f0", hold_ms=0))
        await driver.heal()
        return windows

    (window,) = asyncio.run(scenario())
    assert window.error is None and window.healed_ns is not None
    assert window.recovered_ns is None


def test_abort_mid_hold_heals_what_is_in_force() -> None:
    async def scenario() -> list[str]:
        nemesis, windows = Recorder(), []
        driver = _driver(nemesis, windows)
        driver.schedule(Inject(fault=KILL, name="f0", hold_ms=60_000))
        await asyncio.sleep(0.05)
        await driver.abort()
        return nemesis.calls

    assert asyncio.run(scenario()) == ["inject kill_service", "heal kill_service", "heal_all"]


def test_once_the_target_never_recovered_later_faults_are_skipped() -> None:
    async def scenario() -> tuple[bool, list[FaultWindow], list[str]]:
        nemesis, windows = Recorder(), []
        driver = _driver(nemesis, windows, healthy_after=10**9, recovery_timeout_s=0.1)
        assert driver.schedule(Inject(fault=KILL, name="f0", hold_ms=0))
        await driver.heal()
        assert driver.unrecovered == "f0"
        later = driver.schedule(Inject(fault=KILL, name="f1", hold_ms=0))
        await driver.heal()
        return later, windows, nemesis.calls

    later, windows, calls = asyncio.run(scenario())
    assert later is False
    assert [w.name for w in windows] == ["f0"]
    assert calls == ["inject kill_service", "heal kill_service"]
