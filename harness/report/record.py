"""The run record: what ``reports/<run-id>/run.json`` holds, and its JSON round trip.

``RunRecord`` describes one run (when, against what, with which command, the overall
verdict) and holds one ``ScenarioRecord`` per scenario (seed, parameters, statistics, one
``Verdict`` per checker, the command that reproduces it, sampled total balances, and its
performance findings: latency figures that are reported, never judged unless the run was
given a latency bound). What the target's profile could not support is recorded as not
run, with the reason: a part of a scenario (``not_run``), or all of it
(``not_run_reason``, and then no verdicts). A run against a target with an SQL observer
that names its tables also carries the run-level ``schema`` verdict (the schema check of
``harness.targets.schema_check``, made before the first scenario), which joins the run's
verdict like any checker's.
``to_json``/``from_json`` round-trip exactly: ``RunRecord.from_json(r.to_json()) == r``.

The schema is versioned (``SCHEMA_VERSION``) and written out as JSON Schema in
``run.schema.json`` beside this module. Any change to the JSON shape bumps the version;
a reader refuses a newer version instead of guessing.

Clocks: ``started_at``/``finished_at`` are wall-clock ISO-8601 UTC strings. ``started_ns``
and every sample's ``time_ns`` are on the history's clock (``Event.time_ns``: monotonic
nanoseconds from the start of the run), so samples and events line up on one axis.

This module does no I/O beyond ``write_run_json``/``load_run_json`` and renders nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from harness.checkers.latency import Performance, performance_from_json, performance_to_json
from harness.errors import UsageError
from harness.history import fault_from_json, fault_to_json
from harness.model import Anomaly, FaultWindow, Validity, Verdict, merge_validity

__all__ = [
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "JsonScalar",
    "NotRunPart",
    "RunRecord",
    "Sample",
    "ScenarioRecord",
    "TargetInfo",
    "anomaly_from_json",
    "anomaly_to_json",
    "iso_utc",
    "load_run_json",
    "ns_from_iso_utc",
    "verdict_from_json",
    "verdict_to_json",
    "write_run_json",
]

# 2: scenarios carry "performance" (latency findings)
# 3: scenarios carry "not_run" (parts not run for the target) and "not_run_reason"
# 4: the run carries "schema" (the schema check's verdict, or null when not checked)
# 5: scenarios carry "faults" (each fault injected: when, healed, recovered)
SCHEMA_VERSION = 5
SCHEMA_PATH = Path(__file__).with_name("run.schema.json")

JsonScalar = int | float | str | bool | None


class Sample(NamedTuple):
    """Total balances and debts over every account, read at one moment of a scenario."""

    time_ns: int  # on the history's clock
    balances_tokens: int
    debts_tokens: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetInfo:
    """The deployment a run talked to."""

    profile: str  # profile name or file, e.g. "reference"
    service_url: str
    provider_url: str | None = None  # None when the target uses a real provider
    fees: Mapping[str, str] = field(default_factory=dict)  # op kind -> its fee, in words


@dataclass(frozen=True, slots=True, kw_only=True)
class NotRunPart:
    """A part of a scenario not run for this target, and why (in the profile's words)."""

    part: str  # "tips retried with the same key"
    reason: str  # 'tips carry no idempotency key: [ops.tip] idempotency = "none" (x.toml)'


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioRecord:
    """One scenario of a run: its inputs, its statistics and one verdict per checker."""

    name: str  # kebab-case, "tip-cycle"
    seed: int
    params: Mapping[str, Any]  # ScenarioParams and scenario extras, JSON values
    started_ns: int  # on the history's clock
    duration_s: float
    ops_count: int  # ops invoked (not events)
    stats: Mapping[str, Any]  # e.g. {"ok_count": 90, "fail_count": 8, "info_count": 2}
    verdicts: Mapping[str, Verdict]  # checker name -> verdict, in the order they ran
    reproduce: str  # one shell command that re-runs exactly this scenario
    samples: tuple[Sample, ...] = ()
    performance: Performance | None = None  # None: not measured (no history)
    not_run: tuple[NotRunPart, ...] = ()  # parts left out for this target
    not_run_reason: str | None = None  # set: the whole scenario was not run, for this reason
    faults: tuple[FaultWindow, ...] = ()  # injected during the scenario, in order

    def __post_init__(self) -> None:
        if self.not_run_reason is not None:
            assert not self.verdicts, "a scenario not run has no verdicts"
            assert self.ops_count == 0, self.ops_count
        assert self.ops_count >= 0, self.ops_count
        assert self.duration_s >= 0, self.duration_s
        assert math.isfinite(self.duration_s), self.duration_s
        assert self.started_ns >= 0, self.started_ns

    @property
    def ran(self) -> bool:
        """Whether the scenario ran at all (False: not run for this target)."""
        return self.not_run_reason is None

    @property
    def valid(self) -> Validity:
        """The scenario's verdict: False > "unknown" > True; "unknown" if nothing judged it.

        A scenario not run for this target broke nothing and is no verdict: True, and the
        run's verdict leaves it out (``ran`` says which it was).
        """
        if not self.ran:
            return True
        if not self.verdicts:
            return "unknown"
        return merge_validity(*(v.valid for v in self.verdicts.values()))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seed": self.seed,
            "params": dict(self.params),
            "started_ns": self.started_ns,
            "duration_s": self.duration_s,
            "ops_count": self.ops_count,
            "stats": dict(self.stats),
            "verdicts": {name: verdict_to_json(v) for name, v in self.verdicts.items()},
            "reproduce": self.reproduce,
            "samples": [list(s) for s in self.samples],
            "performance": None if self.performance is None
            else performance_to_json(self.performance),
            "not_run": [{"part": p.part, "reason": p.reason} for p in self.not_run],
            "not_run_reason": self.not_run_reason,
            "faults": [_fault_json(window) for window in self.faults],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScenarioRecord:
        return cls(
            name=str(data["name"]),
            seed=int(data["seed"]),
            params=dict(data.get("params", {})),
            started_ns=int(data["started_ns"]),
            duration_s=float(data["duration_s"]),
            ops_count=int(data["ops_count"]),
            stats=dict(data.get("stats", {})),
            verdicts={str(name): verdict_from_json(v)
                      for name, v in data.get("verdicts", {}).items()},
            reproduce=str(data["reproduce"]),
            samples=tuple(Sample(int(t), int(b), int(d)) for t, b, d in data.get("samples", ())),
            performance=None if data["performance"] is None
            else performance_from_json(data["performance"]),
            not_run=tuple(NotRunPart(part=str(p["part"]), reason=str(p["reason"]))
                          for p in data["not_run"]),
            not_run_reason=None if data["not_run_reason"] is None
            else str(data["not_run_reason"]),
            faults=tuple(fault_from_json(item) for item in data.get("faults", ())),
        )


def _fault_json(window: FaultWindow) -> dict[str, Any]:
    data = fault_to_json(window)
    del data["type"]  # a history line's tag; run.json's list needs none
    return data


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """One run of the harness: the header of the report and every scenario's result."""

    run_id: str  # also the report directory's name
    started_at: str  # ISO-8601 UTC, "2026-05-01T12:00:00.123456Z"
    finished_at: str | None  # None while running, or if the run crashed
    tokenchaos_version: str
    target: TargetInfo
    suite: str | None  # "smoke", "full", "load"; None when scenarios were named one by one
    command: str  # the exact command line that reproduces the whole run
    valid: Validity
    exit_code: int | None  # 0 held, 1 an invariant broke, 2 could not judge; None if running
    scenarios: tuple[ScenarioRecord, ...] = ()
    schema: Verdict | None = None  # the schema check before the first scenario; None: none
    schema_version: int = field(default=SCHEMA_VERSION)

    def __post_init__(self) -> None:
        assert self.schema_version == SCHEMA_VERSION, self.schema_version
        assert self.valid in (True, False, "unknown"), self.valid
        ns_from_iso_utc(self.started_at)  # raises on a malformed timestamp
        if self.finished_at is not None:
            ns_from_iso_utc(self.finished_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "tokenchaos_version": self.tokenchaos_version,
            "target": {"profile": self.target.profile, "service_url": self.target.service_url,
                       "provider_url": self.target.provider_url,
                       **({"fees": dict(self.target.fees)} if self.target.fees else {})},
            "suite": self.suite,
            "command": self.command,
            "valid": self.valid,
            "exit_code": self.exit_code,
            "scenarios": [s.to_json() for s in self.scenarios],
            "schema": None if self.schema is None else verdict_to_json(self.schema),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """Read a record, refusing a schema version this code does not know.

        Raises:
            UsageError: the data is of another schema version, or malformed.
        """
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise UsageError(
                f"run.json has schema_version {version!r}; this tokenchaos reads version "
                f"{SCHEMA_VERSION}: render it with the tokenchaos version that wrote it")
        try:
            return cls._from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"run.json is malformed ({type(exc).__name__}: {exc}); it must "
                             f"match {SCHEMA_PATH.name}") from exc

    @classmethod
    def _from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        target = data["target"]
        return cls(
            schema_version=SCHEMA_VERSION,
            run_id=str(data["run_id"]),
            started_at=str(data["started_at"]),
            finished_at=data.get("finished_at"),
            tokenchaos_version=str(data["tokenchaos_version"]),
            target=TargetInfo(profile=str(target["profile"]),
                              service_url=str(target["service_url"]),
                              provider_url=target.get("provider_url"),
                              fees={str(f): str(text)
                                    for f, text in (target.get("fees") or {}).items()}),
            suite=data.get("suite"),
            command=str(data["command"]),
            valid=_validity(data["valid"]),
            exit_code=data.get("exit_code"),
            scenarios=tuple(ScenarioRecord.from_json(s) for s in data.get("scenarios", ())),
            schema=None if data["schema"] is None else verdict_from_json(data["schema"]),
        )


def write_run_json(record: RunRecord, path: Path) -> Path:
    """Write ``record`` as indented JSON (written to a temporary file, then renamed)."""
    text = json.dumps(record.to_json(), indent=2, ensure_ascii=False, allow_nan=False)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def load_run_json(path: Path) -> RunRecord:
    """Read a ``run.json``.

    Raises:
        UsageError: the file is not JSON or of another schema version.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read run record {path}: {exc}") from exc
    return RunRecord.from_json(data)


# ---------------------------------------------------------------------------------------
# Verdicts and anomalies (the types live in harness.model; their JSON lives here).


def verdict_to_json(verdict: Verdict) -> dict[str, Any]:
    return {
        "valid": verdict.valid,
        "counts": dict(verdict.counts),
        "anomalies": [anomaly_to_json(a) for a in verdict.anomalies],
        "note": verdict.note,
    }


def verdict_from_json(data: Mapping[str, Any]) -> Verdict:
    return Verdict(
        valid=_validity(data["valid"]),
        counts={str(k): int(v) for k, v in data.get("counts", {}).items()},
        anomalies=tuple(anomaly_from_json(a) for a in data.get("anomalies", ())),
        note=data.get("note"),
    )


def anomaly_to_json(anomaly: Anomaly) -> dict[str, Any]:
    return {
        "kind": anomaly.kind,
        "event_indexes": list(anomaly.event_indexes),
        "expected": anomaly.expected,
        "observed": anomaly.observed,
        "explanation": anomaly.explanation,
        "user": anomaly.user,
        "delivery_indexes": list(anomaly.delivery_indexes),
    }


def anomaly_from_json(data: Mapping[str, Any]) -> Anomaly:
    return Anomaly(
        kind=str(data["kind"]),
        event_indexes=tuple(int(i) for i in data.get("event_indexes", ())),
        expected=_int_or_str(data["expected"]),
        observed=_int_or_str(data["observed"]),
        explanation=str(data["explanation"]),
        user=data.get("user"),
        delivery_indexes=tuple(int(i) for i in data.get("delivery_indexes", ())),
    )


# ---------------------------------------------------------------------------------------
# Timestamps.


def iso_utc(wall_ns: int) -> str:
    """Wall-clock nanoseconds (``time.time_ns()``) as ISO-8601 UTC with microseconds."""
    seconds, nanos = divmod(wall_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=nanos // 1_000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ns_from_iso_utc(text: str) -> int:
    """The inverse of ``iso_utc`` (to the microsecond); accepts ``Z`` or ``+00:00``.

    Raises:
        ValueError: not an ISO-8601 timestamp in UTC.
    """
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    offset = moment.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        raise ValueError(f"timestamp {text!r} is not in UTC; write it as ...Z")
    whole = int(moment.replace(microsecond=0).timestamp())
    return whole * 1_000_000_000 + moment.microsecond * 1_000


def _validity(value: Any) -> Validity:
    if value is True or value is False or value == "unknown":
        return value  # type: ignore[no-any-return]
    raise UsageError(f"verdict validity must be true, false or \"unknown\", got {value!r}")


def _int_or_str(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return str(value)
    return value

