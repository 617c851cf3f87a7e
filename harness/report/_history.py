"""A small, lenient reader of ``history.jsonl`` for the report: scenarios, events, truth.

The report only reads a history; it never writes one. The file is a sequence of JSON
lines tagged by ``"type"``: ``scenario`` opens a scenario, ``event`` lines follow, then
``initial``, ``observation``, ``truth`` and ``end`` close it. A crashed run still loads:
a torn last line is ignored, and a scenario without its closing lines keeps ``None``
there. Lines of a type this reader does not know are skipped, so a newer writer does not
break an older report.

Nothing here judges or renders.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

__all__ = ["ScenarioRun", "load_history"]

# Metadata keys the known target profiles use for the tokens an intent mints.
_TOKENS_KEYS = (("tokens",), ("tokenAmount", "bonusTokens"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioRun:
    """One scenario as its history recorded it."""

    name: str
    seed: int
    params: Mapping[str, Any] = field(default_factory=dict)
    users: Mapping[str, str] = field(default_factory=dict)  # logical name -> kind
    events: tuple[Event, ...] = ()
    initial: Observation | None = None
    observation: Observation | None = None
    truth: ProviderTruth | None = None
    stats: Mapping[str, Any] | None = None  # None: the scenario never ended


def load_history(path: Path) -> list[ScenarioRun]:
    """Every scenario in a ``history.jsonl``, in file order.

    Raises:
        UsageError: the file cannot be read, or a line other than the last is not JSON.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read history {path}: {exc}") from exc
    runs: list[ScenarioRun] = []
    builder: _Builder | None = None
    for number, record in _records(lines, path):
        kind = record.get("type")
        if kind == "scenario":
            if builder is not None:
                runs.append(builder.build())
            builder = _Builder(record)
        elif builder is None:
            raise UsageError(f"{path}:{number}: a {kind!r} line before any scenario line")
        else:
            builder.add(record)
    if builder is not None:
        runs.append(builder.build())
    return runs


def _records(lines: list[str], path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except ValueError as exc:
            if number == len(lines):
                return  # torn by a crash mid-write: everything before it still counts
            raise UsageError(f"{path}:{number}: not JSON ({exc})") from exc


class _Builder:
    """Collects the lines of one scenario."""

    def __init__(self, header: Mapping[str, Any]) -> None:
        self.header = header
        self.events: list[Event] = []
        self.closing: dict[str, Any] = {}

    def add(self, record: Mapping[str, Any]) -> None:
        kind = record.get("type")
        if kind == "event":
            self.events.append(_event(record))
        elif kind in ("initial", "observation", "truth", "end"):
            self.closing[str(kind)] = record

    def build(self) -> ScenarioRun:
        end = self.closing.get("end")
        return ScenarioRun(
            name=str(self.header.get("name", "?")),
            seed=int(self.header.get("seed", 0)),
            params=dict(self.header.get("params") or {}),
            users=dict(self.header.get("users") or {}),
            events=tuple(self.events),
            initial=_observation(self.closing.get("initial")),
            observation=_observation(self.closing.get("observation")),
            truth=_truth(self.closing.get("truth")),
            stats=dict(end.get("stats") or {}) if end is not None else None,
        )


def _event(data: Mapping[str, Any]) -> Event:
    return Event(
        index=int(data["index"]),
        time_ns=int(data["time_ns"]),
        process=int(data["process"]),
        kind=Kind(data["kind"]),
        f=F(data["f"]),
        op_id=int(data["op_id"]),
        value=dict(data.get("value") or {}),
        idempotency_key=data.get("idempotency_key"),
        error=data.get("error"),
        status_code=data.get("status_code"),
    )


def _observation(data: Mapping[str, Any] | None) -> Observation | None:
    if data is None:
        return None
    accounts = data.get("accounts") or {}
    if isinstance(accounts, list):  # a list of accounts instead of a mapping by user
        accounts = {a["user"]: a for a in accounts}
    known = set(AccountState.__dataclass_fields__)
    states = {str(user): AccountState(**{k: v for k, v in a.items() if k in known})
              for user, a in accounts.items()}
    totals = data.get("totals")
    return Observation(accounts=states, totals=Totals(**totals) if totals else None)


def _truth(data: Mapping[str, Any] | None) -> ProviderTruth | None:
    """The provider's truth, from either ProviderTruth's own fields or the provider's JSON."""
    if data is None:
        return None
    intents_data = data.get("intents") or {}
    if isinstance(intents_data, Mapping):
        known = set(IntentTruth.__dataclass_fields__)
        intents = {str(i): IntentTruth(**{k: v for k, v in d.items() if k in known})
                   for i, d in intents_data.items()}
    else:
        intents = {d["id"]: _raw_intent(d) for d in intents_data}
    deliveries = tuple(_delivery(d) for d in data.get("deliveries") or ())
    return ProviderTruth(
        intents=intents,
        deliveries=deliveries,
        event_types=dict(data.get("event_types") or {}),
        event_intents=dict(data.get("event_intents") or {}),
        pending_deliveries_count=int(data.get("pending_deliveries_count")
                                     or data.get("pending_deliveries") or 0),
    )


def _raw_intent(data: Mapping[str, Any]) -> IntentTruth:
    """An intent in the provider's own JSON; minted tokens read from the usual metadata keys."""
    metadata = data.get("metadata") or {}
    minted_tokens = 0
    for keys in _TOKENS_KEYS:
        if all(k in metadata for k in keys):
            minted_tokens = sum(int(metadata[k] or 0) for k in keys)
            break
    dispute = data.get("dispute") or {}
    return IntentTruth(
        intent_id=str(data["id"]),
        user=metadata.get("user_id") or metadata.get("userId"),
        amount_cents=int(data.get("amount") or 0),
        minted_tokens=minted_tokens,
        status=str(data.get("status", "unknown")),
        refunded_cents=int(data.get("amount_refunded") or 0),
        dispute_status=dispute.get("status"),
        disputed_cents=int(dispute.get("amount") or 0),
    )


def _delivery(data: Mapping[str, Any]) -> Delivery:
    return Delivery(
        index=int(data["index"]),
        event_id=str(data["event_id"]),
        event_type=str(data["event_type"]),
        intent_id=data.get("intent_id"),
        variant=DeliveryVariant(data["variant"]),
        status_code=data.get("status_code"),
        started_ns=int(data["started_ns"]),
        finished_ns=int(data["finished_ns"]),
        error=data.get("error"),
    )
