"""What a locust process of a load run needs to know, and the files the run shares.

``tokenchaos load`` hands its locust master a ``LoadConfig`` as JSON in the environment
(``TOKENCHAOS_LOAD_CONFIG``, so its keys never show in a process list); the locustfile
reads it as its ``--tokenchaos-config`` argument, and locust's master forwards it to every
worker with the first spawn message, so a worker on another machine needs only
``locust -f harness/locustfile.py --worker --master-host HOST``. The configuration names
the run's hot creators (provisioned once by ``tokenchaos load``), so the users of every
process tip the same accounts; a locustfile run directly has none in its configuration,
and each of its processes provisions hot creators of its own.

The report directory holds, beside locust's own HTML and CSV::

    histories/<tag>.jsonl   one per locust process: ``local``, or ``w0``, ``w1``... per worker
    locust.json             written by the master (or the one local process) as it quits:
                            locust's figures and the tags of the processes that ran
    verdict.json            written by whoever judged: the exit code for locust to take
    history.jsonl, run.json, junit.xml, index.html   the merged, judged run

Nothing here does network I/O.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError

__all__ = ["CONFIG_ENV", "FIGURES_FILE", "HISTORIES_DIR", "VERDICT_FILE", "LoadConfig",
           "write_atomically"]

CONFIG_ENV = "TOKENCHAOS_LOAD_CONFIG"
HISTORIES_DIR = "histories"
FIGURES_FILE = "locust.json"
VERDICT_FILE = "verdict.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadConfig:
    """The target, the provider, the workload and where the run's files go."""

    report_dir: str  # absolute: every locust process writes its history under it
    profile: str = "reference"
    target_url: str | None = None  # None: the profile's base URL
    admin_key: str | None = None
    provider_url: str | None = None
    provider_key: str | None = None
    mix: Mapping[str, int] = field(default_factory=dict)  # empty: the default mix
    # Logical name -> {"target_id", "token"}: the creators every process's users tip.
    # Empty: each process provisions its own.
    hot_creators: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    seed: int = 1
    op_timeout_s: float = 10.0
    connect_timeout_s: float = 3.0
    response_body_bytes_max: int = 1 << 20
    judge: str = "self"  # "parent": tokenchaos load judges and writes verdict.json
    histories_wait_s_max: float = 30.0  # the master waits this long for workers' files
    verdict_wait_s_max: float = 300.0  # and this long for the parent's verdict
    latency_ms_max: int | None = None

    def __post_init__(self) -> None:
        assert self.judge in ("self", "parent"), self.judge
        assert Path(self.report_dir).is_absolute(), self.report_dir
        for name, credentials in self.hot_creators.items():
            assert set(credentials) == {"target_id", "token"}, (name, sorted(credentials))

    @property
    def out_dir(self) -> Path:
        return Path(self.report_dir)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> LoadConfig:
        """Read the JSON ``to_json`` wrote.

        Raises:
            UsageError: it is not such JSON.
        """
        try:
            data: Any = json.loads(text)
            return cls(**{**data, "mix": dict(data.get("mix") or {}),
                          "hot_creators": {str(name): dict(credentials) for name, credentials
                                           in (data.get("hot_creators") or {}).items()}})
        except (ValueError, TypeError, AttributeError, AssertionError) as exc:
            raise UsageError(f"{CONFIG_ENV} / --tokenchaos-config is not a load "
                             f"configuration written by tokenchaos load: {exc}") from exc

    @classmethod
    def from_environment(cls, env: Mapping[str, str], *, host: str | None) -> LoadConfig:
        """A configuration for a locustfile run directly (``locust -f``), from
        ``TOKENCHAOS_*`` variables and locust's ``--host``: it judges itself."""
        from datetime import UTC, datetime

        stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
        report_dir = env.get("TOKENCHAOS_REPORT_DIR") or str(Path("reports") / f"load-{stamp}")
        mix_text = env.get("TOKENCHAOS_LOAD_MIX")
        mix: dict[str, int] = {}
        if mix_text:
            from harness.load_mix import parse_mix

            mix = dict(parse_mix(mix_text).weights)
        return cls(report_dir=str(Path(report_dir).resolve()),
                   profile=env.get("TOKENCHAOS_PROFILE", "reference"),
                   target_url=host or env.get("TOKENCHAOS_TARGET_URL") or None,
                   admin_key=env.get("TOKENCHAOS_ADMIN_KEY") or None,
                   provider_url=env.get("TOKENCHAOS_PROVIDER_URL") or None,
                   provider_key=env.get("TOKENCHAOS_PROVIDER_KEY") or None, mix=mix)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so a reader never sees half of it (rename over)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
