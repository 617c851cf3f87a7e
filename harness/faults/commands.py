"""Faults by the profile's own commands, for a target the harness does not manage.

As Jepsen's nemesis does, the profile's ``[faults]`` table (``harness.targets.
fault_profile``) names the commands that kill, restart, pause and resume the service
(``kubectl delete pod ...``, ``docker pause ...``). ``CommandNemesis`` runs them:

- ``kill_service`` (with ``kill`` and ``restart``): inject runs ``kill``; heal runs
  ``restart``, then waits until ``[target] health_path`` answers 2xx.
- ``pause_service`` (with ``pause`` and ``resume``): inject runs ``pause``; heal runs
  ``resume``, then waits for the health check the same way.

A command is an argv list run without a shell, in the profile's folder, with the
harness's environment, its stdin closed, its stdout discarded and its stderr in a
temporary file. It runs in a process group of its own, killed whole when
``command_timeout_s`` passes. A command that exits non-zero or times out raises
``FaultError`` with its exit code and the last ``_STDERR_TAIL_BYTES`` of its stderr.
The health wait is bounded by ``recover_timeout_s``. Nothing here judges the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from typing import IO

import httpx

from harness.errors import FaultError
from harness.faults.spec import PROCESS_KINDS, Fault, FaultKind
from harness.targets.profile import Profile

__all__ = ["CommandNemesis"]

_STDERR_TAIL_BYTES = 2000
_KILL_WAIT_S = 5.0  # after SIGKILL to the group, for the command to be reaped
_HEALTH_POLL_S = 0.2
_HEALTH_REQUEST_TIMEOUT_S = 5.0

# Which commands each fault needs: (inject, heal).
_COMMANDS_BY_KIND: dict[FaultKind, tuple[str, str]] = {
    FaultKind.KILL_SERVICE: ("kill", "restart"),
    FaultKind.PAUSE_SERVICE: ("pause", "resume"),
}


class CommandNemesis:
    """Kills and pauses a target by the commands its profile names.

    Args:
        profile: the target's profile; its ``faults`` decide the capabilities.
        base_url: where the target answers, when the run overrides the profile's.
    """

    # The capabilities this nemesis answers ``why_not`` for (see ``CombinedNemesis``).
    domain = frozenset(kind.value for kind in PROCESS_KINDS)

    def __init__(self, profile: Profile, *, base_url: str | None = None) -> None:
        self._profile = profile
        self._spec = profile.faults
        self._base_url = (base_url or profile.base_url).rstrip("/")
        self._in_force: list[FaultKind] = []  # injected (or tried) and not yet healed

    @property
    def capabilities(self) -> frozenset[str]:
        commands = self._spec.commands
        return frozenset(kind.value for kind, names in _COMMANDS_BY_KIND.items()
                         if all(name in commands for name in names))

    def why_not(self, capability: str) -> str:
        source = self._profile.source
        for kind, (inject, heal) in _COMMANDS_BY_KIND.items():
            if capability == kind.value:
                return (f"the profile names no command for it; add [faults] {inject} and "
                        f"{heal} in {source}")
        if "@" in capability:
            link = capability.split("@", 1)[1]
            return (f"no fault proxy sits on the {link} link of this target; add "
                    f"[faults.toxiproxy] {link} = \"<proxy name>\" in {source}")
        return (f"{capability} needs the database managed by the harness (the local "
                "stack); this target's is not")

    async def inject(self, fault: Fault) -> None:
        assert fault.capability in self.capabilities, fault.capability
        inject, _ = _COMMANDS_BY_KIND[fault.kind]
        if fault.kind not in self._in_force:
            self._in_force.append(fault.kind)  # a kill that failed may still have killed
        await self._run(inject)

    async def heal(self, fault: Fault) -> None:
        assert fault.capability in self.capabilities, fault.capability
        await self._heal(fault.kind)

    async def heal_all(self) -> None:
        """Resume, then restart, whatever is still in force; all tried, failures raised."""
        failures: list[str] = []
        order = (FaultKind.PAUSE_SERVICE, FaultKind.KILL_SERVICE)
        for kind in [kind for kind in order if kind in self._in_force]:
            try:
                await self._heal(kind)
            except FaultError as exc:
                failures.append(str(exc))
        if failures:
            raise FaultError("; ".join(failures))

    async def _heal(self, kind: FaultKind) -> None:
        _, heal = _COMMANDS_BY_KIND[kind]
        await self._run(heal)
        await self._wait_healthy(after=heal)
        if kind in self._in_force:
            self._in_force.remove(kind)

    async def _run(self, name: str) -> None:
        argv = self._spec.commands[name]
        timeout_s = self._spec.command_timeout_s
        where = f"[faults] {name} of {self._profile.source} ({' '.join(argv)})"
        # stderr goes to a file, not a pipe: a service the command starts in the background
        # may inherit it, and must neither block us nor die of a closed pipe later.
        with tempfile.TemporaryFile() as stderr:
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
                    cwd=self._spec.workdir,
                    start_new_session=True)  # its own group: a timeout kills its children
            except OSError as exc:
                raise FaultError(f"{where} could not be started: {exc}") from exc
            try:
                code = await asyncio.wait_for(process.wait(), timeout_s)
            except TimeoutError:
                _kill_group(process.pid)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), _KILL_WAIT_S)
                raise FaultError(f"{where} did not finish within {timeout_s:g} s and was "
                                 f"killed; stderr ends: {_tail(stderr)}") from None
            if code != 0:
                raise FaultError(f"{where} failed with exit code {code}; stderr ends: "
                                 f"{_tail(stderr)}")

    async def _wait_healthy(self, *, after: str) -> None:
        health_path = self._profile.health_path
        assert health_path is not None, "the profile parser requires it with restart/resume"
        url = self._base_url + health_path
        timeout_s = self._spec.recover_timeout_s
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as client:
            while time.monotonic() < deadline:
                remaining_s = max(deadline - time.monotonic(), 0.1)
                try:
                    response = await client.get(
                        url, timeout=min(_HEALTH_REQUEST_TIMEOUT_S, remaining_s))
                    if 200 <= response.status_code < 300:
                        return
                    last = f"{response.status_code} {response.text[:200]!r}"
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(_HEALTH_POLL_S)
        raise FaultError(f"after [faults] {after}, GET {url} did not answer 2xx within "
                         f"{timeout_s:g} s (recover_timeout_s); last: {last}")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _tail(stderr: IO[bytes]) -> str:
    """The last ``_STDERR_TAIL_BYTES`` of what the command wrote to stderr, quoted."""
    size = stderr.seek(0, os.SEEK_END)
    stderr.seek(max(size - _STDERR_TAIL_BYTES, 0))
    text = stderr.read(_STDERR_TAIL_BYTES).decode("utf-8", errors="replace").strip()
    return repr(text) if text else "(nothing)"


assert set(_COMMANDS_BY_KIND) <= PROCESS_KINDS
