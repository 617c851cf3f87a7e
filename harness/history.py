"""The history: an append-only record of invocations and completions, in memory and on disk.

``History`` holds one scenario's events and asserts, on every append, the shape Jepsen
relies on: indexes are dense, times never go back, a process has at most one invocation
outstanding, a completion matches its invocation (same ``f``, same ``op_id``), an op is
invoked once, and a process that completed with INFO never invokes again (the runner
gives that worker a fresh process id). ``load`` asserts the same things again on read.

On disk (``history.jsonl``) every line is one JSON object tagged by ``"type"``, written
and flushed as it happens, so a crashed run leaves a readable prefix::

    {"type": "scenario", "name", "seed", "params", "users", "target_ids"}
    {"type": "event", "index", "time_ns", "process", "kind", "f", "op_id", "value", ...}
    {"type": "initial", "accounts": [...], "totals": {...} | null}        (optional)
    {"type": "observation", "accounts": [...], "totals": {...} | null}
    {"type": "truth", "intents": [...], "deliveries": [...], ...}
    {"type": "end", "stats": {...}}

Exports for Jepsen's tools: ``to_elle_json`` (the JSON array elle-cli reads with
``--format json``) and ``to_edn`` (one op map per line). This module does no network I/O
and judges nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any, overload

from harness.errors import UsageError
from harness.model import (
    AccountState,
    Delivery,
    DeliveryVariant,
    Event,
    F,
    IntentTruth,
    Kind,
    Observation,
    ProviderTruth,
    Totals,
)

__all__ = [
    "History",
    "HistoryWriter",
    "ScenarioRun",
    "event_from_json",
    "event_to_json",
    "load",
    "observation_from_json",
    "observation_to_json",
    "provider_truth_from_json",
    "provider_truth_to_json",
    "to_edn",
    "to_elle_json",
]


class History(Sequence[Event]):
    """One scenario's events, append-only, with Jepsen's well-formedness asserted."""

    __slots__ = ("_events", "_invoked_op_ids", "_open", "_retired")

    def __init__(self, events: Sequence[Event] = ()) -> None:
        self._events: list[Event] = []
        self._open: dict[int, Event] = {}  # process -> its outstanding invocation
        self._retired: set[int] = set()  # processes whose last op was INFO
        self._invoked_op_ids: set[int] = set()
        for event in events:
            self.append(event)

    def append(self, event: Event) -> None:
        """Add the next event. An AssertionError here is a bug in whoever records."""
        assert event.index == len(self._events), (event.index, len(self._events))
        if self._events:
            assert event.time_ns >= self._events[-1].time_ns, "time went back"
        if event.kind == Kind.INVOKE:
            assert event.process not in self._open, f"process {event.process} has an " \
                f"outstanding invoke (#{self._open.get(event.process, event).index})"
            assert event.process not in self._retired, \
                f"process {event.process} invoked again after an INFO"
            assert event.op_id not in self._invoked_op_ids, f"op {event.op_id} invoked twice"
            self._open[event.process] = event
            self._invoked_op_ids.add(event.op_id)
        else:
            invoke = self._open.pop(event.process, None)
            assert invoke is not None, f"completion #{event.index} has no invoke"
            assert invoke.f == event.f, (invoke.f, event.f)
            assert invoke.op_id == event.op_id, (invoke.op_id, event.op_id)
            if event.kind == Kind.INFO:
                self._retired.add(event.process)
        self._events.append(event)

    def outstanding(self) -> Mapping[int, Event]:
        """Invocations without a completion yet, by process."""
        return dict(self._open)

    def __len__(self) -> int:
        return len(self._events)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | Sequence[Event]:
        return self._events[index]

    def __iter__(self) -> Iterator[Event]:
        return iter(self._events)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, History):
            return self._events == other._events
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"History(<{len(self._events)} events>)"


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioRun:
    """One scenario as read back from a history file."""

    name: str
    seed: int
    params: Mapping[str, Any]
    users: Mapping[str, str]  # logical name -> "fan" | "creator"
    target_ids: Mapping[str, str]  # logical name -> the target's id
    history: History
    initial: Observation | None = None
    observation: Observation | None = None  # None: the run ended before it observed
    truth: ProviderTruth | None = None
    stats: Mapping[str, Any] = field(default_factory=dict)
    complete: bool = False  # the "end" line was read

    @property
    def events(self) -> Sequence[Event]:
        return self.history


# ---------------------------------------------------------------------------------------
# Writing.


class HistoryWriter:
    """Appends history lines to a JSONL file, flushing each one as it happens.

    Order per scenario: ``begin``, then ``event``s and, in any order, at most one each of
    ``initial``, ``observation`` and ``truth``; then ``end``. Several scenarios may follow
    one another in one file. Use as a context manager, or call ``close``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")
        self._scenario: str | None = None
        self._written: set[str] = set()
        self._next_index = 0

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def begin(self, *, name: str, seed: int, params: Mapping[str, Any],
              users: Mapping[str, str], target_ids: Mapping[str, str]) -> None:
        """Open a scenario."""
        assert self._scenario is None, f"scenario {self._scenario!r} is still open"
        self._scenario = name
        self._written = set()
        self._next_index = 0
        self._line({"type": "scenario", "name": name, "seed": seed, "params": dict(params),
                    "users": dict(users), "target_ids": dict(target_ids)})

    def event(self, event: Event) -> None:
        assert self._scenario is not None, "begin a scenario first"
        assert event.index == self._next_index, (event.index, self._next_index)
        self._next_index += 1
        self._line(event_to_json(event))

    def initial(self, observation: Observation) -> None:
        self._once("initial", observation_to_json(observation))

    def observation(self, observation: Observation) -> None:
        self._once("observation", observation_to_json(observation))

    def truth(self, truth: ProviderTruth) -> None:
        self._once("truth", provider_truth_to_json(truth))

    def end(self, stats: Mapping[str, Any]) -> None:
        """Close the scenario."""
        assert self._scenario is not None, "begin a scenario first"
        self._line({"type": "end", "stats": dict(stats)})
        self._scenario = None

    def abandon(self) -> None:
        """Leave the open scenario without an end line (its run failed); it loads incomplete."""
        self._scenario = None

    def _once(self, kind: str, body: dict[str, Any]) -> None:
        assert self._scenario is not None, "begin a scenario first"
        assert kind not in self._written, f"{kind} written twice"
        self._written.add(kind)
        self._line({"type": kind, **body})

    def _line(self, data: Mapping[str, Any]) -> None:
        assert self._file is not None, "the writer is closed"
        self._file.write(json.dumps(data, separators=(",", ":"), allow_nan=False) + "\n")
        self._file.flush()


