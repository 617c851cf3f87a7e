"""idempotency: a retried request is answered the same; a reused key is refused.

Ops are grouped by (op kind, sender, idempotency key). Within a group:

- ops with the same body are one request sent several times: every acknowledged one must
  carry the same answer (``tip_id``, ``charge_id``, ``intent_id``, ``call_id``). Whether
  it was also *applied* once is a matter of money, which ``reconciliation`` and
  ``conservation`` judge;
- an op with another body reuses the key for a different request: it must be refused
  (``409 idempotency_conflict``), so at most one body of a key may be acknowledged.

An OK answer marked ``replayed = 1`` (the profile's replay rule matched) is the first
answer again: whatever id it carries, it is the same answer, and it is counted as a
recognised replay. A replay mark on a key this sender had not used before is an anomaly:
the service answered as if it had seen the request, so it replayed another request's
answer (a key deduplicated across accounts, or a stale cache) and applied nothing.

Two passes: the first counts each key's uses (by sender only for a key whose text was
sent twice, ``key_uses``) and notes the ops of such keys and the marked replays, so the
second looks at those alone and remembers only reused keys (a few indexes per body);
memory is bounded by the keys and the ops noted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from harness.checkers.base import (
    REPLAYED,
    CheckInput,
    OpPair,
    Sampler,
    conclude,
    describe_op,
    is_replay,
    key_uses,
    op_pairs,
)
from harness.model import Anomaly, Event, F, Kind, Value, Verdict

__all__ = ["ANSWER_ID_FIELDS", "answer_id", "check_idempotency", "same_answer", "sender_of"]

ANSWER_ID_FIELDS: dict[F, str] = {
    F.TIP: "tip_id",
    F.CALL_CHARGE: "charge_id",
    F.PURCHASE: "intent_id",
    F.CALL_OPEN: "call_id",
}
_CONFLICT = "idempotency_conflict"

# Enum members read once per op, as module constants: ``Kind.OK`` is an attribute
# lookup on an Enum class, several times slower than reading a global.
_FAIL, _CHARGE = Kind.FAIL, F.CALL_CHARGE


@dataclass(slots=True)
class _Body:
    """The ops of one key that carried one body."""

    label: str  # the first op, described
    first_index: int
    answers: dict[str, int] = field(default_factory=dict)  # answer id -> first op index
    ok_indexes: list[int] = field(default_factory=list)
    ops_count: int = 0


@dataclass(slots=True)
class _Key:
    bodies: list[tuple[Value, _Body]] = field(default_factory=list)  # body -> its ops
    ops_count: int = 0

    def body(self, pair: OpPair) -> _Body:
        value = pair.invoke.value
        for known, body in self.bodies:
            if known == value:
                return body
        body = _Body(label=describe_op(pair.f, pair.index, value), first_index=pair.index)
        self.bodies.append((value, body))
        return body


def check_idempotency(inp: CheckInput) -> Verdict:
    """Check the answers of ops that share an idempotency key.

    Anomaly kinds: ``replay_answered_differently`` (one request, two different answers:
    it was applied twice), ``key_reuse_accepted`` (a key reused with another body was
    acknowledged instead of refused), ``replay_of_nothing`` (answered as a replay though
    this sender sent that key once only, and, for a call charge, that minute once only).

    Count keys: ``keys``, ``keys_reused``, ``replays_acknowledged``,
    ``replays_recognised`` (answers marked as replays), ``conflicts_rejected``,
    ``answers_without_id``.
    """
    sampler = Sampler()
    counts = {"keys": 0, "keys_reused": 0, "replays_acknowledged": 0,
              "replays_recognised": 0, "conflicts_rejected": 0, "answers_without_id": 0}
    uses, minute_uses, noted = _first_pass(inp, counts)
    keys: dict[tuple[F, str | None, str], _Key] = {}
    for pair, replayed in noted:
        invoke = pair.invoke
        name = (invoke.f, sender_of(invoke.value), cast(str, invoke.idempotency_key))
        if replayed:
            counts["replays_recognised"] += 1
            # Only a request sent once can replay nothing: with two in flight, either
            # may get the first answer and the other its replay.
            minute = _minute(pair.f, invoke.value)
            if uses.get(name, 1) == 1 and (minute is None or minute_uses[minute] == 1):
                _replay_of_nothing(pair, name, sampler)
        if uses.get(name, 1) < 2:
            continue
        entry = keys.setdefault(name, _Key())
        entry.ops_count += 1
        body = entry.body(pair)
        body.ops_count += 1
        _record(pair, body, counts)
    for (f, sender, key), entry in keys.items():
        counts["keys_reused"] += 1
        for _, body in entry.bodies:
            if len(body.answers) > 1:
                _different_answers(f, sender, key, body, sampler)
        accepted = sorted((b for _, b in entry.bodies if b.ok_indexes),
                          key=lambda b: b.ok_indexes[0])
        for later in accepted[1:]:
            _reuse_accepted(sender, key, accepted[0], later, sampler)
    checked = counts["keys_reused"] > 0 or bool(sampler)
    return conclude(sampler, counts, checked=checked,
                    unknown_note=None if checked else "no idempotency key was used twice")


def _first_pass(inp: CheckInput, counts: dict[str, int]) -> tuple[
        dict[tuple[F, str | None, str], int], dict[tuple[str, str], int],
        list[tuple[OpPair, bool]]]:
    """(uses of each reused (kind, sender, key), uses of each call minute, the ops the
    second pass looks at, in order, each with whether its answer is marked a replay);
    counts ``keys`` and ``conflicts_rejected`` on the way.

    A key whose text was sent once (``key_uses``) is one (kind, sender, key) sent once,
    so only the others are counted by name; a name missing from the first dictionary was
    used once. The second pass sees only ops of such keys and marked replays.
    """
    texts = key_uses(inp)
    uses: dict[tuple[F, str | None, str], int] = {}
    # A call minute may be deduplicated by the minute, whatever key it came with.
    minute_uses: dict[tuple[str, str], int] = {}
    noted: list[tuple[OpPair, bool]] = []
    once = conflicts = 0
    for pair in op_pairs(inp):
        invoke, completion = pair.invoke, pair.completion
        key = invoke.idempotency_key
        if key is None or invoke.f not in ANSWER_ID_FIELDS:
            continue
        # (the membership test first: most answers carry no replay mark at all)
        replayed = (completion is not None and REPLAYED in completion.value
                    and is_replay(completion))
        if completion is not None and completion.kind == _FAIL and completion.error == _CONFLICT:
            conflicts += 1
        if texts[key] == 1:
            once += 1
            if replayed:
                noted.append((pair, replayed))
        else:
            name = (invoke.f, sender_of(invoke.value), key)
            uses[name] = uses.get(name, 0) + 1
            noted.append((pair, replayed))
        if invoke.f == _CHARGE:
            minute = _minute(invoke.f, invoke.value)
            assert minute is not None
            minute_uses[minute] = minute_uses.get(minute, 0) + 1
    counts["keys"] = once + len(uses)
    counts["conflicts_rejected"] = conflicts
    return uses, minute_uses, noted


def answer_id(f: F, value: Value) -> str | None:
    """The id an acknowledged answer carries (``tip_id``, ``intent_id``...), or None."""
    field_name = ANSWER_ID_FIELDS.get(f)
    item = value.get(field_name) if field_name is not None else None
    return None if item is None else str(item)


def same_answer(f: F, first: Event, later: Event, *, replays_marked: bool = False) -> bool | None:
    """Whether ``later`` is the answer ``first`` (an OK) got, given again, as this checker
    judges the answers of one request sent twice.

    An OK marked as a replay is the first answer again, whatever id it carries; otherwise
    the two must carry the same answer id. With ``replays_marked`` (the target marks its
    replays of this op kind), an unmarked OK is a new execution, whatever id it carries.

    Returns:
        True or False; None when it cannot tell (an answer without an id, and no mark).
    """
    assert first.kind == Kind.OK, first
    if later.kind != Kind.OK:
        return False
    if is_replay(later):
        return True
    if replays_marked:
        return False
    first_id, later_id = answer_id(f, first.value), answer_id(f, later.value)
    if first_id is None or later_id is None:
        return None
    return first_id == later_id


def sender_of(value: Value) -> str | None:
    """The account that sends an op (``sender`` of a tip, ``user`` of the others)."""
    who = value.get("sender", value.get("user"))
    return who if isinstance(who, str) else None


def _minute(f: F, value: Value) -> tuple[str, str] | None:
    """The call and minute a call charge bills, or None for any other op."""
    if f != F.CALL_CHARGE:
        return None
    return (str(value.get("call")), str(value.get("minute")))


def _record(pair: OpPair, body: _Body, counts: dict[str, int]) -> None:
    if pair.kind != Kind.OK:
        return
    if body.ok_indexes:
        counts["replays_acknowledged"] += 1
    body.ok_indexes.append(pair.index)
    if is_replay(pair.completion):
        return  # the first answer again, whatever id it carries
    answer = answer_id(pair.f, pair.value)
    if answer is None:
        counts["answers_without_id"] += 1
        return
    body.answers.setdefault(answer, pair.index)


def _different_answers(f: F, sender: str | None, key: str, body: _Body,
                       sampler: Sampler) -> None:
    field_name = ANSWER_ID_FIELDS[f]
    listed = sorted(body.answers.items(), key=lambda item: item[1])
    first_id, first_index = listed[0]
    other_id, other_index = listed[1]
    text = (f"Let A be {body.label}, sent by {sender} with key {key!r} "
            f"{body.ops_count} times. Then #{first_index} was answered {field_name} "
            f"{first_id!r} and #{other_index} {field_name} {other_id!r}: one request was "
            f"applied {len(listed)} times.")
    sampler.add(Anomaly(kind="replay_answered_differently",
                        event_indexes=tuple(index for _, index in listed[:8]),
                        expected=f"one {field_name}", observed=f"{len(listed)} {field_name}s",
                        explanation=text, user=sender), badness=len(listed))


def _replay_of_nothing(pair: OpPair, name: tuple[F, str | None, str],
                       sampler: Sampler) -> None:
    f, sender, key = name
    text = (f"Let A be {describe_op(f, pair.index, pair.invoke.value)}, the first request "
            f"{sender} sent with key {key!r}. Then A was answered as a replay (nothing new "
            "applied), though nothing of its own had been sent before: the service replayed "
            "another request's answer (a key shared across accounts?) and A's own request "
            "was never applied.")
    sampler.add(Anomaly(kind="replay_of_nothing", event_indexes=pair.event_indexes,
                        expected="applied (first use of the key)", observed="replayed",
                        explanation=text, user=sender))


def _reuse_accepted(sender: str | None, key: str, first: _Body, later: _Body,
                    sampler: Sampler) -> None:
    text = (f"Let A be {first.label}, acknowledged as #{first.ok_indexes[0]}, and B be "
            f"{later.label}, which reused {sender}'s key {key!r} with another body. Then B "
            "was acknowledged too, instead of refused with idempotency_conflict.")
    sampler.add(Anomaly(kind="key_reuse_accepted",
                        event_indexes=(first.ok_indexes[0], later.ok_indexes[0]),
                        expected=_CONFLICT, observed="ok", explanation=text, user=sender))
