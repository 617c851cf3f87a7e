"""A run driven one step at a time: the runner's own execution, without its generator.

``run_scenario`` pulls every step from a scenario's generator. A Hypothesis state machine
cannot hand over its steps in advance: each rule decides the next one. ``StepwiseRun``
gives such a caller the same machinery step by step: the same provisioning, the same
batches (ops invoked concurrently, recorded as invokes and completions on processes, ids
resolved as the runner resolves them), the same quiescence, observer and provider truth,
and the same history file. It judges nothing.

Every wait is bounded as in the runner: each op by ``Limits.op_timeout_s``, each step and
each reading of the end state by the run's deadline (``Limits.run_duration_s_max`` from
``begin``), past which ``RunDeadlineExceeded`` is raised.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from harness.history import HistoryWriter, ScenarioRun
from harness.limits import Limits
from harness.model import Observation, Op
from harness.runner import ProviderControl, _Execution
from harness.scenario import Scenario, ScenarioParams, traits_of
from harness.targets.session import TargetSession

__all__ = ["StepwiseRun"]


class StepwiseRun:
    """One program against a target, run step by step, recorded as one scenario.

    Call ``begin`` once, then any number of ``batch`` and ``settle`` and ``snapshot``, then
    ``end`` once (``abandon`` instead when the program failed half way).
    """

    def __init__(self, scenario: Scenario, params: ScenarioParams, *,
                 session: TargetSession, provider: ProviderControl | None,
                 writer: HistoryWriter, limits: Limits) -> None:
        params = params.for_target(traits_of(session.profile))
        self._execution = _Execution(scenario, params, session=session, provider=provider,
                                     writer=writer, limits=limits, progress=None,
                                     deadline_s=time.monotonic() + limits.run_duration_s_max)
        self.users: Mapping[str, str] = dict(scenario.users(params))
        self.target_ids: dict[str, str] = {}
        self.initial: Observation | None = None
        self._begun = False
        self._ended = False

    @property
    def ops_invoked_count(self) -> int:
        """Ops sent so far (skipped ops are never sent)."""
        return self._execution.stats["ops_invoked_count"]

    async def begin(self) -> None:
        """Reset the provider, provision the users, open the scenario, read the start."""
        assert not self._begun, "begin once"
        self._begun = True
        ex = self._execution
        await ex._bounded(ex._prepare_provider(), "resetting the provider")
        credentials = await ex._bounded(
            ex.session.provision(self.users, concurrency=ex.workers_count), "provisioning")
        ex.resolver.users.update(credentials)
        self.target_ids = {name: credentials[name].target_id for name in self.users}
        ex.writer.begin(name=ex.scenario.name, seed=ex.params.seed, params=ex.params.record(),
                        users=self.users, target_ids=self.target_ids,
                        fees=ex.session.profile.fees)
        self.initial = await ex._bounded(ex._observe("initial"), "observing the start")
        if self.initial is not None:
            ex.writer.initial(self.initial)

    async def batch(self, ops: Sequence[Op]) -> None:
        """Invoke ``ops`` at once (at most ``params.concurrency`` in flight), as a Batch."""
        assert self._begun and not self._ended, "batch between begin and end"
        ex = self._execution
        await ex._bounded(ex._batch(ops), f"running a batch of {len(ops)} ops")

    async def settle(self) -> bool:
        """Wait (bounded) until the provider has no webhook pending; say whether it did."""
        assert self._begun and not self._ended, "settle between begin and end"
        ex = self._execution
        settled: bool = await ex._bounded(ex._quiesce("settle"), "settling")
        return settled

    async def snapshot(self) -> ScenarioRun:
        """The program so far: its history, with the end state and truth read now.

        Nothing of it is written to the history file (``end`` writes the last one).
        """
        assert self._begun and not self._ended, "snapshot between begin and end"
        ex = self._execution
        await ex._bounded(ex._quiesce("snapshot"), "waiting for quiescence")
        observation = await ex._bounded(ex._observe("observation"), "observing")
        truth = await ex._bounded(ex._truth(self.target_ids), "fetching the provider's truth")
        return ScenarioRun(name=ex.scenario.name, seed=ex.params.seed,
                           params=ex.params.record(), users=self.users,
                           target_ids=self.target_ids, history=ex.history,
                           initial=self.initial, observation=observation, truth=truth,
                           stats=ex._final_stats(), complete=False,
                           fees=ex.session.profile.fees)

    def end(self, last: ScenarioRun | None) -> None:
        """Close the scenario in the history file, with ``last`` snapshot's end state."""
        assert self._begun and not self._ended, "end once, after begin"
        self._ended = True
        ex = self._execution
        if last is not None and last.observation is not None:
            ex.writer.observation(last.observation)
        if last is not None and last.truth is not None:
            ex.writer.truth(last.truth)
        ex.writer.end(ex._final_stats())

    def abandon(self) -> None:
        """Leave the scenario without an end line: it loads as incomplete."""
        if self._begun and not self._ended:
            self._ended = True
            self._execution.writer.abandon()
