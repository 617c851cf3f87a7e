"""Process and database faults on the local stack: signals to the service, PostgreSQL stops.

``ProcessNemesis`` carries out the process kinds of ``harness.faults.spec`` on a running
``LocalStack``:

- ``kill_service``: SIGKILL, as a crash; heal starts it again on the same port and waits
  until ``/healthz`` answers 200 (the schedule's "healed" means "started and answers").
- ``pause_service``: SIGSTOP, a stalled process that keeps its sockets, its database
  connections and the row locks of its open transactions; heal sends SIGCONT.
- ``terminate_sessions``: ``pg_terminate_backend`` of every session of the service's role
  on its database, at once; heal has nothing to undo. On the embedded server it runs as
  the superuser; on a ``TOKENCHAOS_DATABASE_URL`` database it runs as the service's own
  role (from that URL), which PostgreSQL lets terminate its own sessions.
- ``database_restart``: a fast shutdown (SIGINT to the postmaster, as ``pg_ctl stop -m
  fast``: sessions are cut, a checkpoint is written) at inject, and a start at heal, so
  the hold is a real outage; ``pg_ctl restart`` would be a window of a few milliseconds.
- ``database_crash``: an immediate shutdown (SIGQUIT, as ``pg_ctl stop -m immediate``: no
  checkpoint) at inject; heal starts the server on the same data directory and port,
  which runs crash recovery from the write-ahead log, and waits until it accepts
  connections.

Database faults need the embedded server; with ``TOKENCHAOS_DATABASE_URL`` the harness
does not manage the database, and they are not among the capabilities. A database heal
returns once PostgreSQL answers, and does not wait for the service: whether the service
reconnects is for the checkers (and the schedule's wait for health) to find out.

Every wait is bounded (by ``LocalStack`` and ``EmbeddedPostgres``, and here). This module
never judges the target.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psycopg

from harness.errors import FaultError, StackError
from harness.faults.spec import PROCESS_KINDS, Fault, FaultKind
from harness.stack import LocalStack

__all__ = ["ProcessNemesis"]

_DATABASE_KINDS = frozenset({FaultKind.DATABASE_RESTART, FaultKind.DATABASE_CRASH})
_SIGNAL_STATE_TIMEOUT_S = 5.0  # a signal is delivered at once; the state shows it soon after
_SIGNAL_STATE_POLL_S = 0.01
_SQL_CONNECT_TIMEOUT_S = 5
_SQL_STATEMENT_TIMEOUT_MS = 5000
_EXTERNAL_DATABASE = ("the local stack's database is TOKENCHAOS_DATABASE_URL, which the "
                      "harness does not manage; unset it to run database faults on the "
                      "embedded PostgreSQL")

_TERMINATE_EMBEDDED = """
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
 WHERE usename = %(role)s AND datname = %(database)s AND pid <> pg_backend_pid()
"""
_TERMINATE_OWN = """
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
 WHERE usename = current_user AND datname = current_database() AND pid <> pg_backend_pid()
