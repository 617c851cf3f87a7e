"""The history: an append-only record of invocations and completions, in memory and on disk.

``History`` holds one scenario's events and asserts, on every append, the shape Jepsen
relies on: indexes are dense, times never go back, a process has at most one invocation
outstanding, a completion matches its invocation (same ``f``, same ``op_id``), an op is
invoked once, and a process that completed with INFO never invokes again (the runner
gives that worker a fresh process id). ``load`` checks the same things again on read
(``History.problem``), and every line's fields and their types, and reports the first
bad line by number as a ``UsageError``: a file is user input, never asserted on.

On disk (``history.jsonl``) every line is one JSON object tagged by ``"type"``, written
as it happens and flushed at most ``FLUSH_S_MAX`` later (every line but an event at once),
so a crashed run leaves a readable prefix::

    {"type": "scenario", "name", "seed", "params", "users", "target_ids"}
    {"type": "event", "index", "time_ns", "process", "kind", "f", "op_id", "value", ...}
                            (a completion of a 5xx or unlisted answer adds "body_excerpt")
    {"type": "initial", "accounts": [...], "totals": {...} | null}        (optional)
    {"type": "observation", "accounts": [...], "totals": {...} | null}
    {"type": "fault", "name", "kind", "link", "description", "attributes",
                      "started_ns", "healed_ns", "recovered_ns", "error", "wall_offset_ns"}
                      (one per fault,
                      written once it has healed and the target recovered, or given up)
    {"type": "truth", "intents": [...], "deliveries": [...], ...}
    {"type": "end", "stats": {...}}

Exports for Jepsen's tools: ``to_elle_json`` (the JSON array elle-cli reads with
``--format json``) and ``to_edn`` (one op map per line). This module does no network I/O
and judges nothing.
"""

from __future__ import annotations

import json
import re
import time
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from enum import Enum
from pathlib import Path
from types import UnionType
from typing import IO, Any, overload

