"""The shape of a scenario: users, a seeded step generator, checkers, and what it provokes.

Scenario modules under ``scenarios/`` each define one ``SCENARIO``, as Jepsen's bank.clj
defines one workload. Generators are pure functions of a ``random.Random`` and the
parameters: nothing runs at import, nothing uses the global ``random`` or a clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from harness.schedule import Step

__all__ = ["Scenario", "ScenarioParams", "StepGenerator"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioParams:
    """Size knobs every scenario reads; suites scale them."""

    seed: int = 0
    scale: int = 1  # smoke = 1; full multiplies the counts
    concurrency: int = 16  # ops per concurrent batch, where the scenario fans out

    def __post_init__(self) -> None:
        assert self.scale >= 1
        assert self.concurrency >= 1


StepGenerator = Callable[[random.Random, ScenarioParams], Iterator[Step]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One workload: who takes part, what they do, and what must hold afterwards."""

    name: str  # kebab-case, as on the command line: "tip-cycle"
    summary: str  # one line for `tokenchaos list`
    users: Callable[[ScenarioParams], Mapping[str, str]]  # logical name -> "fan" | "creator"
    generator: StepGenerator
    checkers: tuple[str, ...]  # names in harness.checkers.CHECKERS expected to hold
    provokes: tuple[str, ...] = ()  # coverage tags that must happen at least once
    extra: Mapping[str, int | str] = field(default_factory=dict)
