"""``CommandNemesis`` runs the profile's commands for real (small ``python -c`` ones), and
``CombinedNemesis`` routes each fault to the part that can do it."""

from __future__ import annotations

import asyncio
import copy
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from harness.errors import FaultError
from harness.faults.commands import CommandNemesis
from harness.faults.nemesis import CombinedNemesis, NoNemesis
from harness.faults.spec import Fault, FaultKind, Link
from harness.targets.profile import Profile, parse_profile

KILL = Fault(kind=FaultKind.KILL_SERVICE)
PAUSE = Fault(kind=FaultKind.PAUSE_SERVICE)
PY = sys.executable


def _write(name: str) -> list[str]:
    """A command that appends its name to the file ``log`` in its working directory."""
    return [PY, "-c", f"open('log', 'a').write('{name}\\n')"]


class Health:
    """A loopback HTTP server whose /healthz answers 503 ``failing`` times, then 200."""

    def __init__(self, failing: int) -> None:
        self.failing = failing
        self.requests = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        status = "503 Service Unavailable" if self.requests <= self.failing else "200 OK"
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                     .encode())
        await writer.drain()
        writer.close()


@pytest.fixture
async def health() -> AsyncIterator[Health]:
    state = Health(failing=2)
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    async with server:
        yield state


def _profile(health: Health, folder: Path, **faults: Any) -> Profile:
    data: dict[str, Any] = {
        "target": {"name": "cmd", "base_url": f"http://127.0.0.1:{health.port}",
                   "health_path": "/healthz"},
        "auth": {"header": "Authorization", "scheme": "Bearer"},
        "metadata": {"user_key": "user_id", "tokens_keys": ["tokens"]},
        "ops": {"tip": {"path": "/tips", "status_ok": [201]}},
        "provisioning": {"mode": "http", "path": "/users", "id": "id", "token": "token"},
        "faults": copy.deepcopy(faults),
    }
    return parse_profile(data, source="cmd.toml", folder=folder, environ={})


def _log(folder: Path) -> list[str]:
    path = folder / "log"
    return path.read_text().split() if path.exists() else []


async def test_kill_runs_kill_and_heal_runs_restart_then_waits_healthy(
        health: Health, tmp_path: Path) -> None:
    nemesis = CommandNemesis(_profile(health, tmp_path, kill=_write("kill"),
                                      restart=_write("restart")))
    assert nemesis.capabilities == frozenset({"kill_service"})
    await nemesis.inject(KILL)
    assert _log(tmp_path) == ["kill"]
    await nemesis.heal(KILL)
    assert _log(tmp_path) == ["kill", "restart"]
    assert health.requests == 3  # two 503s, then the 200 it waited for


async def test_pause_and_resume_make_pause_service_a_capability(
        health: Health, tmp_path: Path) -> None:
    nemesis = CommandNemesis(_profile(health, tmp_path, pause=_write("pause"),
                                      resume=_write("resume")))
    assert nemesis.capabilities == frozenset({"pause_service"})
    await nemesis.inject(PAUSE)
    await nemesis.heal(PAUSE)
    assert _log(tmp_path) == ["pause", "resume"]


async def test_without_commands_why_not_names_the_keys_to_add(
        health: Health, tmp_path: Path) -> None:
    nemesis = CommandNemesis(_profile(health, tmp_path))
    assert nemesis.capabilities == frozenset()
    assert nemesis.why_not("kill_service") == ("the profile names no command for it; add "
                                               "[faults] kill and restart in cmd.toml")
    assert "[faults] pause and resume in cmd.toml" in nemesis.why_not("pause_service")
    assert "[faults.toxiproxy] database" in nemesis.why_not("latency@database")
    assert "local stack" in nemesis.why_not("database_crash")


async def test_a_failing_command_raises_its_exit_code_and_stderr_tail(
        health: Health, tmp_path: Path) -> None:
    fail = [PY, "-c", "import sys; sys.stderr.write('x' * 5000 + 'pod not found'); "
                      "sys.exit(3)"]
    nemesis = CommandNemesis(_profile(health, tmp_path, kill=fail, restart=_write("r")))
    with pytest.raises(FaultError) as caught:
        await nemesis.inject(KILL)
    message = str(caught.value)
    assert "[faults] kill of cmd.toml" in message
    assert "failed with exit code 3" in message
    assert "pod not found" in message
    assert "x" * 2100 not in message  # only the tail is kept


async def test_false_fails_with_exit_code_1_and_no_stderr(health: Health,
                                                          tmp_path: Path) -> None:
    nemesis = CommandNemesis(_profile(health, tmp_path, kill=["false"], restart=["true"]))
    with pytest.raises(FaultError, match=r"exit code 1; stderr ends: \(nothing\)"):
        await nemesis.inject(KILL)


async def test_a_command_that_cannot_start_raises(health: Health, tmp_path: Path) -> None:
    nemesis = CommandNemesis(_profile(health, tmp_path, kill=["/nonexistent/kill"],
                                      restart=["true"]))
    with pytest.raises(FaultError, match="could not be started"):
        await nemesis.inject(KILL)


