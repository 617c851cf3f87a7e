"""A synthetic run, seeded, for trying the report out and for testing it.

``demo_run(seed=..., ops_per_scenario=...)`` builds a plausible run of three scenarios
(one with broken invariants and anomalies that name real ops, one passing with sampled
totals, one undecided), its history lines in the ``history.jsonl`` format, and the
record. ``write_demo(out_dir)`` writes the history and renders the report from it, which
is how the rendering is exercised end to end without a target.

Everything is a pure function of the seed: no clock, no global ``random``.
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.history import event_to_json, observation_to_json, provider_truth_to_json
from harness.model import (
    AccountState,
    Anomaly,
    Delivery,
    DeliveryVariant,
    Event,
    F,
    IntentTruth,
    Kind,
    Observation,
    ProviderTruth,
    Verdict,
)
from harness.report.html import ReportPaths, write_report
from harness.report.record import RunRecord, Sample, ScenarioRecord, TargetInfo, iso_utc

__all__ = ["DemoRun", "demo_run", "write_demo"]

_WALL_START_NS = 1_780_000_000_000_000_000  # a fixed wall clock, so the demo is reproducible
_MS = 1_000_000
_PACKAGES = ((100, 500), (500, 2_500), (1_000, 5_000))  # tokens, cents


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoRun:
    """A synthetic run: its record and its history, one JSON object per line."""

    record: RunRecord
    history_lines: tuple[str, ...]


def demo_run(*, seed: int = 7, ops_per_scenario: int = 400) -> DemoRun:
    """A three-scenario run: ``concurrent-tips`` fails, ``dispute`` holds, ``forged-webhooks``
    is undecided."""
    assert ops_per_scenario >= 20, ops_per_scenario
    rng = random.Random(seed)
    lines: list[str] = []
    scenarios = []
    clock_ns = 0
    op_id_base = 0
    for name, shape in (("concurrent-tips", "broken"), ("dispute", "held"),
                        ("forged-webhooks", "undecided")):
        built = _Scenario(rng, name=name, seed=rng.randrange(10_000), start_ns=clock_ns,
                          op_id_base=op_id_base, ops_count=ops_per_scenario)
        built.generate()
        lines.extend(built.lines())
        scenarios.append(built.record(shape))
        clock_ns = built.end_ns + 50 * _MS
        op_id_base += len(built.ops)
    command = "tokenchaos run --suite smoke --target reference --seed 7"
    record = RunRecord(
        run_id=f"demo-{seed}", started_at=iso_utc(_WALL_START_NS),
        finished_at=iso_utc(_WALL_START_NS + clock_ns), tokenchaos_version="0.1.0",
        target=TargetInfo(profile="reference", service_url="http://127.0.0.1:8000",
                          provider_url="http://127.0.0.1:8001"),
        suite="smoke", command=command, valid=False, exit_code=1,
        scenarios=tuple(scenarios))
    return DemoRun(record=record, history_lines=tuple(lines))


def write_demo(out_dir: Path, *, seed: int = 7, ops_per_scenario: int = 400) -> ReportPaths:
    """Write a demo ``history.jsonl`` into ``out_dir`` and render its report there."""
    demo = demo_run(seed=seed, ops_per_scenario=ops_per_scenario)
    out_dir.mkdir(parents=True, exist_ok=True)
    history = out_dir / "history.jsonl"
    history.write_text("\n".join(demo.history_lines) + "\n", encoding="utf-8")
    return write_report(demo.record, history, out_dir)


@dataclass(slots=True)
class _Op:
    op_id: int
    process: int
    f: str
    value: dict[str, Any]
    start_ns: int
    end_ns: int
    kind: str
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    status_code: int | None = None


class _Scenario:
    """Generates one scenario's ops in time order, with a simple model of the balances."""

    def __init__(self, rng: random.Random, *, name: str, seed: int, start_ns: int,
                 op_id_base: int, ops_count: int) -> None:
        self.rng, self.name, self.seed = rng, name, seed
        self.start_ns, self.op_id_base, self.ops_count = start_ns, op_id_base, ops_count
        self.fans = [f"fan_{i}" for i in range(6)]
        self.creators = ["creator_0", "creator_1"]
        self.balances = dict.fromkeys(self.fans + self.creators, 0)
        self.ops: list[_Op] = []
        self.events: list[Event] = []
        self.intents: dict[str, dict[str, Any]] = {}
        self.deliveries: list[Delivery] = []
        self.samples: list[Sample] = []
        self.end_ns = start_ns

    def generate(self) -> None:
        processes_count = 8
        ready = [(self.start_ns + p * _MS, p) for p in range(processes_count)]
        next_process = processes_count
        for op_id in range(self.ops_count):
            start_ns, process = heapq.heappop(ready)
            op = self._op(op_id, process, start_ns)
            self.ops.append(op)
            if op.kind == "info":  # a fresh process after an indeterminate op, as Jepsen does
                process, next_process = next_process, next_process + 1
            heapq.heappush(ready, (op.end_ns + self.rng.randrange(1, 15) * _MS, process))
            if op_id % 20 == 0:
                self.samples.append(Sample(op.end_ns, sum(self.balances.values()), 0))
        self.end_ns = max(op.end_ns for op in self.ops)
        self._index()

    def _op(self, op_id: int, process: int, start_ns: int) -> _Op:
        rng = self.rng
        latency_ns = int(rng.lognormvariate(2.3, 0.5) * _MS)
        if rng.random() < 0.01:
            latency_ns += rng.randrange(200, 600) * _MS  # a lock wait now and then
        op = _Op(op_id=op_id, process=process, f="", value={}, start_ns=start_ns,
                 end_ns=start_ns + latency_ns, kind="ok")
        roll = rng.random()
        if op_id < 12 or roll < 0.15:
            self._purchase(op)
        elif roll < 0.7:
            self._tip(op)
        elif roll < 0.75 and self.intents:
            self._refund(op)
        else:
            user = rng.choice(self.fans + self.creators)
            op.f, op.value = "read_balance", {"user": user}
            op.result = {"balance_tokens": self.balances[user], "debt_tokens": 0,
                         "status": "active"}
        if op.kind == "ok" and rng.random() < 0.02:
            op.kind, op.error, op.result, op.status_code = "info", "read_timeout", {}, None
            op.end_ns = start_ns + 2_000 * _MS
        return op

    def _purchase(self, op: _Op) -> None:
        user = self.rng.choice(self.fans)
        tokens, cents = self.rng.choice(_PACKAGES)
        intent_id = f"pi_{self.name[:3]}{op.op_id:05d}"
        op.f = "purchase"
        op.value = {"user": user, "purchase": f"p_{op.op_id}", "amount_tokens": tokens,
                    "payment_method": "pm_card_visa"}
        op.result = {"intent_id": intent_id, "purchase_status": "succeeded"}
        op.status_code = 201
        self.intents[intent_id] = {"intent_id": intent_id, "user": user, "amount_cents": cents,
                                   "minted_tokens": tokens, "status": "succeeded"}
        self.balances[user] += tokens
        self._deliver("payment_intent.succeeded", intent_id, op.end_ns + 3 * _MS)

    def _tip(self, op: _Op) -> None:
        sender = self.rng.choice(self.fans)
        recipient = self.rng.choice(self.creators)
        amount = self.rng.choice((10, 25, 50, 100))
        op.f, op.value = "tip", {"sender": sender, "recipient": recipient,
                                 "amount_tokens": amount}
        if self.balances[sender] < amount:
            op.kind, op.error, op.status_code = "fail", "insufficient_funds", 402
            return
        self.balances[sender] -= amount
        self.balances[recipient] += amount
        op.result = {"tip_id": f"t_{op.op_id}", "balance_tokens": self.balances[sender]}
        op.status_code = 201

    def _refund(self, op: _Op) -> None:
        intent_id = self.rng.choice(sorted(self.intents))
        intent = self.intents[intent_id]
        amount_cents = intent["amount_cents"] // 2
        intent["refunded_cents"] = min(intent.get("refunded_cents", 0) + amount_cents,
                                       intent["amount_cents"])
        op.f = "refund"
        op.value = {"purchase": f"p_{intent_id[-5:]}", "amount_cents": amount_cents}
        op.result = {"refund_id": f"re_{op.op_id}", "intent_id": intent_id}
        user = intent["user"]
        self.balances[user] = max(self.balances[user] - intent["minted_tokens"] // 2, 0)
        self._deliver("charge.refunded", intent_id, op.end_ns + 2 * _MS)

    def _deliver(self, event_type: str, intent_id: str, at_ns: int) -> None:
        event_id = f"evt_{len(self.deliveries):05d}{intent_id[-5:]}"
        copies = 2 if self.name == "concurrent-tips" and event_type.startswith("payment") else 1
        for copy in range(copies):
            started = _WALL_START_NS + at_ns + copy * _MS
            self.deliveries.append(Delivery(
                index=len(self.deliveries), event_id=event_id, event_type=event_type,
                intent_id=intent_id,
                variant=DeliveryVariant.GENUINE if copy == 0 else DeliveryVariant.DUPLICATE,
                status_code=200, started_ns=started, finished_ns=started + 4 * _MS))

    def _index(self) -> None:
        raw = []
        for op in self.ops:
            raw.append((op.start_ns, 0, op, Kind.INVOKE))
            raw.append((op.end_ns, 1, op, Kind(op.kind)))
        raw.sort(key=lambda r: (r[0], r[1], r[2].op_id))
        for i, (time_ns, _, op, kind) in enumerate(raw):
            value = dict(op.value) if kind == Kind.INVOKE else {**op.value, **op.result}
            self.events.append(Event(
                index=i, time_ns=time_ns, process=op.process, kind=kind, f=F(op.f),
                op_id=self.op_id_base + op.op_id, value=value,
                idempotency_key=f"k{op.op_id}" if op.f in ("tip", "purchase") else None,
                error=None if kind in (Kind.INVOKE, Kind.OK) else op.error,
                status_code=None if kind == Kind.INVOKE else op.status_code))

    def lines(self) -> list[str]:
        users = {u: "fan" for u in self.fans} | {c: "creator" for c in self.creators}
        intents = {i: IntentTruth(**d) for i, d in self.intents.items()}
        truth = ProviderTruth(intents=intents, deliveries=tuple(self.deliveries))
        accounts = {u: AccountState(user=u, balance_tokens=b) for u, b in self.balances.items()}
        records: list[Mapping[str, Any]] = [
            {"type": "scenario", "name": self.name, "seed": self.seed,
             "params": {"seed": self.seed, "scale": 1, "concurrency": 8}, "users": users,
             "target_ids": {u: str(i + 1) for i, u in enumerate(users)}},
            *(event_to_json(e) for e in self.events),
            {"type": "observation", **observation_to_json(Observation(accounts=accounts))},
            {"type": "truth", **provider_truth_to_json(truth)},
            {"type": "end", "stats": self.stats()}]
        return [json.dumps(r, separators=(",", ":")) for r in records]

    def stats(self) -> dict[str, int]:
        counts = {"ok_count": 0, "fail_count": 0, "info_count": 0}
        for op in self.ops:
            counts[f"{op.kind}_count"] += 1
        return counts

    def record(self, shape: str) -> ScenarioRecord:
        return ScenarioRecord(
            name=self.name, seed=self.seed, params={"seed": self.seed, "scale": 1,
                                                    "concurrency": 8},
            started_ns=self.start_ns, duration_s=(self.end_ns - self.start_ns) / 1e9,
            ops_count=len(self.ops), stats=self.stats(), verdicts=self._verdicts(shape),
            reproduce=(f"tokenchaos run --scenario {self.name} --seed {self.seed} "
                       "--target reference"),
            samples=tuple(self.samples) if shape == "held" else ())

    def _verdicts(self, shape: str) -> dict[str, Verdict]:
        held = Verdict(valid=True, counts={"accounts": len(self.balances)})
        verdicts = {name: held for name in ("non_negative", "conservation",
                                            "exactly_once_credit", "reconciliation",
                                            "idempotency", "ledger_drift", "errors",
                                            "coverage")}
        if shape == "broken":
            verdicts["conservation"] = Verdict(valid=False, counts={"drift_tokens": 100},
                                               anomalies=(self._race_anomaly(),))
            verdicts["exactly_once_credit"] = Verdict(
                valid=False, counts={"intents": len(self.intents), "duplicated": 1},
                anomalies=(self._duplicate_anomaly(),))
        if shape == "undecided":
            verdicts["coverage"] = Verdict(
                valid="unknown", counts={"tags_missing": 1},
                note="Never provoked: stale_rejected (no stale webhook was delivered).")
        return verdicts

    def _race_anomaly(self) -> Anomaly:
        """Two overlapping tips by one sender, both acknowledged: the lost-update shape."""
        tips = [op for op in self.ops if op.f == "tip" and op.kind == "ok"]
        first, second = next(((a, b) for a in tips for b in tips
                              if a.op_id < b.op_id and a.value["sender"] == b.value["sender"]
                              and b.start_ns < a.end_ns), (tips[0], tips[1]))
        indexes = tuple(sorted(self._completion_index(op) for op in (first, second)))
        sender = str(first.value["sender"])
        return Anomaly(
            kind="lost_update", event_indexes=indexes, expected=1_000, observed=1_100,
            user=sender,
            explanation=(f"Let A be tip #{indexes[0]} and B be tip #{indexes[1]}, both from "
                         f"{sender} and overlapping in time. Both were acknowledged, but the "
                         f"final balances sum to 100 tokens more than were minted "
                         "(only one of the two debits was applied)."))

    def _duplicate_anomaly(self) -> Anomaly:
        purchase = next(op for op in self.ops if op.f == "purchase" and op.kind == "ok")
        intent_id = purchase.result["intent_id"]
        copies = tuple(d.index for d in self.deliveries if d.intent_id == intent_id)[:2]
        index = self._completion_index(purchase)
        tokens = purchase.value["amount_tokens"]
        return Anomaly(
            kind="duplicated_credit", event_indexes=(index,), expected=tokens,
            observed=2 * tokens, user=str(purchase.value["user"]), delivery_indexes=copies,
            explanation=(f"Let A be purchase #{index} (intent {intent_id}, {tokens} tokens), "
                         f"whose success webhook was delivered twice (deliveries "
                         f"{copies[0]}, {copies[-1]}). Then {purchase.value['user']} was "
                         f"credited {2 * tokens} tokens, not {tokens}."))

    def _completion_index(self, op: _Op) -> int:
        op_id = self.op_id_base + op.op_id
        return next(e.index for e in self.events if e.op_id == op_id and e.kind != Kind.INVOKE)
