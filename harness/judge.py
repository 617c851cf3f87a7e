"""Judge one scenario run: its history, end state and truth, through the scenario's checkers.

The same function judges a run as it finishes and a history loaded from disk, which is
why ``tokenchaos check`` gives the same verdict as the run that wrote the file. Pure: no
I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from harness.checkers import check_all
from harness.checkers.base import CheckInput
from harness.fees import Fees
from harness.model import (
    Event,
    FaultWindow,
    Observation,
    ProviderTruth,
    Validity,
    Verdict,
    merge_validity,
)
from harness.scenario import Scenario

__all__ = ["JudgedRun", "exit_code_for", "judge"]

EXIT_HELD = 0
EXIT_BROKE = 1
EXIT_CANNOT_JUDGE = 2


class JudgedRun(Protocol):
    """What a run offers a judge (``ScenarioRun``, live from the runner or loaded from disk)."""

    @property
    def events(self) -> Sequence[Event]: ...

    @property
    def initial(self) -> Observation | None: ...

    @property
    def observation(self) -> Observation | None: ...

    @property
    def truth(self) -> ProviderTruth | None: ...

    @property
    def faults(self) -> tuple[FaultWindow, ...]: ...

    @property
    def fees(self) -> Fees: ...


def judge(scenario: Scenario, run: JudgedRun, *,
          latency_ms_max: int | None) -> dict[str, Verdict]:
    """Run the scenario's checkers over one run; a crashing checker becomes "unknown".

    ``latency_ms_max`` is the user's latency bound (None: slowness is not judged).
    """
    inp = CheckInput(history=run.events, observation=run.observation, truth=run.truth,
                     initial=run.initial, latency_ms_max=latency_ms_max,
                     provokes=scenario.provokes, faults=tuple(run.faults), fees=run.fees)
    return check_all(inp, scenario.checkers)


def exit_code_for(validities: Sequence[Validity] | Mapping[str, Validity]) -> int:
    """0 when everything held, 1 when an invariant broke, 2 when something could not be judged.

    A run whose verdict is "unknown" (a checker could not decide, or the scenario did not
    provoke what it exists to provoke) is not a pass: it exits 2, never 0.
    """
    values = list(validities.values()) if isinstance(validities, Mapping) else list(validities)
    merged = merge_validity(*values) if values else "unknown"
    if merged is True:
        return EXIT_HELD
    if merged is False:
        return EXIT_BROKE
    return EXIT_CANNOT_JUDGE
