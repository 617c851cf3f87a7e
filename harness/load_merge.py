"""Merge the histories of a load run's locust processes into one history to judge.

Each locust process (the one process of a local run, or each worker of a distributed
one) records its own scenario: its users, its events on its own clock, its processes and
op ids. ``merge_runs`` makes one well-formed history of them, as if one client had run
them all:

- every logical name (users, purchases, calls, disputes) is prefixed with the worker's
  tag (``w0.u3_fan_0``, ``w1.p_12``), so two workers' names never meet; but for the
  users a worker's params list as shared by the whole run (``shared_users``: the hot
  creators every process tips), which keep their name, so the merged history has one
  account for them, as the target does;
- op ids and process ids are shifted past the previous worker's, so they stay unique;
- times are put on one clock by each worker's wall-clock start (``wall_start_ns``), and
  the events are interleaved in time order, each worker's own order kept;
- indexes are renumbered densely from 0.

Pure: no I/O, no clock. The merged events pass ``History``'s invariants by construction
(each worker's did, and the shifts keep processes and op ids disjoint).

``recipient_races_count`` is a figure of the merged history: how many tips were sent while
another tip to the same recipient was in flight, the overlap a lost update needs.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.history import History, ScenarioRun
from harness.model import Event, F, Kind

__all__ = ["NAMED_VALUE_KEYS", "SHARED_USERS_KEY", "WALL_START_KEY", "Merged", "merge_runs",
           "recipient_races_count", "shared_users", "wall_start_ns"]

# The value keys whose strings are logical names, renamed per worker.
NAMED_VALUE_KEYS = frozenset({"user", "sender", "recipient", "creator", "purchase", "call",
                              "dispute"})
WALL_START_KEY = "wall_start_ns"
SHARED_USERS_KEY = "shared_users"  # comma-separated names every worker has under one id


@dataclass(frozen=True, slots=True, kw_only=True)
class Merged:
    """One history made of every worker's."""

    users: Mapping[str, str]  # prefixed logical name -> kind
    target_ids: Mapping[str, str]  # prefixed logical name -> the target's id
    history: History
    stats: Mapping[str, int]  # summed counts of the workers' stats
    workers: tuple[str, ...]  # the tags, in merge order


def wall_start_ns(run: ScenarioRun) -> int:
    """When a worker's clock started, in ns since the epoch (its params say)."""
    value = run.params.get(WALL_START_KEY, 0)
    return value if isinstance(value, int) else 0


def shared_users(run: ScenarioRun) -> frozenset[str]:
    """The users of a worker that the whole run shares (its params say), by name."""
    value = run.params.get(SHARED_USERS_KEY, "")
    names = frozenset(value.split(",")) if isinstance(value, str) else frozenset()
    return names - {""}


def merge_runs(runs: Sequence[tuple[str, ScenarioRun]]) -> Merged:
    """One history of every (tag, worker run), in time order; see the module docstring.

    Tags must be distinct; a worker with no events still contributes its users. A shared
    user has the same kind and target id in every worker that names it.
    """
    tags = [tag for tag, _ in runs]
    assert len(set(tags)) == len(tags), f"worker tags repeat: {tags}"
    origin_ns = min((wall_start_ns(run) for _, run in runs), default=0)
    users: dict[str, str] = {}
    target_ids: dict[str, str] = {}
    streams: list[Iterator[tuple[int, int, int, Event]]] = []
    op_offset = process_offset = 0
    stats: dict[str, int] = {}
    for order, (tag, run) in enumerate(runs):
        shared = shared_users(run)
        for name in shared:
            assert name in run.users, f"worker {tag} shares {name}, not one of its users"
            if name in users:
                assert users[name] == run.users[name], (tag, name, users[name])
                assert target_ids.get(name) == run.target_ids.get(name), (tag, name)
        users.update({_name(tag, name, shared): kind for name, kind in run.users.items()})
        target_ids.update({_name(tag, name, shared): tid
                           for name, tid in run.target_ids.items()})
        shift_ns = wall_start_ns(run) - origin_ns
        streams.append(_shifted(run.events, tag=tag, order=order, shift_ns=shift_ns,
                                op_offset=op_offset, process_offset=process_offset,
                                shared=shared))
        op_offset += 1 + max((e.op_id for e in run.events), default=-1)
        process_offset += 1 + max((e.process for e in run.events), default=-1)
        for key, value in run.stats.items():
            if isinstance(value, int) and not isinstance(value, bool) and key.endswith("_count"):
                stats[key] = stats.get(key, 0) + value
    history = History()
    for index, (_, _, _, event) in enumerate(heapq.merge(*streams)):
        history.append(dataclasses.replace(event, index=index))
    return Merged(users=users, target_ids=target_ids, history=history, stats=stats,
                  workers=tuple(tags))


def recipient_races_count(history: Sequence[Event]) -> int:
    """How many tips were invoked while another tip to the same recipient was in flight.

    One pass; memory bounded by the recipients and the tips in flight.
    """
    in_flight: dict[str, int] = {}
    recipient_of: dict[int, str] = {}
    races_count = 0
    for event in history:
        if event.f != F.TIP:
            continue
        if event.kind == Kind.INVOKE:
            recipient = str(event.value.get("recipient"))
            if in_flight.get(recipient, 0) > 0:
                races_count += 1
            in_flight[recipient] = in_flight.get(recipient, 0) + 1
            recipient_of[event.op_id] = recipient
        elif event.op_id in recipient_of:
            in_flight[recipient_of.pop(event.op_id)] -= 1
    return races_count


def _shifted(events: Sequence[Event], *, tag: str, order: int, shift_ns: int,
             op_offset: int, process_offset: int,
             shared: frozenset[str]) -> Iterator[tuple[int, int, int, Event]]:
    """A worker's events on the common clock, keyed for ``heapq.merge``: by time, then
    by worker, then by the worker's own index (so its order is kept)."""
    for event in events:
        time_ns = max(0, event.time_ns + shift_ns)
        yield (time_ns, order, event.index, dataclasses.replace(
            event, time_ns=time_ns, op_id=event.op_id + op_offset,
            process=event.process + process_offset,
            value=_renamed(tag, event.value, shared)))


def _renamed(tag: str, value: Mapping[str, Any], shared: frozenset[str]) -> dict[str, Any]:
    return {key: _name(tag, item, shared) if key in NAMED_VALUE_KEYS and isinstance(item, str)
            else item for key, item in value.items()}


def _name(tag: str, name: str, shared: frozenset[str]) -> str:
    return name if name in shared else f"{tag}.{name}"
