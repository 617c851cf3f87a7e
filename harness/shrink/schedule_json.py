"""A recorded schedule: a scenario's steps and users as plain data, and its JSON form.

A scenario's schedule is a pure function of its seed and parameters; recording it fixes
the steps so they can be cut down and replayed without the generator. The JSON form is
what the written pytest file carries, so it must read back into the same steps. Faults
(``Inject``, ``Heal``) are not recorded: a schedule that needs one cannot be replayed by
itself, and ``recorded_from_steps`` refuses it. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from harness.errors import UsageError
from harness.model import F, Op
from harness.provider.policy import DeliveryPolicy
from harness.schedule import Batch, Heal, Inject, Pause, SetPolicy, Settle, Step

__all__ = ["SCHEDULE_VERSION", "Recorded", "recorded_from_json", "recorded_from_steps",
           "recorded_to_json"]

SCHEDULE_VERSION = 1
STEPS_RECORDED_MAX = 100_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """One scenario's schedule, fixed: who takes part, the steps, and what must hold."""

    scenario: str  # the scenario it was recorded from, "concurrent-tips"
    seed: int
    users: Mapping[str, str]  # logical name -> "fan" | "creator"
    steps: tuple[Step, ...]
    checker: str  # the checker that broke: "conservation"
    anomaly_kind: str  # and the kind of anomaly it found: "conservation_broken"

    @property
    def ops_count(self) -> int:
        """Ops over every batch of the schedule."""
        return sum(len(step.ops) for step in self.steps if isinstance(step, Batch))

    def with_batches(self, batches: Sequence[tuple[Op, ...]]) -> Recorded:
        """This schedule with its batches, in order, replaced by ``batches`` (one per batch
        step; an empty one drops that step), and only the users its ops still name."""
        batch_count = sum(1 for step in self.steps if isinstance(step, Batch))
        assert len(batches) == batch_count, (len(batches), batch_count)
        pending = iter(batches)
        steps: list[Step] = []
        for step in self.steps:
            if not isinstance(step, Batch):
                steps.append(step)
                continue
            ops = next(pending)
            if ops:
                steps.append(replace(step, ops=tuple(ops)))
        named = {value for step in steps if isinstance(step, Batch)
                 for op in step.ops for value in op.value.values() if isinstance(value, str)}
        users = {name: kind for name, kind in self.users.items() if name in named}
        return replace(self, steps=tuple(steps), users=users)

    def batches(self) -> tuple[tuple[Op, ...], ...]:
        """The ops of each batch step, in order."""
        return tuple(step.ops for step in self.steps if isinstance(step, Batch))


def recorded_from_steps(*, scenario: str, seed: int, users: Mapping[str, str],
                        steps: Sequence[Step], checker: str, anomaly_kind: str) -> Recorded:
    """Fix a scenario's steps as a schedule.

    Raises:
        UsageError: the scenario injects faults, or yields more than STEPS_RECORDED_MAX
            steps.
    """
    if len(steps) > STEPS_RECORDED_MAX:
        raise UsageError(f"scenario {scenario} yields {len(steps)} steps, over "
                         f"{STEPS_RECORDED_MAX}; shrink a run of a smaller --scale")
    if any(isinstance(step, Inject | Heal) for step in steps):
        raise UsageError(f"scenario {scenario} injects faults, and a shrunk schedule is "
                         "replayed without a nemesis: shrink a scenario without faults")
    return Recorded(scenario=scenario, seed=seed, users=dict(users), steps=tuple(steps),
                    checker=checker, anomaly_kind=anomaly_kind)


def recorded_to_json(recorded: Recorded) -> dict[str, Any]:
    """The schedule as JSON values (see ``recorded_from_json``)."""
    return {"schedule_version": SCHEDULE_VERSION, "scenario": recorded.scenario,
            "seed": recorded.seed, "users": dict(recorded.users),
            "checker": recorded.checker, "anomaly_kind": recorded.anomaly_kind,
            "steps": [_step_json(step) for step in recorded.steps]}


def recorded_from_json(data: Mapping[str, Any]) -> Recorded:
    """Read a schedule written by ``recorded_to_json``.

    Raises:
        UsageError: another version, or a step or op that is not well formed.
    """
    if data.get("schedule_version") != SCHEDULE_VERSION:
        raise UsageError(f"schedule_version {data.get('schedule_version')!r} is not "
                         f"{SCHEDULE_VERSION}: write the schedule again with this tokenchaos")
    try:
        steps = tuple(_step_from_json(step) for step in data["steps"])
        return recorded_from_steps(
            scenario=str(data["scenario"]), seed=int(data["seed"]),
            users={str(k): str(v) for k, v in dict(data["users"]).items()}, steps=steps,
            checker=str(data["checker"]), anomaly_kind=str(data["anomaly_kind"]))
    except (KeyError, TypeError, ValueError, AssertionError) as exc:
        raise UsageError(f"not a well-formed schedule: {exc!r}") from exc


def _step_json(step: Step) -> dict[str, Any]:
    if isinstance(step, Batch):
        return {"batch": [_op_json(op) for op in step.ops], "window": step.window}
    if isinstance(step, Settle):
        return {"settle": True}
    if isinstance(step, Pause):
        return {"pause_ms": step.ms}
    if isinstance(step, SetPolicy):
        return {"policy": step.policy.to_json()}
    raise AssertionError(f"not a recordable step: {step!r}")


def _step_from_json(data: Mapping[str, Any]) -> Step:
    if "batch" in data:
        window = data.get("window")
        return Batch(ops=tuple(_op_from_json(op) for op in data["batch"]),
                     window=None if window is None else int(window))
    if "settle" in data:
        return Settle()
    if "pause_ms" in data:
        return Pause(ms=int(data["pause_ms"]))
    if "policy" in data:
        return SetPolicy(policy=DeliveryPolicy.from_json(data["policy"]))
    raise ValueError(f"unknown step {sorted(data)}")


def _op_json(op: Op) -> dict[str, Any]:
    return {"id": op.id, "f": op.f.value, "value": dict(op.value),
            "idempotency_key": op.idempotency_key}


def _op_from_json(data: Mapping[str, Any]) -> Op:
    value = {str(k): v for k, v in dict(data["value"]).items()}
    for k, v in value.items():
        if v is not None and not isinstance(v, int | str):
            raise ValueError(f"op value {k} = {v!r} is not an int, a string or null")
    key = data.get("idempotency_key")
    return Op(id=int(data["id"]), f=F(data["f"]), value=value,
              idempotency_key=None if key is None else str(key))
