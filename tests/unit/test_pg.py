"""The embedded PostgreSQL's pure parts: the stale-directory sweep and URL rewriting."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import psycopg

from harness.pg import _with_credentials, sweep_stale_run_dirs


def test_database_url_is_fresh_and_writable(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        tables = conn.execute("select count(*) from pg_tables where schemaname = 'public'")
        assert tables.fetchone() == (0,)
        conn.execute("create table t (x int)")


def _run_dir(base: Path, name: str, *, lock: bool = True) -> Path:
    path = base / name
    (path / "data").mkdir(parents=True)
    (path / "data" / "PG_VERSION").write_text("18\n")
    if lock:
        (path / "lock").touch()
    return path


def test_sweep_removes_a_dir_whose_lock_is_free_and_keeps_a_locked_one(tmp_path: Path) -> None:
    stale = _run_dir(tmp_path, "tokenchaos-pg-stale")
    live = _run_dir(tmp_path, "tokenchaos-pg-live")
    fd = os.open(live / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        removed = sweep_stale_run_dirs(tmp_path)
    finally:
        os.close(fd)
    assert removed == [stale]
    assert not stale.exists()
    assert (live / "data" / "PG_VERSION").exists()


def test_sweep_keeps_dirs_without_a_lock_file_and_dirs_of_other_names(tmp_path: Path) -> None:
    unlocked = _run_dir(tmp_path, "tokenchaos-pg-older", lock=False)
    staging = _run_dir(tmp_path, ".tokenchaos-pg-new-abc")  # still being set up
    other = _run_dir(tmp_path, "something-else")
    assert sweep_stale_run_dirs(tmp_path) == []
    assert unlocked.exists()
    assert staging.exists()
    assert other.exists()


def test_with_credentials_replaces_user_and_password_in_both_url_forms() -> None:
    url = _with_credentials("postgresql://postgres:old@127.0.0.1:5432/db?sslmode=disable",
                            user="svc", password="p@ss/word")
    assert url == "postgresql://svc:p%40ss%2Fword@127.0.0.1:5432/db?sslmode=disable"
    conninfo = _with_credentials("host=127.0.0.1 port=5432 dbname=db user=postgres",
                                 user="svc", password="secret")
    parsed = psycopg.conninfo.conninfo_to_dict(conninfo)
    assert (parsed["user"], parsed["password"], parsed["dbname"]) == ("svc", "secret", "db")
