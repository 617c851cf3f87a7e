"""Delta debugging over a schedule of concurrent batches, as a pure flow.

A schedule here is a tuple of *groups*, one per batch of the recorded scenario, each a
tuple of ops that go out together. A race needs its ops in one batch, so the shrinker
never moves an op from one group to another: it removes whole groups first (ddmin over
the groups still present), then ops inside each group (ddmin over that group's ops), and
repeats both until neither removes anything. A removed group stays in its place as an
empty tuple, so the caller can map group ``i`` back to step ``i`` of the scenario.

The flow is a generator in the manner of the sans-IO protocol: it yields each candidate
and is sent whether that candidate still fails. It never sees a clock, a target or a
random number; ``shrink_sync`` drives it with a plain function (the unit tests' fake
oracle), and the replay drives it over a real target. Every candidate yielded carries
the smallest failing schedule found so far, so a driver that stops early (its time or
candidate bound) still has an answer. Candidates already answered are never yielded
again.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Candidate", "Groups", "ShrinkFlow", "ShrinkResult", "ops_count", "reruns_for",
           "shrink_flow", "shrink_sync"]

T = TypeVar("T")
Groups = tuple[tuple[T, ...], ...]

# Rounds of (groups, then ops in every group): each round that keeps going removed
# something, so a schedule of n ops needs at most n rounds; this bounds the loop anyway.
ROUNDS_MAX = 1_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate(Generic[T]):
    """One schedule to try, and the smallest failing one known when it was proposed."""

    groups: Groups[T]
    best: Groups[T]


@dataclass(frozen=True, slots=True, kw_only=True)
class ShrinkResult(Generic[T]):
    """Where a shrink ended: its smallest failing schedule and what it cost."""

    groups: Groups[T]
    candidates_count: int  # candidates the oracle was asked about
    exhausted: bool  # True: no smaller candidate was left (a 1-minimal schedule)


ShrinkFlow = Generator[Candidate[T], bool, ShrinkResult[T]]


def ops_count(groups: Groups[T]) -> int:
    """How many ops a schedule holds, over all its groups."""
    return sum(len(group) for group in groups)


def shrink_flow(groups: Groups[T], *, candidates_max: int) -> ShrinkFlow[T]:
    """Shrink ``groups``, which must already fail, asking about at most ``candidates_max``
    candidates.

    Send each yielded candidate's verdict: True when it still fails (the same checker,
    the same anomaly kind), False otherwise.

    Returns:
        The smallest failing schedule found; ``exhausted`` when no single group or op can
        be removed from it without the failure going away.
    """
    assert candidates_max >= 0, candidates_max
    assert ops_count(groups) >= 1, "an empty schedule cannot fail"
    state = _State(best=groups, candidates_max=candidates_max)
    for _ in range(ROUNDS_MAX):
        before = state.best
        yield from _ddmin_groups(state)
        for group_index in range(len(state.best)):
            yield from _ddmin_ops(state, group_index)
        if state.out_of_candidates:
            return state.result(exhausted=False)
        if state.best == before:
            return state.result(exhausted=True)
    raise AssertionError(f"shrinking did not settle in {ROUNDS_MAX} rounds")


# Reruns for a candidate, as a multiple of the replays a failure has taken to show: with a
# failure rate p, a failing candidate holds through k/p replays with probability about
# e**-k, so a factor of 4 misses about one failing candidate in 55.
RERUNS_PER_EXPECTED_FAILURE = 4


def reruns_for(*, failures_count: int, replays_to_fail_count: int, runs_max: int) -> int:
    """How many replays a candidate gets before it counts as holding.

    ``failures_count`` failing candidates took ``replays_to_fail_count`` replays in all
    to show their failure (counting the one that failed): their mean estimates 1/p. A
    race that shows on the first replay every time is given a few replays, a rare one
    up to ``runs_max``; with no evidence yet, ``runs_max``.
    """
    assert runs_max >= 1, runs_max
    assert replays_to_fail_count >= failures_count >= 0, (replays_to_fail_count,
                                                          failures_count)
    if failures_count == 0:
        return runs_max
    # ceil(k * mean replays to fail), in integers
    wanted = -(-RERUNS_PER_EXPECTED_FAILURE * replays_to_fail_count // failures_count)
    return max(1, min(runs_max, wanted))


def shrink_sync(groups: Groups[T], fails: Callable[[Groups[T]], bool], *,
                candidates_max: int, runs_max: int = 1) -> ShrinkResult[T]:
    """Drive ``shrink_flow`` with a plain oracle, rerunning each candidate up to
    ``runs_max`` times and stopping at its first failure (races are probabilistic)."""
    assert runs_max >= 1, runs_max
    flow = shrink_flow(groups, candidates_max=candidates_max)
    try:
        candidate = next(flow)
        while True:
            failed = any(fails(candidate.groups) for _ in range(runs_max))
            candidate = flow.send(failed)
    except StopIteration as stop:
        result: ShrinkResult[T] = stop.value
        return result


class _State(Generic[T]):
    def __init__(self, *, best: Groups[T], candidates_max: int) -> None:
        self.best = best
        self.candidates_max = candidates_max
        self.candidates_count = 0
        self.answered: dict[Groups[T], bool] = {best: True}

    @property
    def out_of_candidates(self) -> bool:
        return self.candidates_count >= self.candidates_max

    def result(self, *, exhausted: bool) -> ShrinkResult[T]:
        return ShrinkResult(groups=self.best, candidates_count=self.candidates_count,
                            exhausted=exhausted)

    def ask(self, groups: Groups[T]) -> Generator[Candidate[T], bool, bool]:
        """Whether ``groups`` fails, asking the driver only about what is new; a smaller
        failing schedule becomes the best."""
        if groups in self.answered:
            return self.answered[groups]
        if self.out_of_candidates or ops_count(groups) == 0:
            return False
        self.candidates_count += 1
        failed = yield Candidate(groups=groups, best=self.best)
        self.answered[groups] = failed
        if failed and ops_count(groups) < ops_count(self.best):
            self.best = groups
        return failed


def _ddmin_groups(state: _State[T]) -> Generator[Candidate[T], bool, None]:
    """ddmin over the indexes of the groups still present: drop chunks of whole groups."""
    base = state.best

    def without(kept: Sequence[int]) -> Groups[T]:
        keep = set(kept)
        return tuple(g if i in keep else () for i, g in enumerate(base))

    present = [i for i, group in enumerate(base) if group]
    yield from _ddmin(state, present, without)


def _ddmin_ops(state: _State[T], group_index: int) -> Generator[Candidate[T], bool, None]:
    """ddmin over the ops of one group; the group keeps at least one op (dropping it whole
    is the groups' pass)."""
    base = state.best
    group = base[group_index]

    def with_ops(kept: Sequence[int]) -> Groups[T]:
        ops = tuple(group[i] for i in kept)
        return (*base[:group_index], ops, *base[group_index + 1:])

    indexes = list(range(len(group)))
    if len(indexes) >= 2:
        yield from _ddmin(state, indexes, with_ops)


def _ddmin(state: _State[T], items: list[int],
           build: Callable[[Sequence[int]], Groups[T]]) -> Generator[Candidate[T], bool, None]:
    """Zeller's ddmin on the complements: split ``items`` into n chunks and keep the first
    complement that still fails; double n when none does, until chunks are single items.

    ``build`` maps the kept items (indexes into the schedule the pass began with) to a
    schedule.
    """
    n = 2
    while len(items) >= 2 and not state.out_of_candidates:
        chunks = _split(items, n)
        for chunk in chunks:
            dropped = set(chunk)
            kept = [i for i in items if i not in dropped]
            if (yield from state.ask(build(kept))):
                items = kept
                n = max(n - 1, 2)
                break
        else:
            if n >= len(items):
                return
            n = min(2 * n, len(items))


def _split(items: Sequence[int], n: int) -> list[list[int]]:
    """``items`` in ``n`` contiguous chunks of near-equal size."""
    assert 1 <= n <= len(items), (n, len(items))
    size, extra = divmod(len(items), n)
    chunks, start = [], 0
    for k in range(n):
        end = start + size + (1 if k < extra else 0)
        chunks.append(list(items[start:end]))
        start = end
    return chunks
