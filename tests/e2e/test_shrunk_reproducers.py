"""The pytest files `tokenchaos shrink` wrote for the zoo's race and ordering flaws: each
fails with its flaw installed and passes against the correct service.

``test_shrink.py`` shrinks two flaws end to end and runs what it writes; shrinking the
other six takes minutes each, so their written files are kept in ``tests/e2e/shrunk/``
as the command wrote them (``tokenchaos run --scenario S --seed 1 --flaw F``, then
``tokenchaos shrink`` with its defaults; the README's shrink matrix has the figures) and
run here as a user runs them: copied beside nothing else and given to pytest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SHRUNK_DIR = Path(__file__).parent / "shrunk"
FLAWS = tuple(sorted(path.stem.removeprefix("shrunk_") for path in SHRUNK_DIR.glob("shrunk_*.py")))
_TIMEOUT_S = 600


def _copy(flaw: str, folder: Path) -> Path:
    """The written file of ``flaw``, under the name shrink gave it, in ``folder``."""
    source = SHRUNK_DIR / f"shrunk_{flaw}.py"
    text = source.read_text(encoding="utf-8")
    assert f"--tokenchaos-flaw {flaw}" in text, source  # the file shrink wrote for this flaw
    (name,) = [word for word in text.split() if word.startswith("test_shrunk_")][:1]
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(source, folder / f"{flaw}_{name}"))


def _pytest(files: list[Path], *flags: str, cwd: Path, database_url: str
            ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": "1", "TOKENCHAOS_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "--rootdir", str(cwd), *map(str, files), "--tokenchaos-report-dir",
         str(cwd / "reports"), *flags],
        cwd=cwd, capture_output=True, text=True, timeout=_TIMEOUT_S, env=env, check=False)


def test_the_six_written_files_are_here() -> None:
    assert FLAWS == ("call_charge_no_lock", "call_minute_charged_twice",
                     "credit_every_delivery", "refund_not_idempotent",
                     "tip_ignores_idempotency_key", "tip_lock_order_deadlock")


@pytest.mark.parametrize("flaw", FLAWS)
def test_a_written_file_fails_with_its_flaw_and_passes_on_the_correct_service(
        flaw: str, tmp_path: Path, pg_admin_url: str) -> None:
    from harness.pg import create_database

    written = _copy(flaw, tmp_path / "tests")
    flawed = _pytest([written], "--tokenchaos-flaw", flaw, cwd=tmp_path,
                     database_url=create_database(pg_admin_url))
    assert flawed.returncode == 1, flawed.stdout[-3000:] + flawed.stderr[-3000:]
    assert "1 failed" in flawed.stdout, flawed.stdout[-3000:]
    correct = _pytest([written], cwd=tmp_path, database_url=create_database(pg_admin_url))
    assert correct.returncode == 0, correct.stdout[-3000:] + correct.stderr[-3000:]
    assert "1 passed" in correct.stdout, correct.stdout[-3000:]
