"""calls: per-minute charges are idempotent per minute and stop when the call ends.

One pass over the history, in order, per call:

- a minute is charged at most once: two acknowledged charges of one minute with
  different charge ids are a double charge (their money is judged by reconciliation);
- no charge invoked after the call ended is acknowledged: ended means an acknowledged
  ``call_end`` had completed, or a charge of that call had been refused for funds
  (``402`` ends the call);
- the acknowledged charges of a call are no more than the distinct minutes requested.

A charge answered OK with ``replayed = 1`` (the profile's replay rule recognised the
answer as a replay or a no-op) is the first answer of that minute again: it is no new
charge, whenever it was sent. So is a charge answered OK with a charge id already
acknowledged for that minute of that call, whatever key it was sent with: a service that
dedupes per minute answers a re-sent minute with its first charge. A charge answered OK
with no charge id and no replay mark is a charge (nothing says otherwise); when that
makes too many, the anomaly says how to declare the service's replay answer.

Memory: the calls, and per call its minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.checkers.base import (
    REPLAYED,
    CheckInput,
    Sampler,
    conclude,
    describe_op,
    plural,
    value_int,
    value_str,
)
from harness.model import Anomaly, Event, F, Kind, Verdict

__all__ = ["check_calls"]

_CALL_FS = frozenset({F.CALL_CHARGE, F.CALL_END, F.CALL_OPEN})
_REFUSED_FOR_FUNDS = "insufficient_funds"
_INDEXES_MAX = 16  # ops named in one anomaly


@dataclass(slots=True)
class _Call:
    ended_by: str | None = None  # prose naming what ended it
    ended_index: int | None = None
    minutes_requested: set[int] = field(default_factory=set)
    charges: dict[int, dict[str, int]] = field(default_factory=dict)  # minute -> id -> index
    acknowledged_without_id: int = 0
    acknowledged_without_id_indexes: list[int] = field(default_factory=list)


def check_calls(inp: CheckInput) -> Verdict:
    """Check per-call charges against minutes and against the call's end.

    Anomaly kinds: ``minute_charged_twice``, ``charge_after_end`` (after an acknowledged
    end), ``charge_after_refusal`` (after a charge refused for funds), ``too_many_charges``.

    Count keys: ``calls``, ``charges_attempted``, ``charges_acknowledged``,
    ``charges_refused_for_funds``, ``charges_refused_as_ended``, ``charges_replayed``
    (acknowledged as a replay, or with the minute's charge id again: no new charge).
    """
    sampler = Sampler()
    calls: dict[str, _Call] = {}
    pending: dict[int, tuple[Event, str | None, int | None]] = {}
    counts = {"calls": 0, "charges_attempted": 0, "charges_acknowledged": 0,
              "charges_refused_for_funds": 0, "charges_refused_as_ended": 0,
              "charges_replayed": 0}
    for event in inp.history:
        if event.f not in _CALL_FS:
            continue
        name = value_str(event.value, "call") or ""
        call = calls.get(name)
        if call is None:
            call = calls[name] = _Call()
        if event.kind == Kind.INVOKE:
            if event.f == F.CALL_CHARGE:
                counts["charges_attempted"] += 1
                call.minutes_requested.add(value_int(event.value, "minute"))
            pending[event.op_id] = (event, call.ended_by, call.ended_index)
            continue
        invoke, ended_by, ended_index = pending.pop(event.op_id)
        if event.f == F.CALL_END and event.kind == Kind.OK and call.ended_by is None:
            call.ended_by = f"call end #{invoke.index} had been acknowledged"
            call.ended_index = event.index
        elif event.f == F.CALL_CHARGE:
            _complete_charge(name, call, invoke, event, ended_by, ended_index, counts, sampler)
    counts["calls"] = len(calls)
    for name, call in calls.items():
        _check_counts(name, call, sampler)
    checked = counts["charges_attempted"] > 0
    return conclude(sampler, counts, checked=checked,
                    unknown_note=None if checked else "no call was charged")


def _complete_charge(name: str, call: _Call, invoke: Event, event: Event,
                     ended_by: str | None, ended_index: int | None,
                     counts: dict[str, int], sampler: Sampler) -> None:
    what = describe_op(F.CALL_CHARGE, invoke.index, invoke.value)
    if event.kind == Kind.FAIL:
        if event.error == _REFUSED_FOR_FUNDS:
            counts["charges_refused_for_funds"] += 1
            if call.ended_by is None:
                call.ended_by = f"{what} had been refused for funds"
                call.ended_index = event.index
        elif event.error == "call_ended":
            counts["charges_refused_as_ended"] += 1
        return
    if event.kind != Kind.OK:
        return
    if value_int(event.value, REPLAYED) == 1:
        counts["charges_replayed"] += 1  # the minute's first answer again: nothing new
        return
    minute = value_int(invoke.value, "minute")
    charge_id = event.value.get("charge_id")
    if charge_id is not None and str(charge_id) in call.charges.get(minute, {}):
        # The minute's charge, acknowledged before under this id, answered again (a new
        # key need not make a new charge): nothing new was charged, even after the end.
        counts["charges_replayed"] += 1
        return
    counts["charges_acknowledged"] += 1
    if ended_by is not None:
        kind = "charge_after_refusal" if "refused" in ended_by else "charge_after_end"
        text = (f"Let A be {what}. It was sent after {ended_by} (#{ended_index}), so call "
                f"{name} was over, yet A was acknowledged instead of refused with call_ended.")
        sampler.add(Anomaly(kind=kind, event_indexes=(ended_index or 0, invoke.index,
                                                      event.index),
                            expected="call_ended", observed="ok", explanation=text,
                            user=value_str(invoke.value, "user")))
    if charge_id is None:
        call.acknowledged_without_id += 1
        if len(call.acknowledged_without_id_indexes) < _INDEXES_MAX:
            call.acknowledged_without_id_indexes.append(invoke.index)
        return
    by_id = call.charges.setdefault(minute, {})
    by_id[str(charge_id)] = invoke.index
    if len(by_id) == 2:
        (first_id, first_index), (second_id, second_index) = list(by_id.items())[:2]
        text = (f"Let A be call charge #{first_index} and B be call charge #{second_index}, "
                f"both for minute {minute} of call {name}. Then both were acknowledged, as "
                f"charges {first_id!r} and {second_id!r}: the minute was charged twice.")
        sampler.add(Anomaly(kind="minute_charged_twice",
                            event_indexes=(first_index, second_index), expected=1, observed=2,
                            explanation=text, user=value_str(invoke.value, "user")))


def _check_counts(name: str, call: _Call, sampler: Sampler) -> None:
    charged = sum(len(ids) for ids in call.charges.values()) + call.acknowledged_without_id
    requested = len(call.minutes_requested)
    if charged <= requested or any(len(ids) > 1 for ids in call.charges.values()):
        return  # a minute charged twice is already reported
    indexes = tuple(sorted({i for ids in call.charges.values() for i in ids.values()}
                           | set(call.acknowledged_without_id_indexes)))[:_INDEXES_MAX]
    text = (f"Call {name} asked for {requested} distinct minute(s) but {charged} charges "
            "were acknowledged.")
    if call.acknowledged_without_id:
        text += (f" {plural(call.acknowledged_without_id, 'charge')} answered OK with no "
                 "charge id and no replay mark counted as new charges; if the service "
                 "answers a re-sent minute that way, declare its replay answer in the "
                 "profile ([ops.call_charge] replay = { header = ..., equals = ... } or "
                 "{ body = ..., equals = ... }).")
    sampler.add(Anomaly(kind="too_many_charges", event_indexes=indexes, expected=requested,
                        observed=charged, explanation=text), badness=charged - requested)
