"""durability: what was acknowledged before a fault is there, exactly once, after it heals.

Jepsen's set checker, for keyed ops. A fault scenario injects its faults during a batch
of keyed ops (tips, purchases, call charges), heals them, and then re-sends every keyed op
of the faulted phase once more with the same idempotency key and body: an *after-heal
retry*, an attempt invoked at or after the recovery of the first fault to end after the
key's first attempt (its *heal*; a scenario may run several faulted phases one after the
other, each with its own heal). The faulted phase of a key runs from the first fault's
injection to its heal.

A key (op kind, sender, idempotency key, first body) first invoked before the heal is
*attempted* when one of its attempts overlaps the faulted phase or it was re-sent after
the heal (an op acknowledged just before a crash must survive it too). By its attempts
before the heal it is

- *acknowledged*: some attempt answered OK; the first OK is its first answer;
- *indeterminate*: no OK, and some attempt got no definite answer (a timeout, a dropped
  connection, a 5xx, no completion): it may or may not have happened, and stays so; it is
  never counted as a failure;
- refused: every attempt was refused with a 4xx.

Its retry (the first after-heal attempt with a definite answer) then says what survived:

- an acknowledged key's retry must get the first answer again, as ``idempotency`` judges
  one request sent twice (``same_answer``: marked as a replay, or the same answer id;
  where the target marks replays of that op kind, an unmarked OK is a new execution).
  Otherwise the acknowledgement did not survive: the key is *lost*
  (``acknowledged_op_lost``);
- an indeterminate key whose retry is marked as a replay had happened: *recovered*;
- a refused key whose retry is marked as a replay had been applied after all:
  *unexpected* (``refused_op_applied``).

*Duplicated* keys are told from lost ones by the end state, set against the model in
which every key applies once (``reconciliation.net_models``): a payer of tips or call
charges that ended below that model by exactly the amounts of its lost keys paid each of
them twice (``op_applied_twice``, not lost), and so, by the same measure, did one whose
indeterminate keys were executed again by their retries. A purchase whose retry made a
second intent, both succeeded at the provider, charged the card twice. Where the end state
cannot tell, the key stays lost and its anomaly says why.

Convergence: every fault must heal and the target answer again within
``recovery_ms_bound`` of the heal (``not_recovered``). A fault that could not be
injected or healed (its ``error``) is unknown, not a failure of the target. A retry with
no definite answer, or a key of the faulted phase never re-sent (a bug of the scenario),
leaves the verdict unknown, with a note.

Two passes: the first over the events (each key's first body, which op kinds the target
marks as replays, the calls), the second over the ops; memory is bounded by the keys.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness.checkers.base import (
    CheckInput,
    OpPair,
    Sampler,
    conclude,
    describe_op,
    fault_during,
    is_replay,
    op_pairs,
    plural,
    value_int,
    value_str,
)
from harness.checkers.idempotency import ANSWER_ID_FIELDS, answer_id, same_answer, sender_of
from harness.checkers.ledger import transfer_effects
from harness.checkers.reconciliation import NetModel, net_models
from harness.model import Anomaly, Event, F, FaultWindow, Kind, ProviderTruth, Value, Verdict

__all__ = ["RECOVERY_MS_BOUND_DEFAULT", "check_durability", "heal_ns"]

RECOVERY_MS_BOUND_DEFAULT = 30_000  # from a fault's heal to the target's first healthy answer
NOTED_KEYS_MAX = 3  # keys named in one note
_NS_PER_MS = 1_000_000
_END_OF_TIME_NS = 1 << 62
_KeyName = tuple[F, str | None, str]
_Calls = dict[str, tuple[str | None, str | None, int]]


@dataclass(slots=True)
class _Key:
    """One key's attempts: before the heal, and its retry after it."""

    f: F
    sender: str | None
    key: str
    body: Value  # the first attempt's arguments; attempts with another body are not its own
    first_index: int  # invoke index of the first attempt
    heal_ns: int = 0  # the end of the first fault to end after the first attempt
    fault_start_ns: int = 0  # and that fault's start: its faulted phase
    in_phase: bool = False  # an attempt before the heal overlapped the faulted phase
    first_ok: OpPair | None = None  # the first answer, when acknowledged
    refused: OpPair | None = None  # the first 4xx refusal before the heal
    uncertain: bool = False  # an attempt before the heal got no definite answer
    resent: bool = False  # an attempt was invoked after the heal
    retry: OpPair | None = None  # the first after-heal attempt with a definite answer

    @property
    def label(self) -> str:
        return describe_op(self.f, self.first_index, self.body)


