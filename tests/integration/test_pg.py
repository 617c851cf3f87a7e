"""The embedded PostgreSQL for real: durability across a crash, password auth, the
service's own role, stale directories of killed runs, and a private install tree as root."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from harness.pg import Durability, EmbeddedPostgres, create_service_database
from harness.pg_install import INSTALL_CACHE_DIR, install_dir
from harness.stack import LocalStack, StackConfig

_WRITERS_COUNT = 8
_ACKED_BEFORE_CRASH_COUNT = 400  # commits acknowledged before the crash
_ROWS_PER_WRITER_MAX = 5_000  # every writer stops by then, crash or not
_WAIT_S_MAX = 120.0  # bound on every wait below; a bound, not an assertion on speed


@pytest.fixture
def fast_server() -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres(durability=Durability.FAST) as server:
        yield server


def _without_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}@{parts.hostname}:"
                                                         f"{parts.port}"))


def _no_password_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-such-pgpass"))


# -- durability ------------------------------------------------------------------------------


def _write_until_crash(server: EmbeddedPostgres) -> list[int]:
    """8 writers insert one row per commit; crash the server mid-stream; the acked ids."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE acked (id BIGINT PRIMARY KEY, writer INT NOT NULL)")
        conn.execute("CHECKPOINT")  # the table is on disk whatever the mode: rows are the test
    acked: list[int] = []
    lock = threading.Lock()
    enough = threading.Event()

    def writer(index: int) -> None:
        try:
            with psycopg.connect(server.url, autocommit=True) as conn:
                for row in range(_ROWS_PER_WRITER_MAX):
                    row_id = index * _ROWS_PER_WRITER_MAX + row
                    conn.execute("INSERT INTO acked VALUES (%s, %s)", (row_id, index))
                    with lock:  # the commit returned: PostgreSQL acknowledged it
                        acked.append(row_id)
                        if len(acked) >= _ACKED_BEFORE_CRASH_COUNT:
                            enough.set()
        except psycopg.OperationalError:
            pass  # the crash: this writer's last commit is indeterminate, never acked

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(_WRITERS_COUNT)]
    for thread in threads:
        thread.start()
    reached = enough.wait(timeout=_WAIT_S_MAX)
    server.crash()  # SIGQUIT to the postmaster: immediate shutdown, no checkpoint
    for thread in threads:
        thread.join(timeout=_WAIT_S_MAX)
    assert reached, f"only {len(acked)} commits before the wait bound"
    with lock:
        return list(acked)


def _lost_after_restart(server: EmbeddedPostgres, acked: list[int]) -> list[int]:
    server.restart()
    with psycopg.connect(server.url) as conn:
        present = {row[0] for row in conn.execute("SELECT id FROM acked")}
    return sorted(set(acked) - present)


def test_acknowledged_commits_survive_a_crash_of_the_default_server() -> None:
    with EmbeddedPostgres() as server:
        acked = _write_until_crash(server)
        lost = _lost_after_restart(server, acked)
    assert len(acked) >= _ACKED_BEFORE_CRASH_COUNT
    assert lost == [], f"{len(lost)} of {len(acked)} acknowledged rows lost: {lost[:20]}"


def test_default_server_is_durable_and_fast_one_says_so(fast_server: EmbeddedPostgres) -> None:
    names = ("fsync", "synchronous_commit", "full_page_writes")
    with EmbeddedPostgres() as durable:
        assert durable.durability is Durability.DURABLE
        with psycopg.connect(durable.url) as conn:
            assert [conn.execute(f"SHOW {n}").fetchone() for n in names] == [("on",)] * 3
    with psycopg.connect(fast_server.url) as conn:
        assert [conn.execute(f"SHOW {n}").fetchone() for n in names] == [("off",)] * 3


# -- authentication and the service's role ---------------------------------------------------


def test_connecting_without_a_password_is_refused(
        fast_server: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_password_env(monkeypatch, tmp_path)
    service_url = create_service_database(fast_server.url)
    for url in (fast_server.url, service_url):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(_without_password(url), connect_timeout=5).close()
    wrong = fast_server.url.replace(f":{urllib.parse.urlsplit(fast_server.url).password}@",
                                    ":wrong@")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5).close()