from harness.errors import UsageError
from harness.fees import NO_FEES, Fees
from harness.model import (
    BODY_EXCERPT_CHARS_MAX,
    AccountState,
    Delivery,
    DeliveryVariant,
    Event,
    F,
    FaultWindow,
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
    "fault_from_json",
    "fault_to_json",
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
        problem = self.problem(event)
        assert problem is None, problem
        if event.kind == Kind.INVOKE:
            self._open[event.process] = event
            self._invoked_op_ids.add(event.op_id)
        else:
            self._open.pop(event.process)
            if event.kind == Kind.INFO:
                self._retired.add(event.process)
        self._events.append(event)

    def problem(self, event: Event) -> str | None:
        """What would break an invariant if ``event`` came next, in words; None if nothing.

        ``append`` asserts there is none (a recorder's bug); ``load`` reports it as a
        damaged file, naming the line.
        """
        if event.index != len(self._events):
            return f"index {event.index} where {len(self._events)} comes next " \
                f"({(event.index, len(self._events))}: indexes are dense from 0)"
        if self._events and event.time_ns < self._events[-1].time_ns:
            return "time went back"
        if event.kind == Kind.INVOKE:
            if event.process in self._open:
                return f"process {event.process} has an outstanding invoke " \
                    f"(#{self._open[event.process].index})"
            if event.process in self._retired:
                return f"process {event.process} invoked again after an INFO"
            if event.op_id in self._invoked_op_ids:
                return f"op {event.op_id} invoked twice"
            return None
        invoke = self._open.get(event.process)
        if invoke is None:
            return f"completion #{event.index} has no invoke"
        if invoke.f != event.f:
            return f"completion of {invoke.f!r} has f {event.f!r} ({(invoke.f, event.f)})"
        if invoke.op_id != event.op_id:
            return f"completion of op {invoke.op_id} has op_id {event.op_id} " \
                f"({(invoke.op_id, event.op_id)})"
        return None

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
    not_run: tuple[Mapping[str, Any], ...] = ()  # parts left out for the target, and why
    faults: tuple[FaultWindow, ...] = ()  # faults injected during the scenario, in order
    fees: Fees = NO_FEES  # the fees the target declared it takes on transfers

    @property
    def events(self) -> Sequence[Event]:
        return self.history


# ---------------------------------------------------------------------------------------
# Writing.


FLUSH_S_MAX = 0.05  # how long an event line may wait in the buffer before it is flushed
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


class HistoryWriter:
    """Appends history lines to a JSONL file, as they happen.

    Event lines are flushed together, at most ``FLUSH_S_MAX`` after the first of them
    was written (a write call per op was a tenth of the runner's CPU per op), and by
    ``flush``; every other line at once.

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
        self._unflushed_since_s: float | None = None  # monotonic time of the oldest one

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def begin(self, *, name: str, seed: int, params: Mapping[str, Any],
              users: Mapping[str, str], target_ids: Mapping[str, str],
              not_run: Sequence[Mapping[str, Any]] = (), fees: Fees = NO_FEES) -> None:
        """Open a scenario.

        ``not_run``: the parts left out for this target (``part``, ``reason``, and the
        ``provokes`` and ``checkers`` only they had), so a re-judgement agrees with the run;
        ``fees``, the target's fees, for the same reason.
        """
        assert self._scenario is None, f"scenario {self._scenario!r} is still open"
        self._scenario = name
        self._written = set()
        self._next_index = 0
        line: dict[str, Any] = {"type": "scenario", "name": name, "seed": seed,
                                "params": dict(params), "users": dict(users),
                                "target_ids": dict(target_ids)}
        if not_run:
            line["not_run"] = [dict(part) for part in not_run]
        if fees:
            line["fees"] = fees.record()
        self._line(line)

    def event(self, event: Event) -> None:
        assert self._scenario is not None, "begin a scenario first"
        assert event.index == self._next_index, (event.index, self._next_index)
        self._next_index += 1
        assert self._file is not None, "the writer is closed"
        self._file.write(_ENCODER.encode(event_to_json(event)) + "\n")
        now_s = time.monotonic()
        if self._unflushed_since_s is None:
            self._unflushed_since_s = now_s
        elif now_s - self._unflushed_since_s >= FLUSH_S_MAX:
            self.flush()

    def flush(self) -> None:
        """Put every line written so far in the file."""
        assert self._file is not None, "the writer is closed"
        self._file.flush()
        self._unflushed_since_s = None

    def initial(self, observation: Observation) -> None:
        self._once("initial", observation_to_json(observation))

    def observation(self, observation: Observation) -> None:
        self._once("observation", observation_to_json(observation))

    def truth(self, truth: ProviderTruth) -> None:
        self._once("truth", provider_truth_to_json(truth))

    def fault(self, window: FaultWindow) -> None:
        """One fault, once it has healed (or could not be)."""
        assert self._scenario is not None, "begin a scenario first"
        self._line(fault_to_json(window))

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
        self._file.write(_ENCODER.encode(data) + "\n")
        self.flush()


# ---------------------------------------------------------------------------------------
# Reading.


def load(path: str | Path, *, cut_last_line_ok: bool = True) -> list[ScenarioRun]:
    """Read every scenario of a history file, checking every line and the history invariants.

    Each line must be a JSON object of a known ``type`` with its required fields, each of
    the right type, and its events must keep the invariants ``History.append`` asserts.
    A scenario without observation, truth or end loads with those missing (``complete``
    False).

    Args:
        cut_last_line_ok: ignore a last line cut short by a crash (no newline, not JSON),
            as a report of a crashed run does; False makes it an error like any other.

    Raises:
        UsageError: the file cannot be read, or a line is not a valid history line; the
            message names the file and the line number of the first bad line.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read history {path}: {exc}") from exc
    runs: list[ScenarioRun] = []
    current: dict[str, Any] | None = None
    for number, line in enumerate(lines, start=1):
        cut_ok = cut_last_line_ok and number == len(lines)
        record = _parse_line(path, number, line, cut_ok=cut_ok)
        if record is None:
            continue
        try:
            current = _read_record(record, current, runs)
        except _BadLine as exc:
            raise UsageError(f"{path}:{number}: {exc}; the history file is damaged or was "
                             "not written by tokenchaos") from None
    if current is not None:
        runs.append(_finish(current))
    return runs


class _BadLine(Exception):
    """One history line is wrong; the message says how (``load`` adds file and line)."""


def _parse_line(path: Path, number: int, line: str, *, cut_ok: bool) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except ValueError as exc:
        if cut_ok and not line.endswith("\n"):
            return None  # the writer died in the middle of this line
        cut = "" if line.endswith("\n") else ", cut short (the run writing it crashed?)"
        raise UsageError(f"{path}:{number}: not a JSON line{cut} ({exc}); the history "
                         "file is damaged") from exc
    if not isinstance(record, dict) or not isinstance(record.get("type"), str):
        raise UsageError(f"{path}:{number}: not a history line (no \"type\")")
    return record


def _read_record(record: dict[str, Any], current: dict[str, Any] | None,
                 runs: list[ScenarioRun]) -> dict[str, Any] | None:
    """Apply one line; return the scenario still open after it. Raises ``_BadLine``."""
    kind = record["type"]
    if kind not in _LINE_TYPES:
        raise _BadLine(f"unknown line type {kind!r}; known: {', '.join(_LINE_TYPES)}")
    if kind == "scenario":
        if current is not None:
            runs.append(_finish(current))
        return _begin(record)
    if current is None:
        raise _BadLine(f"a {kind!r} line before any scenario line")
    _apply(current, record)
    if kind == "end":
        runs.append(_finish(current))
        return None
    return current


_LINE_TYPES = ("scenario", "event", "fault", "initial", "observation", "truth", "end")


def _begin(record: Mapping[str, Any]) -> dict[str, Any]:
    _require(record, "scenario line", {"name": str, "seed": int})
    for key in ("params", "users", "target_ids"):
        if record.get(key) is not None and not isinstance(record[key], dict):
            raise _BadLine(f"scenario line: {key} must be an object, not {record[key]!r}")
    for key in ("users", "target_ids"):
        for name, text in (record.get(key) or {}).items():
            if not isinstance(text, str):
                raise _BadLine(f"scenario line: {key}.{name} must be a string, not {text!r}")
    return {"name": record["name"], "seed": record["seed"],
            "params": dict(record.get("params") or {}),
            "users": dict(record.get("users") or {}),
            "target_ids": dict(record.get("target_ids") or {}),
            "not_run": _not_run(record.get("not_run")),
            "fees": _fees(record.get("fees")),
            "history": History()}


def _fees(record: Any) -> Fees:
    try:
        return Fees.from_record(record)
    except ValueError as exc:
        raise _BadLine(f"scenario line: {exc}") from exc


def _not_run(parts: Any) -> tuple[Mapping[str, Any], ...]:
    """The scenario line's ``not_run`` list, checked field by field."""
    if parts is None:
        return ()
    if not isinstance(parts, list):
        raise _BadLine(f"scenario line: not_run must be a list, not {parts!r}")
    checked = []
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("reason"), str) or (
                part.get("part") is not None and not isinstance(part["part"], str)):
            raise _BadLine(f"scenario line: not_run holds {part!r}; each is "
                           '{"part": text or null, "reason": text, "provokes": [...], '
                           '"checkers": [...]}')
        for key in ("provokes", "checkers"):
            names = part.get(key, [])
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise _BadLine(f"scenario line: not_run {key} must be a list of names, "
                               f"not {names!r}")
        checked.append({"part": part.get("part"), "reason": part["reason"],
                        "provokes": tuple(part.get("provokes", [])),
                        "checkers": tuple(part.get("checkers", []))})
    return tuple(checked)


