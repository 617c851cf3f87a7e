"""refusals and key_scope: bad input is refused with a 4xx; a key belongs to one account.

``refusals`` judges the ops a scenario marks as bad input (``value["bad_input"]`` says what
is wrong with them: a negative amount, a tip to oneself, a body past the size limit). A
correct service refuses each with a 4xx. An acknowledged one is an anomaly whatever it did
to the money, and so is a 5xx (bad input must never crash the service). That a refusal
also *changed nothing* is the business of ``conservation`` and ``reconciliation``, for
which a refused op was never applied.

``key_scope`` judges idempotency keys shared by two accounts: two users who happen to
send the same key make two different requests, and each must be applied to its own
account. A service that deduplicates keys globally answers the second with the first's
answer (the same tip, charge or intent id): that is an anomaly here, and the second
user's money shows the loss in ``reconciliation``.

A bad input answered 5xx while a fault was injected (its [invoke, completion] overlaps
the fault's window) is the fault's doing: it is counted ``during_fault`` and judges
nothing, like an op that got no answer.

``refusals`` is one pass over the history, ``key_scope`` two (the first finds the keys
two accounts sent); memory is bounded by the marked ops and the keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.checkers.base import (
    CheckInput,
    OpPair,
    Sampler,
    conclude,
    describe_op,
    fault_during,
    key_uses,
    op_pairs,
)
from harness.checkers.idempotency import ANSWER_ID_FIELDS
from harness.model import Anomaly, F, Kind, Verdict

__all__ = ["BAD_INPUT_KEY", "check_key_scope", "check_refusals"]

BAD_INPUT_KEY = "bad_input"  # op value key: what is wrong with the op's input, in words
_ACTOR_KEYS = ("sender", "user")


def check_refusals(inp: CheckInput) -> Verdict:
    """Every op marked as bad input was refused with a 4xx.

    Anomaly kinds: ``bad_input_accepted`` (acknowledged), ``bad_input_server_error``
    (answered 5xx).

    Count keys: ``bad_inputs``, ``refused_4xx``, ``indeterminate`` (no answer: a timeout or
    a dropped connection, which judges nothing), ``during_fault`` (answered 5xx inside a
    fault's window: excused, judging nothing).
    """
    sampler = Sampler()
    counts = {"bad_inputs": 0, "refused_4xx": 0, "indeterminate": 0, "during_fault": 0}
    for pair in op_pairs(inp):
        why = pair.invoke.value.get(BAD_INPUT_KEY)
        if not isinstance(why, str):
            continue
        counts["bad_inputs"] += 1
        status = pair.status_code
        if (status is not None and status >= 500 and inp.faults
                and fault_during(inp.faults, pair) is not None):
            counts["during_fault"] += 1
            continue
        _judge_refusal(pair, why, sampler, counts)
    checked = counts["refused_4xx"] > 0 or bool(sampler)
    undecided = None
    if not checked and counts["indeterminate"]:
        undecided = f"every one of the {counts['indeterminate']} bad inputs got no answer"
    return conclude(sampler, counts, checked=checked, unknown_note=undecided)


def _judge_refusal(pair: OpPair, why: str, sampler: Sampler, counts: dict[str, int]) -> None:
    completion = pair.completion
    status = None if completion is None else completion.status_code
    what = describe_op(pair.f, pair.index, pair.invoke.value)
    if pair.kind == Kind.OK:
        sampler.add(Anomaly(
            kind="bad_input_accepted", event_indexes=_indexes(pair), expected="a 4xx refusal",
            observed=f"{status} (acknowledged)", user=_actor(pair),
            explanation=(f"Let A be {what}, whose input is bad ({why}). The service "
                         f"acknowledged A with {status} instead of refusing it with a 4xx; "
                         "whatever it did with the money, it accepted what it must refuse.")))
    elif status is not None and 400 <= status < 500:
        counts["refused_4xx"] += 1
    elif status is not None and status >= 500:
        sampler.add(Anomaly(
            kind="bad_input_server_error", event_indexes=_indexes(pair),
            expected="a 4xx refusal", observed=status, user=_actor(pair),
            explanation=(f"Let A be {what}, whose input is bad ({why}). The service answered "
                         f"A with {status}: bad input must be refused with a 4xx, never "
                         "crash the service.")))
    else:
        counts["indeterminate"] += 1


@dataclass(slots=True)
class _Shared:
    """The ops of one (kind, key), by the account that sent them."""

    first_by_actor: dict[str, OpPair] = field(default_factory=dict)  # first acknowledged
    conflicts_by_actor: dict[str, OpPair] = field(default_factory=dict)  # first refused 409
    bodies_by_actor: dict[str, set[str]] = field(default_factory=dict)


def check_key_scope(inp: CheckInput) -> Verdict:
    """Ops of two accounts that share a key never get one and the same answer.

    Anomaly kinds: ``answer_of_another_account`` (the second account's op was answered
    with the first's tip, charge or intent id: the service dedupes keys globally),
    ``refused_for_another_accounts_key`` (an account that used a key with one body only was
    refused as reusing it, because another account had used it).

    Count keys: ``keys_shared`` (keys sent by two accounts or more), ``answers_compared``.
    """
    sampler = Sampler()
    ops = op_pairs(inp)
    # First pass: the keys that two accounts sent, so the second remembers only those.
    texts = key_uses(inp)
    first_actors: dict[tuple[F, str], str] = {}
    two_actors: set[tuple[F, str]] = set()
    for pair in ops:
        invoke = pair.invoke
        key = invoke.idempotency_key
        if key is None or texts[key] == 1 or invoke.f not in ANSWER_ID_FIELDS:
            continue  # (a key sent once is no one else's)
        actor = _actor(pair)
        if actor is None:
            continue
        name = (invoke.f, key)
        first = first_actors.setdefault(name, actor)
        if first != actor:
            two_actors.add(name)
    shared: dict[tuple[F, str], _Shared] = {}
    for pair in ops if two_actors else ():
        key = pair.invoke.idempotency_key
        if key is None or (pair.f, key) not in two_actors:
            continue
        actor = _actor(pair)
        if actor is None:
            continue
        group = shared.setdefault((pair.f, key), _Shared())
        group.bodies_by_actor.setdefault(actor, set()).add(repr(sorted(
            pair.invoke.value.items(), key=str)))
        if pair.kind == Kind.OK:
            group.first_by_actor.setdefault(actor, pair)
        elif pair.completion is not None and pair.completion.error == _CONFLICT:
            group.conflicts_by_actor.setdefault(actor, pair)
    counts = {"keys_shared": 0, "answers_compared": 0}
    for (f, key), group in shared.items():
        if len(group.bodies_by_actor) < 2:
            continue
        counts["keys_shared"] += 1
        _compare_answers(f, key, list(group.first_by_actor.values()), sampler, counts)
        _judge_conflicts(f, key, group, sampler, counts)
    return conclude(sampler, counts, checked=counts["answers_compared"] > 0)


_CONFLICT = "idempotency_conflict"


def _judge_conflicts(f: F, key: str, group: _Shared, sampler: Sampler,
                     counts: dict[str, int]) -> None:
    for actor, refused in group.conflicts_by_actor.items():
        if len(group.bodies_by_actor[actor]) != 1 or actor in group.first_by_actor:
            continue  # it reused the key itself, or one of its copies was acknowledged
        others = [pair for other, pair in group.first_by_actor.items() if other != actor]
        if not others:
            continue
        counts["answers_compared"] += 1
        other = others[0]
        sampler.add(Anomaly(
            kind="refused_for_another_accounts_key",
            event_indexes=(*_indexes(other), *_indexes(refused)),
            expected="applied to its own account", observed=_CONFLICT, user=actor,
            explanation=(f"Let A be {describe_op(f, other.index, other.invoke.value)} and "
                         f"B be {describe_op(f, refused.index, refused.invoke.value)}, two "
                         f"requests of two accounts that happen to share the key {key!r}. "
                         f"The service refused B as a reuse of A's key: it scopes keys "
                         f"across accounts, so {actor}'s request was never applied.")))


def _compare_answers(f: F, key: str, firsts: list[OpPair], sampler: Sampler,
                     counts: dict[str, int]) -> None:
    seen: dict[str, OpPair] = {}
    id_field = ANSWER_ID_FIELDS[f]
    for pair in firsts:
        assert pair.completion is not None  # only acknowledged ops are grouped
        answer = pair.completion.value.get(id_field)
        if answer is None:
            continue
        counts["answers_compared"] += 1
        earlier = seen.setdefault(str(answer), pair)
        if earlier is pair:
            continue
        sampler.add(Anomaly(
            kind="answer_of_another_account",
            event_indexes=(*_indexes(earlier), *_indexes(pair)),
            expected=f"a {id_field} of {_actor(pair)}'s own", observed=str(answer),
            user=_actor(pair),
            explanation=(f"Let A be {describe_op(f, earlier.index, earlier.invoke.value)} and "
                         f"B be {describe_op(f, pair.index, pair.invoke.value)}, two requests "
                         f"of two accounts that happen to share the key {key!r}. The service "
                         f"answered B with A's {id_field} {answer}: it dedupes keys across "
                         f"accounts, so {_actor(pair)}'s request was never applied.")))


def _actor(pair: OpPair) -> str | None:
    for name in _ACTOR_KEYS:
        value = pair.invoke.value.get(name)
        if isinstance(value, str):
            return value
    return None


def _indexes(pair: OpPair) -> tuple[int, ...]:
    if pair.completion is None:
        return (pair.index,)
    return (pair.index, pair.completion.index)