def test_service_role_owns_its_database_and_nothing_more(fast_server: EmbeddedPostgres) -> None:
    url = create_service_database(fast_server.url)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, "
                           "rolbypassrls FROM pg_roles WHERE rolname = current_user").fetchone()
        assert row == (False, False, False, False, False)
        owner = conn.execute("SELECT pg_get_userbyid(datdba) = current_user FROM pg_database "
                             "WHERE datname = current_database()").fetchone()
        assert owner == (True,)
        conn.execute("CREATE TABLE mine (x INT)")  # it may build its own schema
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE DATABASE another")
    other = create_service_database(fast_server.url)
    foreign = urllib.parse.urlsplit(url)._replace(path=urllib.parse.urlsplit(other).path)
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(urllib.parse.urlunsplit(foreign), connect_timeout=5).close()


async def test_local_stack_service_runs_its_migrations_as_a_non_superuser(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKENCHAOS_DATABASE_URL", raising=False)
    async with LocalStack(StackConfig()) as info:
        parts = urllib.parse.urlsplit(info.database_url)
        assert parts.username == "tokenchaos_service"
        async with await psycopg.AsyncConnection.connect(info.database_url) as conn:
            cursor = await conn.execute(
                "SELECT r.rolsuper, c.relowner = r.oid FROM pg_roles r, pg_class c "
                "WHERE r.rolname = current_user AND c.relname = 'accounts'")
            assert await cursor.fetchone() == (False, True)  # the migrations ran, as it


# -- stale directories -----------------------------------------------------------------------


_SERVE_AND_HANG = """
import sys, time
from harness.pg import Durability, EmbeddedPostgres
server = EmbeddedPostgres(durability=Durability.FAST)
server.start()
print(server.root, flush=True)
time.sleep(3600)
"""


def _directory_left_by_a_killed_run() -> Path:
    child = subprocess.Popen([sys.executable, "-c", _SERVE_AND_HANG], stdout=subprocess.PIPE,
                             text=True, cwd=Path(__file__).parents[2])
    assert child.stdout is not None
    root = Path(child.stdout.readline().strip())
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=_WAIT_S_MAX)
    assert (root / "data" / "PG_VERSION").exists()
    # Its server got SIGINT from the kernel and holds the lock until it has exited.
    fd = os.open(root / "lock", os.O_RDONLY)
    deadline = time.monotonic() + _WAIT_S_MAX
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return root
            except BlockingIOError:
                assert time.monotonic() < deadline, "the killed run's server never exited"
                time.sleep(0.05)
    finally:
        os.close(fd)


def test_starting_a_server_sweeps_the_directory_of_a_killed_run_not_a_live_one(
        fast_server: EmbeddedPostgres) -> None:
    stale = _directory_left_by_a_killed_run()
    assert stale.parent == fast_server.root.parent
    with EmbeddedPostgres(durability=Durability.FAST):
        assert not stale.exists()
        assert (fast_server.root / "data" / "PG_VERSION").exists()
        with psycopg.connect(fast_server.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


# -- a private checkout, as root -------------------------------------------------------------


root_only = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="as root PostgreSQL runs as a system user, which a private directory shuts out; "
           "not root, we run it ourselves and every directory we can read works")


def _private_copy_of_the_install(tmp_path: Path) -> Path:
    """The wheel's layout (the package's install tree, its bundled libraries beside it)."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    source = install_dir()
    site = source.parent.parent
    copy = private / source.relative_to(site)
    for part in ("bin", "lib", "share"):
        shutil.copytree(source / part, copy / part, symlinks=True)
    bundled = site / f"{source.parent.name}.libs"
    if bundled.is_dir():
        shutil.copytree(bundled, private / bundled.name, symlinks=True)
    return copy


@root_only
def test_root_runs_the_server_from_an_install_tree_under_a_0700_directory(
        tmp_path: Path) -> None:
    install = _private_copy_of_the_install(tmp_path)
    with EmbeddedPostgres(durability=Durability.FAST, install=install) as server:
        assert server.install is not None
        assert server.install.is_relative_to(INSTALL_CACHE_DIR)
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


@root_only
def test_root_with_a_private_tmpdir_puts_the_server_where_it_can_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    with EmbeddedPostgres(durability=Durability.FAST) as server:
        assert server.root.parent != private_tmp
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
