"""Suites: which scenarios run, with which seeds and at which scale.

A ``Suite`` is plain data: a name, the scenario names in the order they run, and the
parameters of each run of each scenario. The registry of suites lives in
``scenarios/__init__.py``; nothing here knows a scenario's code or runs anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from harness.scenario import ScenarioParams

__all__ = ["Suite"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Suite:
    """Scenarios to run, each once per entry of ``params`` (one seed and scale each).

    The runs go seed by seed: every scenario with the first params, then every scenario
    with the second, so a short run still covers every scenario.
    """

    name: str
    summary: str
    scenarios: tuple[str, ...]
    params: tuple[ScenarioParams, ...]
    duration_s_max: float = 300.0  # the run's time bound unless --duration says otherwise

    def __post_init__(self) -> None:
        if not self.scenarios:
            raise ValueError(f"suite {self.name!r} names no scenario")
        if len(set(self.scenarios)) != len(self.scenarios):
            raise ValueError(f"suite {self.name!r} names a scenario twice: {self.scenarios}")
        if not self.params:
            raise ValueError(f"suite {self.name!r} has no params: give at least one seed")
        if not 0 < self.duration_s_max <= 24 * 3600:
            raise ValueError(f"suite {self.name!r}: duration_s_max {self.duration_s_max}")

    @property
    def runs_count(self) -> int:
        """How many scenario runs the suite makes."""
        return len(self.scenarios) * len(self.params)

    def runs(self) -> Iterator[tuple[str, ScenarioParams]]:
        """Every (scenario name, params) pair, in the order they run."""
        for params in self.params:
            for name in self.scenarios:
                yield name, params

    def with_seeds(self, seeds: Iterable[int]) -> Suite:
        """The same suite at the same scale, run once per seed given (e.g. ``--seed``)."""
        seeds = tuple(seeds)
        if not seeds:
            raise ValueError(f"suite {self.name!r}: with_seeds() needs at least one seed")
        template = self.params[0]
        return dataclasses.replace(
            self, params=tuple(dataclasses.replace(template, seed=seed) for seed in seeds))

    def only(self, names: Iterable[str]) -> Suite:
        """The same suite restricted to ``names``, in the suite's own order."""
        wanted = set(names)
        unknown = sorted(wanted - set(self.scenarios))
        if unknown:
            raise ValueError(f"suite {self.name!r} has no scenario {unknown}; "
                             f"it has {list(self.scenarios)}")
        return dataclasses.replace(
            self, scenarios=tuple(name for name in self.scenarios if name in wanted))