# ---------------------------------------------------------------------------------------
# Reading.


def load(path: str | Path) -> list[ScenarioRun]:
    """Read every scenario of a history file, asserting the history invariants again.

    A last line cut short by a crash is ignored; a scenario without observation, truth
    or end loads with those missing (``complete`` False).

    Raises:
        UsageError: the file cannot be read, or a line other than the last is not JSON or
            not a history line.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read history {path}: {exc}") from exc
    runs: list[ScenarioRun] = []
    current: dict[str, Any] | None = None
    for number, line in enumerate(lines, start=1):
        record = _parse_line(path, number, line, last=number == len(lines))
        if record is None:
            continue
        kind = record.get("type")
        if kind == "scenario":
            if current is not None:
                runs.append(_finish(current))
            current = _begin(record)
        elif current is None:
            raise UsageError(f"{path}:{number}: a {kind!r} line before any scenario line")
        else:
            _apply(path, number, current, record)
        if kind == "end" and current is not None:
            runs.append(_finish(current))
            current = None
    if current is not None:
        runs.append(_finish(current))
    return runs


def _parse_line(path: Path, number: int, line: str, *, last: bool) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except ValueError as exc:
        if last and not line.endswith("\n"):
            return None  # the writer died in the middle of this line
        raise UsageError(f"{path}:{number}: not a JSON line ({exc}); the history file is "
                         "damaged") from exc
    if not isinstance(record, dict) or not isinstance(record.get("type"), str):
        raise UsageError(f"{path}:{number}: not a history line (no \"type\")")
    return record


def _begin(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": str(record["name"]), "seed": int(record["seed"]),
            "params": dict(record.get("params") or {}),
            "users": {str(k): str(v) for k, v in (record.get("users") or {}).items()},
            "target_ids": {str(k): str(v) for k, v in (record.get("target_ids") or {}).items()},
            "history": History()}


def _apply(path: Path, number: int, current: dict[str, Any], record: dict[str, Any]) -> None:
    kind = record["type"]
    if kind == "event":
        current["history"].append(event_from_json(record))
    elif kind in ("initial", "observation"):
        current[kind] = observation_from_json(record)
    elif kind == "truth":
        current["truth"] = provider_truth_from_json(record)
    elif kind == "end":
        current["stats"] = dict(record.get("stats") or {})
        current["complete"] = True
    else:
        raise UsageError(f"{path}:{number}: unknown history line type {kind!r}")


def _finish(current: Mapping[str, Any]) -> ScenarioRun:
    return ScenarioRun(**current)


# ---------------------------------------------------------------------------------------
# Serialisers: each ``*_to_json`` is undone exactly by its ``*_from_json``.


def event_to_json(event: Event) -> dict[str, Any]:
    return {"type": "event", "index": event.index, "time_ns": event.time_ns,
            "process": event.process, "kind": event.kind.value, "f": event.f.value,
            "op_id": event.op_id, "value": dict(event.value),
            "idempotency_key": event.idempotency_key, "error": event.error,
            "status_code": event.status_code}


def event_from_json(data: Mapping[str, Any]) -> Event:
    return Event(index=int(data["index"]), time_ns=int(data["time_ns"]),
                 process=int(data["process"]), kind=Kind(data["kind"]), f=F(data["f"]),
                 op_id=int(data["op_id"]), value=dict(data.get("value") or {}),
                 idempotency_key=data.get("idempotency_key"), error=data.get("error"),
                 status_code=data.get("status_code"))


def observation_to_json(observation: Observation) -> dict[str, Any]:
    accounts = [{f.name: getattr(account, f.name) for f in fields(AccountState)}
                for account in observation.accounts.values()]
    totals = None if observation.totals is None else \
        {f.name: getattr(observation.totals, f.name) for f in fields(Totals)}
    return {"accounts": accounts, "totals": totals}


def observation_from_json(data: Mapping[str, Any]) -> Observation:
    accounts = [AccountState(**_known(AccountState, item)) for item in data.get("accounts", [])]
    totals_data = data.get("totals")
    totals = None if totals_data is None else Totals(**_known(Totals, totals_data))
    return Observation(accounts={account.user: account for account in accounts}, totals=totals)


def provider_truth_to_json(truth: ProviderTruth) -> dict[str, Any]:
    intents = [{f.name: getattr(intent, f.name) for f in fields(IntentTruth)}
               for intent in truth.intents.values()]
    deliveries = [{f.name: getattr(delivery, f.name) for f in fields(Delivery)}
                  for delivery in truth.deliveries]
    for delivery in deliveries:
        delivery["variant"] = str(delivery["variant"])
    return {"intents": intents, "deliveries": deliveries,
            "event_types": dict(truth.event_types), "event_intents": dict(truth.event_intents),
            "pending_deliveries_count": truth.pending_deliveries_count}


def provider_truth_from_json(data: Mapping[str, Any]) -> ProviderTruth:
    intents = [IntentTruth(**_known(IntentTruth, item)) for item in data.get("intents", [])]
    deliveries = []
    for item in data.get("deliveries", []):
        values = _known(Delivery, item)
        values["variant"] = DeliveryVariant(values["variant"])
        deliveries.append(Delivery(**values))
    return ProviderTruth(intents={intent.intent_id: intent for intent in intents},
                         deliveries=tuple(deliveries),
                         event_types=dict(data.get("event_types") or {}),
                         event_intents=dict(data.get("event_intents") or {}),
                         pending_deliveries_count=int(data.get("pending_deliveries_count", 0)))


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``data`` that are fields of ``cls`` (newer writers may add keys)."""
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