"""


class ProcessNemesis:
    """Kills, pauses and restarts the local stack's service and database.

    Args:
        stack: a started ``LocalStack``; its database decides the capabilities.
    """

    # The capabilities this nemesis answers ``why_not`` for (see ``CombinedNemesis``).
    domain = frozenset(kind.value for kind in PROCESS_KINDS)

    def __init__(self, stack: LocalStack) -> None:
        assert stack.info is not None, "start the stack first"
        self._stack = stack
        self.sessions_terminated_count = 0  # by the last terminate_sessions

    @property
    def capabilities(self) -> frozenset[str]:
        kinds = set(PROCESS_KINDS)
        if self._stack.postgres is None:
            kinds -= _DATABASE_KINDS
        return frozenset(kind.value for kind in kinds)

    def why_not(self, capability: str) -> str:
        if capability in {kind.value for kind in _DATABASE_KINDS}:
            return _EXTERNAL_DATABASE
        return (f"{capability} is a fault on a link, not on a process; the local stack "
                "injects it with its fault proxy")

    async def inject(self, fault: Fault) -> None:
        assert fault.capability in self.capabilities, fault.capability
        try:
            await self._inject(fault.kind)
        except (StackError, OSError) as exc:
            raise FaultError(f"could not inject {fault.describe()}: {exc}") from exc

    async def heal(self, fault: Fault) -> None:
        assert fault.capability in self.capabilities, fault.capability
        try:
            await self._heal(fault.kind)
        except (StackError, OSError) as exc:
            raise FaultError(f"could not heal {fault.describe()}: {exc}") from exc

    async def heal_all(self) -> None:
        """SIGCONT the service, start PostgreSQL if it is down, start the service if dead.

        Every step is tried even when one fails; then the failures are raised together. A
        service that runs is not waited on: whether it is healthy is for the checkers.
        """
        stack = self._stack
        failures: list[str] = []
        if stack.service_running:
            try:
                stack.resume_service()
            except (StackError, OSError) as exc:
                failures.append(f"SIGCONT to the service: {exc}")
        postgres = stack.postgres
        if postgres is not None and not postgres.running:
            try:
                await self._start_database()
            except (StackError, OSError) as exc:
                failures.append(f"starting PostgreSQL: {exc}")
        if not stack.service_running:
            try:
                await stack.start_service()  # and waits until healthy
            except (StackError, OSError) as exc:
                failures.append(f"starting the service: {exc}")
        if failures:
            raise FaultError("could not heal every fault: " + "; ".join(failures))

    async def _inject(self, kind: FaultKind) -> None:
        stack = self._stack
        if kind is FaultKind.KILL_SERVICE:
            await stack.kill_service()
        elif kind is FaultKind.PAUSE_SERVICE:
            stack.pause_service()
            await self._await_service_state(stopped=True)
        elif kind is FaultKind.TERMINATE_SESSIONS:
            self.sessions_terminated_count = await self._terminate_sessions()
        elif kind is FaultKind.DATABASE_RESTART:
            postgres = stack.postgres
            assert postgres is not None
            await asyncio.to_thread(postgres.stop, keep_data=True)  # SIGINT: fast shutdown
        elif kind is FaultKind.DATABASE_CRASH:
            postgres = stack.postgres
            assert postgres is not None
            if postgres.running:  # a server already down cannot crash again
                await asyncio.to_thread(postgres.crash)  # SIGQUIT: immediate shutdown
        else:
            raise AssertionError(f"not a process fault: {kind}")

    async def _heal(self, kind: FaultKind) -> None:
        stack = self._stack
        if kind is FaultKind.KILL_SERVICE:
            await stack.start_service()
        elif kind is FaultKind.PAUSE_SERVICE:
            stack.resume_service()
            await self._await_service_state(stopped=False)
        elif kind is FaultKind.TERMINATE_SESSIONS:
            return  # instantaneous: the sessions are gone, nothing stays in force
        elif kind in _DATABASE_KINDS:
            await self._start_database()
        else:
            raise AssertionError(f"not a process fault: {kind}")

    async def _start_database(self) -> None:
        postgres = self._stack.postgres
        assert postgres is not None
        # Spawned from the loop's thread, which lives as long as the stack (PDEATHSIG).
        postgres.spawn_again()
        await asyncio.to_thread(postgres.wait_ready)

    async def _terminate_sessions(self) -> int:
        stack = self._stack
        assert stack.info is not None
        postgres = stack.postgres
        if postgres is not None:  # as the superuser, the sessions of the service's URL
            service = psycopg.conninfo.conninfo_to_dict(stack.info.database_url)
            url, query = postgres.url, _TERMINATE_EMBEDDED
            params: dict[str, object] | None = {"role": service["user"],
                                                "database": service["dbname"]}
        else:  # as the service's own role, which may end its own sessions
            url, query, params = stack.info.database_url, _TERMINATE_OWN, None
        try:
            async with await psycopg.AsyncConnection.connect(
                    url, autocommit=True, connect_timeout=_SQL_CONNECT_TIMEOUT_S,
                    options=f"-c statement_timeout={_SQL_STATEMENT_TIMEOUT_MS}") as conn:
                cursor = await conn.execute(query, params)
                row = await cursor.fetchone()
        except psycopg.Error as exc:
            raise FaultError(f"could not terminate the service's database sessions: {exc}; "
                             "the connection must be the service's own role or a superuser"
                             ) from exc
        assert row is not None
        return int(row[0])

    async def _await_service_state(self, *, stopped: bool) -> None:
        """Wait until the kernel shows the service stopped (or running again), bounded."""
        process = self._stack.service_process
        assert process is not None
        stat = Path(f"/proc/{process.pid}/stat")
        if not stat.parent.parent.joinpath("self").exists():
            return  # no /proc: the signal was sent, and that is all we can know
        deadline = time.monotonic() + _SIGNAL_STATE_TIMEOUT_S
        while time.monotonic() < deadline:
            if _is_stopped(stat) == stopped:
                return
            await asyncio.sleep(_SIGNAL_STATE_POLL_S)
        raise FaultError(f"the service (pid {process.pid}) was not "
                         f"{'stopped' if stopped else 'running'} within "
                         f"{_SIGNAL_STATE_TIMEOUT_S:.0f} s of the signal")


def _is_stopped(stat: Path) -> bool:
    """Whether ``/proc/<pid>/stat`` says stopped (``T``); a vanished process is not."""
    try:
        text = stat.read_text()
    except OSError:
        return False
    # The state follows the command name, which is in parentheses and may hold spaces.
    return text.rsplit(")", 1)[1].split()[0] in ("T", "t")
