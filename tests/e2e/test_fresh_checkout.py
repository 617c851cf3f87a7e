"""The README's first command from a fresh clone in a private directory: `make run`.

The repository the tests run from is cloned (its committed HEAD) into a fresh
``mktemp -d`` (mode 0700) and ``make run`` bootstraps a venv with pip and runs the smoke
suite on the local stack there; it must exit 0 and write the report. As root, where the
embedded PostgreSQL runs as a system user that cannot enter the checkout, this is the
case that used to fail; and as root the same runs again as a normal user in a directory
that user owns. Each run costs a venv bootstrap (about 30 s with a warm pip cache) plus
the smoke suite.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

_REPO = Path(__file__).resolve().parents[2]
_MAKE_TIMEOUT_S = 900
_GIT_TIMEOUT_S = 120
_NORMAL_USER = "tokenchaos-e2e"  # made with useradd when running as root


def _is_git_checkout() -> bool:
    done = subprocess.run(["git", "-C", str(_REPO), "rev-parse", "--show-toplevel"],
                          capture_output=True, text=True, check=False, timeout=_GIT_TIMEOUT_S)
    return done.returncode == 0 and Path(done.stdout.strip()) == _REPO


needs_git = pytest.mark.skipif(not _is_git_checkout(),
                               reason="the tests do not run from a git checkout to clone")


@pytest.fixture
def private_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tokenchaos-checkout-"))
    assert path.stat().st_mode & 0o777 == 0o700
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _clone_into(parent: Path) -> Path:
    checkout = parent / "tokenchaos"
    subprocess.run(["git", "clone", "--quiet", str(_REPO), str(checkout)], check=True,
                   timeout=_GIT_TIMEOUT_S)
    return checkout


def _environment(home: str) -> dict[str, str]:
    """Ours, minus what would point the run at our venv, database or temp dir."""
    dropped = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "TMPDIR", "MAKEFLAGS", "MAKELEVEL")
    env = {k: v for k, v in os.environ.items()
           if k not in dropped and not k.startswith(("TOKENCHAOS_", "PYTEST_", "PG"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", os.defpath).split(os.pathsep)
                                  if not p.startswith(str(_REPO)))
    env["HOME"] = home
    return env


def _make_run(checkout: Path, *, user: pwd.struct_passwd | None = None) -> None:
    command = ["make", "run"]
    home = os.environ.get("HOME", "/")
    if user is not None:
        command = ["runuser", "-u", user.pw_name, "--", *command]
        home = user.pw_dir
    done = subprocess.run(command, cwd=checkout, env=_environment(home), capture_output=True,
                          text=True, timeout=_MAKE_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = [p for p in (checkout / "reports").iterdir() if (p / "run.json").is_file()]
    assert len(runs) == 1, sorted(p.name for p in (checkout / "reports").iterdir())
    record = json.loads((runs[0] / "run.json").read_text())
    assert record["exit_code"] == 0
    assert (runs[0] / "index.html").stat().st_size > 0


def _normal_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(_NORMAL_USER)
    except KeyError:
        pass
    done = subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", _NORMAL_USER],
                          capture_output=True, text=True, check=False)
    if done.returncode not in (0, 9):  # 9: made meanwhile by another worker
        pytest.fail(f"useradd {_NORMAL_USER} failed: {done.stderr.strip()}")
    return pwd.getpwnam(_NORMAL_USER)


@needs_git
def test_make_run_in_a_fresh_clone_under_a_0700_directory(private_dir: Path) -> None:
    _make_run(_clone_into(private_dir))


@needs_git
@pytest.mark.skipif(os.geteuid() != 0, reason="the other user is made and switched to as root")
def test_make_run_in_a_fresh_private_clone_as_a_normal_user(private_dir: Path) -> None:
    user = _normal_user()
    checkout = _clone_into(private_dir)
    for directory, _, files in os.walk(private_dir):  # the user's own checkout, 0700 on top
        os.chown(directory, user.pw_uid, user.pw_gid)
        for name in files:
            os.chown(os.path.join(directory, name), user.pw_uid, user.pw_gid,
                     follow_symlinks=False)
    _make_run(checkout, user=user)