# ---------------------------------------------------------------------------------------
# Jepsen exports.


def to_elle_json(history: Sequence[Event]) -> list[dict[str, Any]]:
    """Jepsen-style op maps, as elle-cli reads them (``--format json``).

    Each op has ``type`` (invoke, ok, fail, info), ``f``, ``value``, ``process``, ``time``
    (ns from the start) and ``index``; FAIL and INFO ops add ``error``, and ops carrying
    one add ``idempotency_key`` and ``status_code``. Values keep logical names.
    """
    ops = []
    for event in history:
        op: dict[str, Any] = {"type": event.kind.value, "f": event.f.value,
                              "value": dict(event.value), "process": event.process,
                              "time": event.time_ns, "index": event.index}
        for key in ("error", "idempotency_key", "status_code"):
            if getattr(event, key) is not None:
                op[key] = getattr(event, key)
        ops.append(op)
    return ops


def to_edn(history: Sequence[Event]) -> str:
    """The same ops as EDN maps, one per line (elle-cli reads them piecewise)."""
    lines = []
    for op in to_elle_json(history):
        parts = []
        for key, value in op.items():
            edn_key = _edn_key(key)
            if key in ("type", "f"):
                parts.append(f"{edn_key} :{value}")
            else:
                parts.append(f"{edn_key} {_edn_value(value)}")
        lines.append("{" + ", ".join(parts) + "}")
    return "\n".join(lines) + ("\n" if lines else "")


def _edn_key(key: str) -> str:
    """A keyword where the key can be one (``amount_tokens`` -> ``:amount-tokens``)."""
    return ":" + key.replace("_", "-") if _EDN_KEYWORD.match(key) else json.dumps(key)


_EDN_KEYWORD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _edn_value(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid EDN string escapes
    if isinstance(value, Mapping):
        items = (f"{_edn_key(str(k))} {_edn_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_edn_value(v) for v in value) + "]"
    raise AssertionError(f"no EDN form for {type(value).__name__} {value!r}")