def _apply(current: dict[str, Any], record: dict[str, Any]) -> None:
    kind = record["type"]
    if kind == "event":
        event = _event(record)
        problem = current["history"].problem(event)
        if problem is not None:
            raise _BadLine(f"event #{event.index}: {problem}")
        current["history"].append(event)
        return
    if kind == "fault":
        current["faults"] = (*current.get("faults", ()), _fault(record))
        return
    if kind in ("initial", "observation", "truth") and current.get(kind) is not None:
        raise _BadLine(f"a second {kind!r} line in scenario {current['name']!r}")
    if kind in ("initial", "observation"):
        current[kind] = _observation(record, kind)
    elif kind == "truth":
        current["truth"] = _truth(record)
    else:
        if record.get("stats") is not None and not isinstance(record["stats"], dict):
            raise _BadLine(f"end line: stats must be an object, not {record['stats']!r}")
        current["stats"] = dict(record.get("stats") or {})
        current["complete"] = True


def _finish(current: Mapping[str, Any]) -> ScenarioRun:
    return ScenarioRun(**current)


def _event(record: Mapping[str, Any]) -> Event:
    _require(record, "event line", {"index": int, "time_ns": int, "process": int, "kind": str,
                                    "f": str, "op_id": int})
    _optional(record, "event line", {"idempotency_key": str, "error": str, "status_code": int,
                                     "body_excerpt": str})
    if record["kind"] not in _KINDS or record["f"] not in _FS:
        bad, known = ("kind", _KINDS) if record["kind"] not in _KINDS else ("f", _FS)
        raise _BadLine(f"event line: {bad} = {record[bad]!r} is not one of "
                       f"{', '.join(sorted(known))}")
    value = record.get("value") or {}
    if not isinstance(value, dict) or not all(
            v is None or isinstance(v, str) or type(v) is int for v in value.values()):
        raise _BadLine(f"event line: value must be an object of ints and strings, "
                       f"not {value!r}")
    for key in ("index", "time_ns"):
        if record[key] < 0:
            raise _BadLine(f"event line: {key} = {record[key]} is negative")
    if record["kind"] in (Kind.INVOKE, Kind.OK) and record.get("error") is not None:
        raise _BadLine(f"event line: a {record['kind']} event has an error")
    for key in ("status_code", "body_excerpt"):
        if record["kind"] == Kind.INVOKE and record.get(key) is not None:
            raise _BadLine(f"event line: an invoke event has a {key}")
    excerpt = record.get("body_excerpt")
    if excerpt is not None and len(excerpt) > BODY_EXCERPT_CHARS_MAX:
        raise _BadLine(f"event line: body_excerpt has {len(excerpt)} characters, over the "
                       f"{BODY_EXCERPT_CHARS_MAX} a history keeps")
    return event_from_json(record)


