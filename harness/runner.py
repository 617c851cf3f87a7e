"""The runner: executes one scenario's steps against a target and records the history.

``run_scenario`` provisions the scenario's users, then runs its seeded steps in order:
a ``Batch`` invokes its ops concurrently (at most ``params.concurrency`` at once: a
concurrency over ``limits.ops_in_flight_max`` is refused, never lowered), ``Settle`` waits
for the provider's webhook queue to drain, ``Pause`` lets time pass, ``SetPolicy``
changes how the provider delivers. At the end it waits for quiescence, observes the end
state and fetches the provider's truth.

As Jepsen's interpreter does, every op is an invoke and a completion on one *process*;
a worker whose op ended INFO (indeterminate) continues under a fresh process id, so the
history stays well formed. Logical names resolve to ids learned from earlier completions;
an op whose referent never got an id (its purchase failed, say) is skipped, counted, and
never invoked. Dependent ops therefore belong in a later step than their referent.

Every wait is bounded: each op by ``Limits.op_timeout_s`` (past it the op is INFO), each
quiescence wait by ``Limits.quiescence_timeout_s``, the whole scenario by a deadline
(``Limits.run_duration_s_max`` from the start unless the caller passes the run's own),
past which ``RunDeadlineExceeded`` is raised. Times in the history are
``time.monotonic_ns()`` from the scenario's start. The runner judges nothing.

While the steps run, a ``LoopLagMonitor`` measures the runner's own event-loop lag; its
p50, p99 and max join the scenario's stats (``loop_lag_us_*``) beside ``workers_count``,
the ops the run really kept in flight: figures about the harness, never verdicts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections import Counter
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from harness.errors import ProviderError, TargetError, TokenchaosError, UsageError
from harness.faults.driver import FaultDriver
from harness.faults.nemesis import Nemesis
from harness.history import History, HistoryWriter, ScenarioRun
from harness.limits import Limits
from harness.loop_lag import LoopLagMonitor
from harness.model import Event, FaultWindow, Kind, Observation, Op, Outcome, ProviderTruth
from harness.progress import Progress
from harness.protocol import (
    Flow,
    FlowContext,
    HttpRequest,
    HttpResponse,
    Resolver,
    Unresolved,
    Unsupported,
    op_flow,
)
from harness.provider.policy import DeliveryPolicy
from harness.scenario import Scenario, ScenarioParams, traits_of
from harness.schedule import Batch, Heal, Inject, Pause, SetPolicy, Settle, Step
from harness.targets.http_async import drive_async
from harness.targets.session import TargetSession

__all__ = [
    "ProviderControl",
    "RunDeadlineExceeded",
    "ScenarioResult",
    "TargetSession",
    "run_loop",
    "run_scenario",
]

T = TypeVar("T")
STEPS_MAX = 1_000_000  # steps one scenario may yield; a generator past it is a bug


class RunDeadlineExceeded(TokenchaosError):
    """The run went past its time bound; the history written so far stays readable."""


class ProviderControl(Protocol):
    """What the runner asks of the provider simulator (``ProviderClient`` satisfies it)."""

    base_url: str
    control_key: str  # sent with the envelope requests the runner builds itself

    async def set_policy(self, policy: DeliveryPolicy) -> Any: ...

    async def wait_quiescent(self, timeout_s: float) -> Any: ...

    async def truth_json(self) -> Mapping[str, Any]: ...

    async def reset(self) -> Any: ...

    async def acknowledged(self, *, above: int = -1, timeout_s: float = 0.0) -> int: ...


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run the harness's top coroutine to its end, on uvloop when it is installed.

    uvloop (which uvicorn[standard] brings on Linux and macOS) costs the runner less CPU
    per op than asyncio's own loop; without it, asyncio's loop runs the same code.
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows, or a minimal install
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


# What a run returns is what the history file holds for it: one type for both, so the
# judge and the report read a live run and a loaded one alike.
ScenarioResult = ScenarioRun


async def run_scenario(scenario: Scenario, params: ScenarioParams, *, session: TargetSession,
                       provider: ProviderControl | None, writer: HistoryWriter, limits: Limits,
                       progress: Progress | None = None,
                       deadline_s: float | None = None,
                       nemesis: Nemesis | None = None) -> ScenarioResult:
    """Run one scenario against ``session``'s target, recording into ``writer``.

    Args:
        provider: the provider simulator's client; None runs without one (provider ops and
            harness-sent webhooks are then skipped as unsupported, and there is no truth).
        nemesis: what injects the scenario's faults; None: the target takes none, and a
            scenario that needs one leaves those parts out (``Scenario.not_run``).
        deadline_s: when the whole run must end, on the ``time.monotonic()`` clock;
            default ``limits.run_duration_s_max`` from now.

    Raises:
        RunDeadlineExceeded: the deadline passed; the history so far is on disk.
        ProvisioningFailed, TargetError: the target could not be worked with.
        ProviderError: the provider failed.
        UsageError: the scenario broke a bound (ops, history size) or needs a provider.
    """
    deadline = time.monotonic() + limits.run_duration_s_max if deadline_s is None \
        else deadline_s
    # The scenario draws its amounts and leaves out parts by what this target offers.
    params = params.for_target(traits_of(session.profile, nemesis=nemesis))
    execution = _Execution(scenario, params, session=session, provider=provider,
                           writer=writer, limits=limits, progress=progress, deadline_s=deadline,
                           nemesis=nemesis)
    return await execution.run()


# ---------------------------------------------------------------------------------------
# One execution.


class _Execution:
    def __init__(self, scenario: Scenario, params: ScenarioParams, *, session: TargetSession,
                 provider: ProviderControl | None, writer: HistoryWriter, limits: Limits,
                 progress: Progress | None, deadline_s: float,
                 nemesis: Nemesis | None = None) -> None:
        self.scenario = scenario
        self.params = params
        self.session = session
        self.provider = provider
        self.writer = writer
        self.limits = limits
        self.progress = progress
        self.deadline_s = deadline_s
        self.start_ns = time.monotonic_ns()
        self.history = History()
        self.resolver = Resolver()
        self.stats: Counter[str] = Counter()
        self.notes: dict[str, str] = {}
        if params.concurrency > limits.ops_in_flight_max:
            raise UsageError(
                f"concurrency {params.concurrency} is over Limits.ops_in_flight_max = "
                f"{limits.ops_in_flight_max} (and the pool holds {limits.connections_max} "
                f"connections); give --concurrency {limits.ops_in_flight_max} or less")
        self.workers_count = params.concurrency
        self.ops_client = session.ops_client or session.client
        self.lag = LoopLagMonitor()
        self.free_processes = list(reversed(range(self.workers_count)))
        self.next_process = self.workers_count
        # Provider ops and envelopes go to the provider this run drives, or to none.
        provider_url = None if provider is None else session.provider_url or provider.base_url
        endpoints = dataclasses.replace(
            session.endpoints, provider_url=provider_url,
            provider_control_key=None if provider is None else provider.control_key)
        self.ctx = FlowContext(profile=session.profile, endpoints=endpoints,
                               resolver=self.resolver,
                               response_body_bytes_max=limits.response_body_bytes_max)
        self.faults: list[FaultWindow] = []
        self.driver = None if nemesis is None else FaultDriver(
            nemesis, now_ns=self.now_ns, record=self._record_fault,
            probe=session.check_health, recovery_timeout_s=limits.recovery_timeout_s,
            acknowledged=None if provider is None else self._acknowledged)

    async def run(self) -> ScenarioResult:
        users = dict(self.scenario.users(self.params))
        if len(users) > self.limits.users_max:
            raise UsageError(f"scenario {self.scenario.name} wants {len(users)} users, over "
                             f"Limits.users_max = {self.limits.users_max}; lower --scale")
        if self.progress is not None:
            self.progress.scenario_started(self.scenario.name, seed=self.params.seed,
                                           users_count=len(users))
        await self._bounded(self._prepare_provider(), "resetting the provider")
        credentials = await self._bounded(
            self.session.provision(users, concurrency=self.workers_count), "provisioning")
        self.resolver.users.update(credentials)
        target_ids = {name: credentials[name].target_id for name in users}
        not_run = [{"part": part.part, "reason": part.reason, "provokes": list(part.provokes),
                    "checkers": list(part.checkers)}
                   for part in self.scenario.not_run(self.params)]
        self.writer.begin(name=self.scenario.name, seed=self.params.seed,
                          params=self.params.record(), users=users,
                          target_ids=target_ids, not_run=not_run,
                          fees=self.session.profile.fees)
        try:
            return await self._run_begun(users, target_ids)
        except BaseException:
            self.writer.abandon()
            raise

    async def _run_begun(self, users: Mapping[str, str],
                         target_ids: Mapping[str, str]) -> ScenarioResult:
        initial = None
        if await self._bounded(self._settle("start"), "waiting for the target to settle"):
            initial = await self._bounded(self._observe("initial"), "observing the start")
        if initial is not None:
            self.writer.initial(initial)
        self.lag.start()
        try:
            await self._run_steps()
            if self.driver is not None:  # the end state is read after every fault healed
                await self._bounded(self.driver.heal(), "healing the faults")
        except BaseException:
            await self.lag.stop()
            if self.driver is not None:
                await self.driver.abort()
            raise
        self.stats.update((await self.lag.stop()).to_stats())
        await self._bounded(self._quiesce("end"), "waiting for quiescence")
        observation = None
        if await self._bounded(self._settle("end"), "waiting for the target to settle"):
            observation = await self._bounded(self._observe("observation"), "observing the end")
        truth = await self._bounded(self._truth(target_ids), "fetching the provider's truth")
        if observation is not None:
            self.writer.observation(observation)
        if truth is not None:
            self.writer.truth(truth)
        stats = self._final_stats()
        self.writer.end(stats)
        if self.progress is not None:
            self.progress.scenario_finished(self.scenario.name, stats=stats)
        return ScenarioRun(name=self.scenario.name, seed=self.params.seed,
                           params=self.params.record(), users=users,
                           target_ids=target_ids, history=self.history, initial=initial,
                           observation=observation, truth=truth, stats=stats, complete=True,
                           faults=tuple(self.faults), fees=self.session.profile.fees)

    def now_ns(self) -> int:
        return time.monotonic_ns() - self.start_ns

    async def _bounded(self, awaitable: Any, doing: str) -> Any:
        """Await under the run's deadline; past it, raise ``RunDeadlineExceeded``."""
        remaining_s = self.deadline_s - time.monotonic()
        if remaining_s <= 0:
            awaitable.close()
            raise self._deadline_error(doing)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(loop.time() + remaining_s) as scope:
                return await awaitable
        except TimeoutError as exc:
            if scope.expired():
                raise self._deadline_error(doing) from exc
            raise

    def _deadline_error(self, doing: str) -> RunDeadlineExceeded:
        elapsed_s = self.now_ns() / 1e9
        return RunDeadlineExceeded(
            f"scenario {self.scenario.name} (seed {self.params.seed}) hit the run's time "
            f"bound while {doing}, {elapsed_s:.1f} s after it started (Limits."
            f"run_duration_s_max = {self.limits.run_duration_s_max:g} s for the whole run); "
            f"the history so far is in {self.writer.path}. Raise the bound, or lower --scale")

    # -- steps ---------------------------------------------------------------------------

    async def _run_steps(self) -> None:
        steps = self.scenario.generator(random.Random(self.params.seed), self.params)
        for step_index, step in enumerate(steps):
            if step_index >= STEPS_MAX:
                raise UsageError(f"scenario {self.scenario.name} yielded more than "
                                 f"{STEPS_MAX} steps; its generator must end")
            if self.progress is not None:
                self.progress.step_started(_describe(step))
            self.stats["steps_count"] += 1
            await self._bounded(self._step(step), f"running step {step_index} ({_describe(step)})")
            self.writer.flush()  # a step's events are on disk when the next step starts

    async def _step(self, step: Step) -> None:
        if isinstance(step, Batch):
            await self._batch(step.ops, window=step.window)
        elif isinstance(step, Settle):
            self.stats["settles_count"] += 1
            await self._quiesce("settle")
            await self._settle("settle")
        elif isinstance(step, Pause):
            self.stats["pauses_count"] += 1
            await asyncio.sleep(step.ms / 1000)
        elif isinstance(step, SetPolicy):
            if self.provider is None:
                raise UsageError(f"scenario {self.scenario.name} sets a webhook delivery "
                                 "policy, and this run has no provider simulator")
            self.stats["policies_count"] += 1
            await self.provider.set_policy(step.policy)
        elif isinstance(step, Inject):
            if self.driver is None or not self.params.target.can(step.fault):
                raise UsageError(
                    f"scenario {self.scenario.name} injects {step.fault.describe()}, which "
                    "this run cannot; its not_run must leave that part out for this target")
            if self.driver.schedule(step):
                self.stats["faults_count"] += 1
            else:
                self.stats["faults_skipped_count"] += 1
                self.notes.setdefault("faults_skipped", (
                    f"{step.name} and later faults were not injected: the target never "
                    f"recovered from {self.driver.unrecovered}"))
        elif isinstance(step, Heal):
            if self.driver is not None:
                await self.driver.heal()
        else:
            raise AssertionError(f"not a step: {step!r}")

    async def _batch(self, ops: Sequence[Op], *, window: int | None = None) -> None:
        self.stats["batches_count"] += 1
        self.stats["ops_count"] += len(ops)
        if self.stats["ops_count"] > self.limits.ops_per_scenario_max:
            raise UsageError(f"scenario {self.scenario.name} yielded more than "
                             f"{self.limits.ops_per_scenario_max} ops (Limits."
                             "ops_per_scenario_max); lower --scale")
        if len(self.history) + 2 * len(ops) > self.limits.history_events_max:
            raise UsageError(f"the history of {self.scenario.name} would pass "
                             f"{self.limits.history_events_max} events (Limits."
                             "history_events_max); lower --scale")
        # Flows are built before any op of the batch runs, so whether an op is skipped
        # never depends on timing: a referent in the same batch is never resolved yet.
        flows = [(op, flow) for op in ops if (flow := self._flow(op)) is not None]
        # ``workers_count`` tasks take the batch's ops in order, one at a time each: the
        # same ops in flight as a task per op behind a semaphore, without a task and a
        # semaphore wait per op.
        pending = iter(flows)
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.workers_count, len(flows), window or len(flows))):
                    group.create_task(self._work(pending))
        except BaseExceptionGroup as exc_group:
            raise _first_leaf(exc_group) from None

    async def _work(self, pending: Iterator[tuple[Op, Flow]]) -> None:
        """One worker: the batch's next op, until the batch has none left."""
        for op, flow in pending:  # bounded: the batch's ops, each taken once
            await self._invoke(op, flow)

    def _flow(self, op: Op) -> Flow | None:
        try:
            return op_flow(op, self.ctx)
        except (Unresolved, Unsupported) as exc:
            reason = "skipped" if isinstance(exc, Unresolved) else "unsupported"
            self.stats[f"ops_{reason}_count"] += 1
            self.notes.setdefault(f"first_{reason}", f"op {op.id} ({op.f.value}): {exc}")
            return None

    async def _invoke(self, op: Op, flow: Flow) -> None:
        process = self.free_processes.pop()
        self._record(Event(index=len(self.history), time_ns=self.now_ns(), process=process,
                           kind=Kind.INVOKE, f=op.f, op_id=op.id, value=dict(op.value),
                           idempotency_key=op.idempotency_key))
        self.stats["ops_invoked_count"] += 1
        outcome = await self._drive(flow)
        self._record(Event(index=len(self.history), time_ns=self.now_ns(), process=process,
                           kind=outcome.kind, f=op.f, op_id=op.id,
                           value={**op.value, **outcome.value},
                           idempotency_key=op.idempotency_key, error=outcome.error,
                           status_code=outcome.status_code,
                           body_excerpt=outcome.body_excerpt))
        self.stats[f"ops_{outcome.kind.value}_count"] += 1
        self.resolver.learn(op, outcome)
        if self.driver is not None:
            await self.driver.op_completed()
        if outcome.kind == Kind.INFO:  # Jepsen: this process may still be running it
            process, self.next_process = self.next_process, self.next_process + 1
        self.free_processes.append(process)

    async def _drive(self, flow: Flow) -> Outcome:
        """The op's flow under its bound: past ``op_timeout_s`` it is INFO read_timeout."""
        return await drive_async(flow, self.ops_client, self.limits,
                                 on_response=self._on_response,
                                 timeout_s=self.limits.op_timeout_s)

    def _on_response(self, request: HttpRequest, response: HttpResponse | None,
                     elapsed_ns: int) -> None:
        self.stats["http_requests_count"] += 1

    async def _acknowledged(self, above: int, timeout_s: float) -> int:
        assert self.provider is not None
        count: int = await self.provider.acknowledged(above=above, timeout_s=timeout_s)
        return count

    def _record_fault(self, window: FaultWindow) -> None:
        self.faults.append(window)
        self.writer.fault(window)
        if window.error is not None:
            self.stats["faults_failed_count"] += 1
            self.notes.setdefault("first_fault_error", f"{window.name}: {window.error}")
        elif window.recovered_ns is None:
            self.stats["faults_unrecovered_count"] += 1

    def _record(self, event: Event) -> None:
        self.history.append(event)
        self.writer.event(event)
        if self.progress is not None and event.kind != Kind.INVOKE:
            self.progress.op_completed(event)

    # -- provider, observer ----------------------------------------------------------------

    async def _prepare_provider(self) -> None:
        """Start from a clean slate: no events or deliveries of earlier scenarios, and the
        default policy (each event once, retried until acknowledged)."""
        if self.provider is None:
            return
        await self.provider.reset()
        await self.provider.set_policy(DeliveryPolicy())

    async def _quiesce(self, when: str) -> bool:
        """Wait (bounded) until the provider has no delivery pending; say whether it did."""
        if self.provider is None:
            return True
        try:
            await self.provider.wait_quiescent(self.limits.quiescence_timeout_s)
        except ProviderError as exc:  # still pending at the bound: the checkers will see it
            self.notes.setdefault(f"{when}_not_quiescent", str(exc))
            self.stats[f"{when}_quiescence_timeouts_count"] += 1
            return False
        return True

    async def _settle(self, when: str) -> bool:
        """Wait (bounded) until the target has applied what it accepted; say whether it did.

        An end state read while the target still had work pending would be judged as if it
        were final: unsettled, it is not read at all, and the checkers that need it say
        unknown, never a false alarm.
        """
        settler = self.session.settler
        if settler is None:
            return True
        observe = None if self.session.observer is None else self._observe_for_settle
        try:
            settled = await settler.settle(observe)
        except TargetError as exc:
            self.notes.setdefault(f"{when}_not_settled", str(exc))
            self.stats["settle_timeouts_count"] += 1
            return False
        self.stats["settle_wait_ms"] += round(settled.waited_s * 1000)
        self.stats["settle_polls_count"] += settled.polls_count
        if not settled.settled:
            self.stats["settle_timeouts_count"] += 1
            self.notes.setdefault(f"{when}_not_settled", settled.note or "not settled")
        return settled.settled

    def _observed_ids(self) -> dict[str, str]:
        """The accounts the observer reads: the scenario's users and the system accounts."""
        target_ids = {name: creds.target_id for name, creds in self.resolver.users.items()}
        system = self.session.system_accounts
        clash = sorted(set(system) & set(target_ids))
        if clash:
            raise UsageError(f"scenario {self.scenario.name} has a user named {clash[0]!r}, "
                             "which is a system account of the profile; rename that account")
        return {**target_ids, **system}

    async def _observe_for_settle(self) -> Observation:
        observer = self.session.observer
        assert observer is not None
        return await observer.observe(self._observed_ids())

    async def _observe(self, when: str) -> Observation | None:
        observer = self.session.observer
        if observer is None:
            return None
        target_ids = self._observed_ids()
        try:
            observation: Observation = await observer.observe(target_ids)
        except TargetError as exc:
            self.notes[f"{when}_error"] = str(exc)
            return None
        return observation

    async def _truth(self, target_ids: Mapping[str, str]) -> ProviderTruth | None:
        if self.provider is None:
            return None
        from harness.provider.truth import truth_from_json  # the provider package is optional

        metadata = self.session.profile.metadata
        truth = truth_from_json(await self.provider.truth_json(), user_key=metadata.user_key,
                                tokens_keys=metadata.tokens_keys,
                                user_by_target_id={v: k for k, v in target_ids.items()})
        return _scenario_truth(truth, self.history)

    def _final_stats(self) -> dict[str, int | str]:
        stats: dict[str, int | str] = {key: 0 for key in _STATS_ZERO}
        stats.update(self.stats)
        stats["processes_count"] = self.next_process
        stats["workers_count"] = self.workers_count
        stats["duration_ms"] = self.now_ns() // 1_000_000
        stats.update(self.notes)
        return stats


