"""The delta debugging over batches, against fake oracles (deterministic and random)."""

from __future__ import annotations

import random
from collections.abc import Callable

from harness.shrink.ddmin import Groups, ops_count, reruns_for, shrink_flow, shrink_sync


def _schedule(batches: int = 8, per_batch: int = 6) -> Groups[int]:
    return tuple(tuple(b * 100 + i for i in range(per_batch)) for b in range(batches))


def _race_of(a: int, b: int) -> Callable[[Groups[int]], bool]:
    """Fails when ``a`` and ``b`` are in the schedule, in one batch."""
    def fails(groups: Groups[int]) -> bool:
        return any(a in g and b in g for g in groups)
    return fails


def test_shrink_keeps_the_two_racing_ops_in_their_batch() -> None:
    result = shrink_sync(_schedule(), _race_of(302, 305), candidates_max=200)
    assert result.exhausted
    assert ops_count(result.groups) == 2
    assert result.groups[3] == (302, 305)
    assert all(not g for i, g in enumerate(result.groups) if i != 3)


def test_shrink_keeps_an_earlier_batch_the_failure_needs() -> None:
    def fails(groups: Groups[int]) -> bool:  # a funding batch, then the race
        return 0 in groups[0] and 502 in groups[5] and 503 in groups[5]

    result = shrink_sync(_schedule(), fails, candidates_max=200)
    assert result.groups[0] == (0,)
    assert result.groups[5] == (502, 503)
    assert ops_count(result.groups) == 3


def test_shrink_of_a_schedule_that_never_fails_smaller_returns_it_whole() -> None:
    groups = _schedule(2, 2)
    result = shrink_sync(groups, lambda g: g == groups, candidates_max=200)
    assert result.groups == groups
    assert result.exhausted


def test_shrink_stops_at_its_candidate_bound_with_the_best_so_far() -> None:
    result = shrink_sync(_schedule(), _race_of(302, 305), candidates_max=3)
    assert result.candidates_count == 3
    assert not result.exhausted
    assert ops_count(result.groups) < ops_count(_schedule())
    assert _race_of(302, 305)(result.groups)


def test_shrink_never_asks_about_a_candidate_twice() -> None:
    seen: list[Groups[int]] = []

    def fails(groups: Groups[int]) -> bool:
        seen.append(groups)
        return _race_of(101, 104)(groups)

    shrink_sync(_schedule(), fails, candidates_max=500)
    assert len(seen) == len(set(seen))


def test_every_candidate_carries_the_best_so_far() -> None:
    flow = shrink_flow(_schedule(), candidates_max=200)
    candidate = next(flow)
    best_sizes = []
    try:
        while True:
            best_sizes.append(ops_count(candidate.best))
            candidate = flow.send(_race_of(302, 305)(candidate.groups))
    except StopIteration:
        pass
    assert best_sizes == sorted(best_sizes, reverse=True)
    assert best_sizes[0] == ops_count(_schedule())


def test_shrink_with_a_flaky_race_finds_it_with_reruns() -> None:
    """A race that shows one time in three: ten reruns per candidate find the pair."""
    rng = random.Random(7)
    race = _race_of(302, 305)

    def flaky(groups: Groups[int]) -> bool:
        return race(groups) and rng.random() < 1 / 3

    result = shrink_sync(_schedule(), flaky, candidates_max=200, runs_max=10)
    assert ops_count(result.groups) == 2
    assert result.groups[3] == (302, 305)


def test_shrink_with_a_flaky_race_and_one_run_never_loses_the_failure() -> None:
    """With one run per candidate, a flaky oracle may stop early; what is kept still fails."""
    rng = random.Random(3)
    race = _race_of(302, 305)

    def flaky(groups: Groups[int]) -> bool:
        return race(groups) and rng.random() < 1 / 2

    result = shrink_sync(_schedule(), flaky, candidates_max=200, runs_max=1)
    assert race(result.groups)


def test_reruns_follow_how_rare_the_failure_was() -> None:
    assert reruns_for(failures_count=0, replays_to_fail_count=0, runs_max=10) == 10
    assert reruns_for(failures_count=5, replays_to_fail_count=5, runs_max=10) == 4
    assert reruns_for(failures_count=2, replays_to_fail_count=7, runs_max=10) == 10
    assert reruns_for(failures_count=4, replays_to_fail_count=6, runs_max=10) == 6
    assert reruns_for(failures_count=5, replays_to_fail_count=5, runs_max=2) == 2