_KINDS = frozenset(k.value for k in Kind)
_FS = frozenset(f.value for f in F)


def _fault(record: Mapping[str, Any]) -> FaultWindow:
    _require(record, "fault line", {"name": str, "kind": str, "description": str,
                                    "started_ns": int})
    _optional(record, "fault line", {"link": str, "healed_ns": int, "recovered_ns": int,
                                     "error": str, "attributes": dict, "wall_offset_ns": int})
    try:
        return fault_from_json(record)
    except (AssertionError, TypeError, ValueError) as exc:
        raise _BadLine(f"fault line {record.get('name')!r}: inconsistent times or "
                       f"attributes ({exc or 'assertion'})") from None


def _observation(record: Mapping[str, Any], kind: str) -> Observation:
    accounts = record.get("accounts", [])
    if not isinstance(accounts, list):
        raise _BadLine(f"{kind} line: accounts must be a list, not {accounts!r}")
    for item in accounts:
        _check_fields(AccountState, item, f"{kind} line: account")
    if record.get("totals") is not None:
        _check_fields(Totals, record["totals"], f"{kind} line: totals")
    return observation_from_json(record)


def _truth(record: Mapping[str, Any]) -> ProviderTruth:
    for key, cls in (("intents", IntentTruth), ("deliveries", Delivery)):
        items = record.get(key, [])
        if not isinstance(items, list):
            raise _BadLine(f"truth line: {key} must be a list, not {items!r}")
        for item in items:
            _check_fields(cls, item, f"truth line: {key[:-1]}")
    for key in ("event_types", "event_intents"):
        table = record.get(key) or {}
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise _BadLine(f"truth line: {key} must be an object of strings")
    _optional(record, "truth line", {"pending_deliveries_count": int})
    return provider_truth_from_json(record)


def _require(record: Mapping[str, Any], where: str, types: Mapping[str, type]) -> None:
    for key in types:
        if key not in record:
            raise _BadLine(f"{where} lacks {key!r}")
    _optional(record, where, types)


def _optional(record: Mapping[str, Any], where: str, types: Mapping[str, type]) -> None:
    for key, expected in types.items():
        value = record.get(key)
        if value is not None and not _is(value, expected):
            raise _BadLine(f"{where}: {key} = {value!r} must be {expected.__name__}")