@dataclass(slots=True)
class _Finding:
    """A key whose acknowledgement did not survive, or which was applied again."""

    entry: _Key
    why: str = ""  # what the end state says about it, in a sentence


def check_durability(inp: CheckInput, *,
                     recovery_ms_bound: int = RECOVERY_MS_BOUND_DEFAULT) -> Verdict:
    """Check that acknowledged keyed ops survived the scenario's faults, exactly once.

    Args:
        inp: the history, its faults (``inp.faults``) and the end state.
        recovery_ms_bound: how long after its heal a fault's target may take to answer
            its health check again.

    Anomaly kinds: ``acknowledged_op_lost`` (an acknowledged key's after-heal retry got
    another answer), ``op_applied_twice`` (the end state shows a key applied twice),
    ``refused_op_applied`` (a key refused with a 4xx, whose retry was answered as a replay),
    ``not_recovered`` (a fault never healed, or the target answered again past the bound).

    Count keys: ``attempted``, ``acknowledged``, ``indeterminate``, ``lost``,
    ``recovered``, ``duplicated``, ``unexpected`` (keys, as defined in the module
    docstring), ``faults``, ``recovery_ms_max`` (the slowest recovery from a heal).
    """
    assert recovery_ms_bound >= 1, recovery_ms_bound
    sampler = Sampler()
    counts = dict.fromkeys(("attempted", "acknowledged", "indeterminate", "lost", "recovered",
                            "duplicated", "unexpected", "faults", "recovery_ms_max"), 0)
    if not inp.faults:
        return conclude(sampler, counts, checked=False,
                        unknown_note="no fault was injected in this scenario: durability "
                                     "judges what survives faults")
    notes: list[str] = []
    counts["faults"] = len(inp.faults)
    counts["recovery_ms_max"] = _convergence(inp.faults, recovery_ms_bound, sampler, notes)
    heal = heal_ns(inp.faults)
    if heal is None:
        notes.append("no fault healed, so no op could be retried after a heal")
        return conclude(sampler, counts, checked=False, unknown_note="; ".join(notes))
    keys, calls, marked = _first_pass(inp.history, _fault_ends(inp.faults))
    _second_pass(op_pairs(inp), keys)
    lost, fresh = _judge_keys(inp, keys, marked, counts, sampler, notes)
    models = net_models(inp)
    duplicated = _resolve(lost, fresh, models, calls, inp.truth)
    for finding in duplicated:
        _applied_twice(finding, inp.faults, sampler)
    for finding in lost:
        _lost(finding, inp.faults, sampler)
    counts["lost"] = len(lost)
    counts["duplicated"] = len(duplicated)
    checked = counts["attempted"] > 0
    if not checked:
        notes.append("no keyed op was attempted before the heal")
    return conclude(sampler, counts, checked=checked, unknown_note="; ".join(notes) or None)


def _fault_ends(faults: Sequence[FaultWindow]) -> list[tuple[int, int]]:
    """(end, start) of each fault that healed, by end: it ended when the target recovered,
    or when it healed if the target never did."""
    spans = ((w.recovered_ns if w.recovered_ns is not None else w.healed_ns, w.started_ns)
             for w in faults)
    return sorted((end, start) for end, start in spans if end is not None)