_STATS_ZERO = ("steps_count", "batches_count", "ops_count", "ops_invoked_count", "ops_ok_count",
               "ops_fail_count", "ops_info_count", "ops_skipped_count",
               "ops_unsupported_count", "http_requests_count")


def _scenario_truth(truth: ProviderTruth, history: Sequence[Event]) -> ProviderTruth:
    """The provider's truth narrowed to this scenario's intents.

    The provider keeps intents across scenarios (a reset forgets only events and
    deliveries). This scenario's intents are those its history names, and those its
    events and deliveries (since the reset) concern, such as an intent whose purchase
    call timed out.
    """
    named = {str(e.value["intent_id"]) for e in history
             if e.kind != Kind.INVOKE and e.value.get("intent_id") is not None}
    named |= {d.intent_id for d in truth.deliveries if d.intent_id is not None}
    named |= set(truth.event_intents.values())
    intents = {intent_id: intent for intent_id, intent in truth.intents.items()
               if intent_id in named}
    return dataclasses.replace(truth, intents=intents)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real exception in a task group's failure, preferring our own errors."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    ours = [exc for exc in leaves if isinstance(exc, TokenchaosError)]
    return (ours or leaves)[0]


def _describe(step: Step) -> str:
    if isinstance(step, Batch):
        kinds = Counter(op.f.value for op in step.ops)
        return "batch of " + ", ".join(f"{count} {f}" for f, count in sorted(kinds.items()))
    if isinstance(step, Pause):
        return f"pause {step.ms} ms"
    if isinstance(step, SetPolicy):
        return "set delivery policy"
    if isinstance(step, Inject):
        return f"fault {step.name}: {step.fault.describe()} for {step.hold_ms} ms"
    if isinstance(step, Heal):
        return "heal"
    return "settle"