def _is(value: object, expected: type) -> bool:
    """``isinstance``, except that a bool is not an int here (JSON true is not 1)."""
    if expected is int:
        return type(value) is int
    return isinstance(value, expected)


def _check_fields(cls: type, item: object, where: str) -> None:
    """An object with the required fields of dataclass ``cls``, each of its declared type."""
    if not isinstance(item, dict):
        raise _BadLine(f"{where} must be an object, not {item!r}")
    hints = typing.get_type_hints(cls)
    for spec in fields(cls):
        required = spec.default is MISSING and spec.default_factory is MISSING
        if spec.name not in item:
            if required:
                raise _BadLine(f"{where} lacks {spec.name!r}")
            continue
        allowed = _simple_types(hints[spec.name])
        if not any(_is(item[spec.name], t) for t in allowed):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise _BadLine(f"{where}: {spec.name} = {item[spec.name]!r} must be {names}")
        if isinstance(hints[spec.name], type) and issubclass(hints[spec.name], Enum) \
                and item[spec.name] not in {e.value for e in hints[spec.name]}:
            raise _BadLine(f"{where}: {spec.name} = {item[spec.name]!r} is not one of "
                           f"{', '.join(e.value for e in hints[spec.name])}")


def _simple_types(hint: Any) -> tuple[type, ...]:
    """The JSON-level types a field annotation admits: ``int | None`` -> (int, NoneType)."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, UnionType) \
        else (hint,)
    simple: list[type] = []
    for option in options:
        if isinstance(option, type) and issubclass(option, Enum):
            simple.append(str)
        else:
            simple.append(typing.get_origin(option) or option)
    return tuple(simple)


# ---------------------------------------------------------------------------------------
# Serialisers: each ``*_to_json`` is undone exactly by its ``*_from_json``.


def event_to_json(event: Event) -> dict[str, Any]:
    """One event line; ``body_excerpt`` only when the event has one (most have none)."""
    data = {"type": "event", "index": event.index, "time_ns": event.time_ns,
            "process": event.process, "kind": event.kind.value, "f": event.f.value,
            "op_id": event.op_id, "value": dict(event.value),
            "idempotency_key": event.idempotency_key, "error": event.error,
            "status_code": event.status_code}
    if event.body_excerpt is not None:
        data["body_excerpt"] = event.body_excerpt
    return data


def event_from_json(data: Mapping[str, Any]) -> Event:
    return Event(index=int(data["index"]), time_ns=int(data["time_ns"]),
                 process=int(data["process"]), kind=Kind(data["kind"]), f=F(data["f"]),
                 op_id=int(data["op_id"]), value=dict(data.get("value") or {}),
                 idempotency_key=data.get("idempotency_key"), error=data.get("error"),
                 status_code=data.get("status_code"), body_excerpt=data.get("body_excerpt"))


def fault_to_json(window: FaultWindow) -> dict[str, Any]:
    return {"type": "fault", "name": window.name, "kind": window.kind, "link": window.link,
            "description": window.description, "attributes": dict(window.attributes),
            "started_ns": window.started_ns, "healed_ns": window.healed_ns,
            "recovered_ns": window.recovered_ns, "error": window.error,
            "wall_offset_ns": window.wall_offset_ns}


def fault_from_json(data: Mapping[str, Any]) -> FaultWindow:
    attributes = data.get("attributes") or {}
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in attributes.values()):
        raise ValueError(f"fault attributes must be integers: {attributes!r}")
    return FaultWindow(name=data["name"], kind=data["kind"], link=data.get("link"),
                       description=data["description"], attributes=dict(attributes),
                       started_ns=int(data["started_ns"]), healed_ns=data.get("healed_ns"),
                       recovered_ns=data.get("recovered_ns"), error=data.get("error"),
                       wall_offset_ns=data.get("wall_offset_ns"))


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
    one add ``idempotency_key``, ``status_code`` and ``body_excerpt``. Values keep logical
    names.
    """
    ops = []
    for event in history:
        op: dict[str, Any] = {"type": event.kind.value, "f": event.f.value,
                              "value": dict(event.value), "process": event.process,
                              "time": event.time_ns, "index": event.index}
        for key in ("error", "idempotency_key", "status_code", "body_excerpt"):
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