async def test_a_command_past_its_timeout_is_killed_with_its_children(
        health: Health, tmp_path: Path) -> None:
    # The command starts a grandchild that would sleep a long time, then sleeps itself.
    script = ("import subprocess, sys, time; "
              "p = subprocess.Popen(['sleep', '300']); open('pid', 'w').write(str(p.pid)); "
              "sys.stderr.write('waiting'); sys.stderr.flush(); time.sleep(300)")
    nemesis = CommandNemesis(_profile(health, tmp_path, kill=[PY, "-c", script],
                                      restart=["true"], command_timeout_s=1))
    with pytest.raises(FaultError) as caught:
        await nemesis.inject(KILL)
    assert "did not finish within 1 s and was killed" in str(caught.value)
    assert "'waiting'" in str(caught.value)
    grandchild = int((tmp_path / "pid").read_text())
    for _ in range(500):  # reaped by init soon after SIGKILL; bounded
        if not _alive(grandchild):
            break
        await asyncio.sleep(0.01)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


async def test_heal_raises_when_health_never_answers_2xx(health: Health,
                                                          tmp_path: Path) -> None:
    health.failing = 10**6
    nemesis = CommandNemesis(_profile(health, tmp_path, pause=["true"], resume=["true"],
                                      recover_timeout_s=0.5))
    await nemesis.inject(PAUSE)
    with pytest.raises(FaultError) as caught:
        await nemesis.heal(PAUSE)
    assert "after [faults] resume, GET http://127.0.0.1:" in str(caught.value)
    assert "did not answer 2xx within 0.5 s (recover_timeout_s); last: 503" \
        in str(caught.value)


async def test_heal_all_resumes_and_restarts_what_is_in_force_once(
        health: Health, tmp_path: Path) -> None:
    health.failing = 0
    nemesis = CommandNemesis(_profile(
        health, tmp_path, kill=_write("kill"), restart=_write("restart"),
        pause=_write("pause"), resume=_write("resume")))
    await nemesis.heal_all()
    assert _log(tmp_path) == []
    await nemesis.inject(KILL)
    await nemesis.inject(PAUSE)
    await nemesis.heal_all()
    assert _log(tmp_path) == ["kill", "pause", "resume", "restart"]
    await nemesis.heal_all()
    assert _log(tmp_path) == ["kill", "pause", "resume", "restart"]


class _Part:
    """A fake nemesis that records what it was asked."""

    def __init__(self, name: str, capabilities: set[str], domain: set[str] | None = None,
                 *, heal_all_fails: bool = False) -> None:
        self.name = name
        self.calls: list[str] = []
        self._capabilities = frozenset(capabilities)
        if domain is not None:
            self.domain = frozenset(domain)
        self._heal_all_fails = heal_all_fails

    @property
    def capabilities(self) -> frozenset[str]:
        return self._capabilities

    def why_not(self, capability: str) -> str:
        return f"{self.name} cannot {capability}"

    async def inject(self, fault: Fault) -> None:
        self.calls.append(f"inject {fault.capability}")

    async def heal(self, fault: Fault) -> None:
        self.calls.append(f"heal {fault.capability}")

    async def heal_all(self) -> None:
        self.calls.append("heal_all")
        if self._heal_all_fails:
            raise FaultError(f"{self.name} stuck")


async def test_combined_nemesis_routes_each_fault_to_the_part_that_can() -> None:
    process = _Part("process", {"kill_service"}, {"kill_service", "pause_service"})
    link = _Part("link", {"latency@database", "kill_service"}, {"latency@database"})
    combined = CombinedNemesis(process, link)
    assert combined.capabilities == frozenset({"kill_service", "latency@database"})
    latency = Fault(kind=FaultKind.LATENCY, link=Link.DATABASE, attributes={"latency": 5})
    await combined.inject(KILL)
    await combined.inject(latency)
    await combined.heal(latency)
    await combined.heal(KILL)
    assert process.calls == ["inject kill_service", "heal kill_service"]
    assert link.calls == ["inject latency@database", "heal latency@database"]


def test_combined_why_not_comes_from_the_part_whose_domain_has_it() -> None:
    link = _Part("link", set(), {"latency@service"})
    process = _Part("process", set(), {"pause_service"})
    combined = CombinedNemesis(link, process)
    assert combined.why_not("pause_service") == "process cannot pause_service"
    assert combined.why_not("latency@service") == "link cannot latency@service"
    assert combined.why_not("down@webhooks") == "link cannot down@webhooks"
    assert CombinedNemesis(NoNemesis("no faults here"), process).why_not(
        "pause_service") == "no faults here"  # a part without a domain knows everything


async def test_combined_heal_all_heals_every_part_and_raises_the_failures() -> None:
    first = _Part("first", set(), heal_all_fails=True)
    second = _Part("second", set())
    with pytest.raises(FaultError, match="first stuck"):
        await CombinedNemesis(first, second).heal_all()
    assert first.calls == ["heal_all"]
    assert second.calls == ["heal_all"]