def heal_ns(faults: Sequence[FaultWindow]) -> int | None:
    """When the last fault healed and its target answered again (its heal, if it never
    did); None when no fault healed at all."""
    ends = [w.recovered_ns if w.recovered_ns is not None else w.healed_ns for w in faults]
    known = [end for end in ends if end is not None]
    return max(known) if known else None


# ---------------------------------------------------------------------------------------
# Convergence.


def _convergence(faults: Sequence[FaultWindow], bound_ms: int, sampler: Sampler,
                 notes: list[str]) -> int:
    """Flag every fault that never recovered or recovered past the bound; return the
    slowest recovery in ms."""
    recovery_ms_max = 0
    for window in faults:
        name = f"fault {window.name} ({window.description})"
        if window.recovery_ns is not None:
            recovery_ms_max = max(recovery_ms_max, window.recovery_ns // _NS_PER_MS)
        if window.error is not None:
            notes.append(f"{name} is not judged: {window.error}")
            continue
        expected = f"recovered within {bound_ms} ms of its heal"
        if window.healed_ns is None:
            text = f"Let F be {name}: it was never healed, so the target never converged."
            observed: int | str = "never healed"
        elif window.recovery_ns is None:
            text = (f"Let F be {name}: after its heal the target never answered its health "
                    "check again, so the run never converged.")
            observed = "never recovered"
        elif window.recovery_ns > bound_ms * _NS_PER_MS:
            took_ms = window.recovery_ns // _NS_PER_MS
            text = (f"Let F be {name}: the target answered its health check again only "
                    f"{took_ms} ms after the heal, past the {bound_ms} ms bound.")
            observed = f"{took_ms} ms"
        else:
            continue
        badness = _END_OF_TIME_NS if window.recovery_ns is None else window.recovery_ns
        sampler.add(Anomaly(kind="not_recovered", event_indexes=(), expected=expected,
                            observed=observed, explanation=text), badness=badness)
    return recovery_ms_max


# ---------------------------------------------------------------------------------------
# The two passes.


def _name(event: Event) -> _KeyName | None:
    key = event.idempotency_key
    if key is None or event.f not in ANSWER_ID_FIELDS:
        return None
    return (event.f, sender_of(event.value), key)


def _first_pass(history: Sequence[Event], ends: Sequence[tuple[int, int]]
                ) -> tuple[dict[_KeyName, _Key], _Calls, set[F]]:
    """Each key first invoked before a fault ended (with the end it waits for: its heal),
    the calls, and the op kinds whose replays the target marks (some OK of that kind
    carries the mark)."""
    keys: dict[_KeyName, _Key] = {}
    calls: _Calls = {}
    marked: set[F] = set()
    for event in history:
        if event.kind == Kind.OK:
            if is_replay(event):
                marked.add(event.f)
            continue
        if event.kind != Kind.INVOKE:
            continue
        if event.f == F.CALL_OPEN:
            call = value_str(event.value, "call")
            if call is not None:
                calls[call] = (value_str(event.value, "user"),
                               value_str(event.value, "creator"),
                               value_int(event.value, "rate_tokens_per_minute"))
        name = _name(event)
        if name is None or name in keys:
            continue
        after = bisect.bisect_right(ends, (event.time_ns, _END_OF_TIME_NS))
        if after < len(ends):
            keys[name] = _Key(f=event.f, sender=name[1], key=name[2], body=event.value,
                              first_index=event.index, heal_ns=ends[after][0],
                              fault_start_ns=ends[after][1])
    return keys, calls, marked


def _definite(pair: OpPair) -> bool:
    """An OK, or a refusal the target itself gave (a 4xx)."""
    status = pair.status_code
    return pair.kind == Kind.OK or (pair.kind == Kind.FAIL and status is not None
                                    and 400 <= status < 500)


def _second_pass(ops: Sequence[OpPair], keys: Mapping[_KeyName, _Key]) -> None:
    for pair in ops:
        name = _name(pair.invoke)
        entry = keys.get(name) if name is not None else None
        if entry is None or pair.invoke.value != entry.body:
            continue  # another request (a key reused with another body is idempotency's)
        if pair.invoke.time_ns >= entry.heal_ns:
            entry.resent = True
            if entry.retry is None and _definite(pair):
                entry.retry = pair
            continue
        end_ns = pair.completion.time_ns if pair.completion is not None else _END_OF_TIME_NS
        if end_ns >= entry.fault_start_ns:  # in flight during (or after) its fault's start
            entry.in_phase = True
        if pair.kind == Kind.OK:
            if entry.first_ok is None:
                entry.first_ok = pair
        elif _definite(pair):
            if entry.refused is None:
                entry.refused = pair
        else:
            entry.uncertain = True


# ---------------------------------------------------------------------------------------
# Judging each key by its retry.


def _judge_keys(inp: CheckInput, keys: Mapping[_KeyName, _Key], marked: set[F],
                counts: dict[str, int], sampler: Sampler, notes: list[str]
                ) -> tuple[list[_Finding], list[_Finding]]:
    """Count every attempted key; return the lost ones and the indeterminate ones whose
    retry was executed again (or whose replay the target does not mark)."""
    lost: list[_Finding] = []
    fresh: list[_Finding] = []
    not_resent: list[_Key] = []
    unconfirmed: list[_Key] = []
    for entry in keys.values():
        if not (entry.in_phase or entry.resent):
            continue  # set up before the faults and never re-sent: not this check's
        counts["attempted"] += 1
        if not entry.resent:
            not_resent.append(entry)
        retry = entry.retry.completion if entry.retry is not None else None
        if entry.first_ok is not None:
            counts["acknowledged"] += 1
            assert entry.first_ok.completion is not None
            same = None if retry is None else same_answer(
                entry.f, entry.first_ok.completion, retry, replays_marked=entry.f in marked)
            if same is False:
                lost.append(_Finding(entry=entry))
            elif same is None and entry.resent:
                unconfirmed.append(entry)
        elif entry.uncertain or entry.refused is None:
            counts["indeterminate"] += 1
            if is_replay(retry):
                counts["recovered"] += 1
            elif retry is not None and retry.kind == Kind.OK:
                fresh.append(_Finding(entry=entry))
        elif is_replay(retry):
            counts["unexpected"] += 1
            _refused_applied(entry, inp.faults, sampler)
    if not_resent:
        notes.append(f"{plural(len(not_resent), 'key')} of the faulted phase never re-sent "
                     f"after the heal ({_keys_named(not_resent)}): the scenario must re-send "
                     "every one, or what survived of it is not known")
    if unconfirmed:
        notes.append(f"the retries of {plural(len(unconfirmed), 'acknowledged key')} got no "
                     f"definite answer, or one without an id to compare "
                     f"({_keys_named(unconfirmed)}): whether they survived is not known")
    return lost, fresh


def _keys_named(entries: Sequence[_Key]) -> str:
    named = ", ".join(f"{e.key!r} of #{e.first_index}" for e in entries[:NOTED_KEYS_MAX])
    return named + (", ..." if len(entries) > NOTED_KEYS_MAX else "")


# ---------------------------------------------------------------------------------------
# Lost or applied twice: what the end state says.


def _resolve(lost: list[_Finding], fresh: Sequence[_Finding],
             models: Mapping[str, NetModel] | None, calls: _Calls,
             truth: ProviderTruth | None) -> list[_Finding]:
    """Move the keys the end state shows applied twice out of ``lost``; return them.

    Every finding left in ``lost`` gets the reason the end state could not tell.
    """
    duplicated: list[_Finding] = []
    by_payer: dict[str | None, tuple[list[_Finding], list[_Finding]]] = {}
    for finding in lost:
        if finding.entry.f == F.PURCHASE:
            _resolve_purchase(finding, truth, duplicated)
        elif finding.entry.f == F.CALL_OPEN:
            finding.why = "A call open moves no money, so the end state cannot tell more."
        else:
            by_payer.setdefault(_payer(finding.entry, calls)[0], ([], []))[0].append(finding)
    for finding in fresh:
        if finding.entry.f in (F.TIP, F.CALL_CHARGE):
            by_payer.setdefault(_payer(finding.entry, calls)[0], ([], []))[1].append(finding)
    for payer, (own_lost, own_fresh) in by_payer.items():
        model = models.get(payer) if models is not None and payer is not None else None
        duplicated.extend(_applied_twice_by(payer, own_lost, own_fresh, model, calls))
    duplicated_ids = {id(f.entry) for f in duplicated}
    lost[:] = [f for f in lost if id(f.entry) not in duplicated_ids]
    return duplicated


def _payer(entry: _Key, calls: _Calls) -> tuple[str | None, int]:
    """Who pays for a tip or call charge, and how many tokens."""
    payer, effects = transfer_effects(entry.f, entry.body, calls)
    amount = -sum(delta for user, delta in effects if user == payer)
    return payer, max(amount, 0)


def _applied_twice_by(payer: str | None, own_lost: list[_Finding],
                      own_fresh: list[_Finding], model: NetModel | None,
                      calls: _Calls) -> list[_Finding]:
    """The keys of one payer that its end net shows were applied twice.

    Its lost keys, then its lost and re-executed ones, then its re-executed ones alone:
    the first set whose tokens are exactly what the payer ended below the model.
    """
    if model is None:
        reason = (f"{payer}'s end state was not observed, so whether it was applied once or "
                  "twice cannot be told.")
    elif not model.exact:
        reason = (f"{payer}'s end net is uncertain (indeterminate ops or credits touch it), "
                  "so whether it was applied once or twice cannot be told.")
    else:
        gap = -model.residual_tokens
        lost_tokens = sum(_payer(f.entry, calls)[1] for f in own_lost)
        fresh_tokens = sum(_payer(f.entry, calls)[1] for f in own_fresh)
        for tokens, findings in ((lost_tokens, own_lost),
                                 (lost_tokens + fresh_tokens, own_lost + own_fresh),
                                 (fresh_tokens, own_fresh)):
            if findings and gap > 0 and tokens == gap:
                cost = "A costs" if len(findings) == 1 else f"these {len(findings)} keys cost"
                for finding in findings:
                    finding.why = (f"{payer} ended {gap} tokens below the model in which "
                                   f"every key applies once, exactly what {cost}")
                return findings
        if gap == 0:
            reason = (f"{payer}'s end net matches every key applied once: the first answer "
                      "was given for an op the service then lost, and the retry applied it "
                      "anew.")
        else:
            side = "below" if gap > 0 else "above"
            reason = (f"{payer} ended {abs(gap)} tokens {side} the model in which every key "
                      "applies once, which its lost keys do not explain (reconciliation "
                      "judges that gap).")
    for finding in own_lost:
        finding.why = reason
    return []


def _resolve_purchase(finding: _Finding, truth: ProviderTruth | None,
                      duplicated: list[_Finding]) -> None:
    entry = finding.entry
    assert entry.first_ok is not None and entry.retry is not None
    assert entry.first_ok.completion is not None and entry.retry.completion is not None
    first = value_str(entry.first_ok.completion.value, "intent_id")
    again = value_str(entry.retry.completion.value, "intent_id")
    intents = truth.intents if truth is not None else {}
    both = [intents.get(i) for i in (first, again) if i is not None]
    if first != again and len(both) == 2 and all(i is not None and i.succeeded for i in both):
        finding.why = f"the provider holds both intents, {first} and {again}, succeeded"
        duplicated.append(finding)
        return
    finding.why = ("The provider's truth does not show two succeeded intents for it, so it "
                   "was not charged twice." if truth is not None else
                   "No provider truth says whether it was charged twice.")


# ---------------------------------------------------------------------------------------
# Prose.


def _answer(f: F, event: Event) -> str:
    """``tip_id 't_1', balance 50`` or ``refused 402 insufficient_funds``."""
    if event.kind != Kind.OK:
        return f"refused {event.status_code} {event.error}"
    ident = answer_id(f, event.value)
    words = [f"{ANSWER_ID_FIELDS[f]} {ident!r}" if ident is not None else "no id"]
    if is_replay(event):
        words.append("marked as a replay")
    if "balance_tokens" in event.value:
        words.append(f"balance {value_int(event.value, 'balance_tokens')}")
    return ", ".join(words)


def _when(faults: Sequence[FaultWindow], pair: OpPair) -> str:
    window = fault_during(faults, pair)
    if window is not None:
        return f"during fault {window.name} ({window.description})"
    return f"before fault {faults[0].name} ({faults[0].description})"


def _acknowledged_then(finding: _Finding, faults: Sequence[FaultWindow]
                       ) -> tuple[str, tuple[int, ...], str, str]:
    entry = finding.entry
    assert entry.first_ok is not None and entry.retry is not None
    first, retry = entry.first_ok.completion, entry.retry.completion
    assert first is not None and retry is not None
    said, got = _answer(entry.f, first), _answer(entry.f, retry)
    text = (f"Let A be {entry.label}, sent by {entry.sender} with key {entry.key!r} and "
            f"acknowledged {_when(faults, entry.first_ok)} as #{first.index} ({said}). "
            f"Then its retry after the heal, #{entry.retry.index}, was answered {got}")
    indexes = (*entry.first_ok.event_indexes, *entry.retry.event_indexes)
    return text, indexes, said, got


def _lost(finding: _Finding, faults: Sequence[FaultWindow], sampler: Sampler) -> None:
    text, indexes, said, got = _acknowledged_then(finding, faults)
    text += f": the acknowledgement did not survive the fault. {finding.why}".rstrip()
    sampler.add(Anomaly(kind="acknowledged_op_lost", event_indexes=indexes,
                        expected=f"the first answer again ({said})", observed=got,
                        explanation=text, user=finding.entry.sender))


def _applied_twice(finding: _Finding, faults: Sequence[FaultWindow], sampler: Sampler) -> None:
    entry = finding.entry
    if entry.first_ok is not None:
        text, indexes, _, got = _acknowledged_then(finding, faults)
        text += f", a new execution, and {finding.why}: A was applied twice."
    else:
        assert entry.retry is not None and entry.retry.completion is not None
        got = _answer(entry.f, entry.retry.completion)
        text = (f"Let A be {entry.label}, sent by {entry.sender} with key {entry.key!r}, "
                f"which got no definite answer before the heal. Then its retry after the "
                f"heal, #{entry.retry.index}, was executed anew ({got}), and {finding.why}: "
                "A was applied twice.")
        indexes = (entry.first_index, *entry.retry.event_indexes)
    sampler.add(Anomaly(kind="op_applied_twice", event_indexes=indexes,
                        expected="applied once", observed="applied twice", explanation=text,
                        user=entry.sender))


def _refused_applied(entry: _Key, faults: Sequence[FaultWindow], sampler: Sampler) -> None:
    assert entry.refused is not None and entry.refused.completion is not None
    assert entry.retry is not None and entry.retry.completion is not None
    said = _answer(entry.f, entry.refused.completion)
    got = _answer(entry.f, entry.retry.completion)
    text = (f"Let A be {entry.label}, sent by {entry.sender} with key {entry.key!r} and "
            f"refused {_when(faults, entry.refused)} as #{entry.refused.completion.index} "
            f"({said.removeprefix('refused ')}). "
            f"Then its retry after the heal, #{entry.retry.index}, was answered {got}: the "
            "refusal had in fact been applied.")
    sampler.add(Anomaly(kind="refused_op_applied",
                        event_indexes=(*entry.refused.event_indexes,
                                       *entry.retry.event_indexes),
                        expected=f"not applied ({said})", observed=got, explanation=text,
                        user=entry.sender))
