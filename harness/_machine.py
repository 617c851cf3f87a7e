"""The Hypothesis state machine: programs of token ops against a target, judged each step.

A program is what Hypothesis draws: ``initialize`` provisions 1-4 fans and 1-2 creators
and funds every fan through real purchases (as scenarios do), then rules send ops one at
a time, or ``run_batch`` sends 2-8 at once (races need them concurrent), and after every
step the invariant runs the checkers over the history so far and the end state the
observer reads now. A checker that does not hold raises ``InvariantBroken`` whose message
is the anomalies in words; Hypothesis prints the program that led there.

A charge drawn while no call is open first opens one (fan 0 with creator 0, in a step of
its own), so charges are drawn as often as tips. Only what the target's profile offers
gets a rule: ``machine_class`` composes the rules
from mixins by the target's traits (no call rules without calls, no key reuse where tips
carry no key), so an op the target cannot take is never sent and never judged.

Rules are sync; every op goes through ``StepwiseRun`` (the runner's machinery) on the
event loop of a ``LoopThread``. User arguments are small indexes, taken modulo the
program's roster, so every drawn program is valid and shrinks toward fewer, lower users.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.control import current_build_context
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from harness.checkers import check_all
from harness.checkers.base import CheckInput
from harness.history import HistoryWriter, ScenarioRun
from harness.limits import Limits
from harness.loop_thread import LoopThread
from harness.model import F, Op, Validity, Verdict
from harness.runner import ProviderControl
from harness.scenario import Scenario, ScenarioParams, TargetTraits
from harness.schedule import Step
from harness.stepwise import StepwiseRun
from harness.targets.session import TargetSession
from scenarios._common import OpFactory, roster

__all__ = ["BatchCharge", "BatchOp", "BatchRead", "BatchTip", "InvariantBroken",
           "MachineContext", "TokenMachine", "anomaly_text", "machine_checkers",
           "machine_class"]

FANS_MAX = 4
CREATORS_MAX = 2
CALLS_MAX = 4  # calls one program opens; more draws reuse them
FUND_TOKENS = 500  # each fan's first package: the target's nearest
TOP_UP_TOKENS = 100
TIP_TOKENS_MAX = 60
RATE_TOKENS_MAX = 30
DEFAULT_RATE_TOKENS = 10  # of the call a charge opens when none is open
MINUTES_MAX = 4
COPIES_MAX = 3  # a tip sent this many times at once with one key
BATCH_OPS_MIN = 2
BATCH_OPS_MAX = 8
ANOMALIES_SHOWN_MAX = 3  # per checker, in the invariant's message
STEP_TIMEOUT_S_MARGIN = 30.0  # beyond the run's bound, so the run's own error comes first

_USER = st.integers(0, FANS_MAX + CREATORS_MAX - 1)
_FAN = st.integers(0, FANS_MAX - 1)
_CREATOR = st.integers(0, CREATORS_MAX - 1)
_AMOUNT = st.integers(1, TIP_TOKENS_MAX)


class InvariantBroken(Exception):
    """A checker did not hold on the history so far: the target broke an invariant."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchTip:
    """A tip in a batch, sent ``copies`` times at once with one key (1: once)."""

    sender: int
    recipient: int
    amount_tokens: int
    copies: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchRead:
    """A balance read in a batch."""

    user: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchCharge:
    """A charge of one minute of an open call, in a batch (a fresh key)."""

    call: int
    minute: int


BatchOp = BatchTip | BatchRead | BatchCharge


def machine_checkers(traits: TargetTraits) -> tuple[str, ...]:
    """The checkers each step runs: those whose ops the target offers."""
    names = ["non_negative", "conservation", "exactly_once_credit", "reconciliation",
             "ledger_drift", "errors"]
    if traits.keyed(F.TIP):
        names.append("idempotency")
    if _offers_calls(traits):
        names.append("calls")
    return tuple(names)


def _offers_calls(traits: TargetTraits) -> bool:
    return all(traits.offers(f) for f in (F.CALL_OPEN, F.CALL_CHARGE, F.CALL_END))


@dataclass(kw_only=True)
class MachineContext:
    """What every program of one exploration shares: the target, the loop, the tallies."""

    loop: LoopThread
    session: TargetSession
    provider: ProviderControl | None
    writer: HistoryWriter
    limits: Limits
    traits: TargetTraits
    checkers: tuple[str, ...]
    shrink_programs_max: int  # programs run after the first failure, the final one aside
    deadline_s: float  # time.monotonic() past which no new program starts
    started_s: float = field(default_factory=time.monotonic)
    run_token: str = field(default_factory=lambda: secrets.token_hex(4))
    programs_count: int = 0
    ops_count: int = 0
    steps_count: int = 0
    first_failure_s: float | None = None  # from ``started_s``
    programs_to_failure: int | None = None
    ops_to_failure: int | None = None
    programs_after_failure: int = 0
    skipped_count: int = 0  # programs past the bounds: drawn, never sent
    deadline_hit: bool = False
    last_failure: str | None = None
    held: dict[str, Validity] = field(default_factory=dict)  # best validity per checker

    def timeout_s(self) -> float:
        return self.limits.run_duration_s_max + STEP_TIMEOUT_S_MARGIN

    def note_verdicts(self, verdicts: dict[str, Verdict]) -> None:
        for name, verdict in verdicts.items():
            seen = self.held.get(name, "unknown")
            if verdict.valid is False or seen is False:
                self.held[name] = False
            elif verdict.valid is True:
                self.held[name] = True
            else:
                self.held[name] = seen


class TokenMachine(RuleBasedStateMachine):
    """The rules every target has: funding, tips, reads and batches. See the module."""

    context: ClassVar[MachineContext | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.program: StepwiseRun | None = None
        self.factory: OpFactory | None = None
        self.fans: list[str] = []
        self.creators: list[str] = []
        self.tips: list[Op] = []
        self.calls: list[Op] = []
        self.charges: dict[tuple[int, int], Op] = {}  # (call index, minute) -> last charge
        self.last: ScenarioRun | None = None
        # Past the run's bounds a program draws as usual (so Hypothesis sees the same
        # data) but sends nothing and passes: the shrinker's candidates then cost nothing.
        self.skipped = False

    # -- the program's start and end -----------------------------------------------------

    @initialize(fans=st.integers(1, FANS_MAX), creators=st.integers(1, CREATORS_MAX))
    def start(self, fans: int, creators: int) -> None:
        ctx = self._ctx()
        users = roster(fans=fans, creators=creators)
        self.fans = [name for name, kind in users.items() if kind == "fan"]
        self.creators = [name for name, kind in users.items() if kind == "creator"]
        seed = ctx.programs_count + 1
        # Keys start with the exploration's own token: a target that outlives one
        # exploration never sees an earlier one's key again, whatever its key scope.
        self.factory = OpFactory(scenario=f"machine-{ctx.run_token}", seed=seed,
                                 target=ctx.traits)
        self.skipped = not _within_budget(ctx)
        if self.skipped:
            return
        ctx.programs_count += 1
        scenario = Scenario(name="machine", summary="a Hypothesis program",
                            users=lambda params: users, generator=_no_steps,
                            checkers=ctx.checkers)
        program = StepwiseRun(scenario, ScenarioParams(seed=seed,
                                                       concurrency=BATCH_OPS_MAX * COPIES_MAX),
                              session=ctx.session, provider=ctx.provider, writer=ctx.writer,
                              limits=ctx.limits)
        try:
            self._await(program.begin())
        except BaseException:
            program.abandon()  # teardown then has no program to end
            raise
        self.program = program
        package = self.factory.package_for(FUND_TOKENS)
        self._send([self.factory.purchase(user=fan, amount_tokens=package.tokens)
                    for fan in self.fans], settle=True)

    def teardown(self) -> None:
        if self.program is not None:
            self.program.end(self.last)

    @invariant()
    def checkers_hold(self) -> None:
        """Every checker holds on the history so far and the end state read now."""
        if self.program is None:
            return
        ctx = self._ctx()
        ctx.steps_count += 1
        self.last = run = self._await(self.program.snapshot())
        inp = CheckInput(history=run.events, observation=run.observation, truth=run.truth,
                         initial=run.initial, latency_ms_max=ctx.limits.latency_ms_max,
                         provokes=(), faults=(), fees=run.fees)
        verdicts = check_all(inp, ctx.checkers)
        ctx.note_verdicts(verdicts)
        broken = {name: v for name, v in verdicts.items() if v.valid is False}
        if not broken:
            return
        text = anomaly_text(broken)
        ctx.last_failure = text
        if ctx.first_failure_s is None:
            ctx.first_failure_s = time.monotonic() - ctx.started_s
            ctx.programs_to_failure = ctx.programs_count
            ctx.ops_to_failure = ctx.ops_count
        raise InvariantBroken(text)

    # -- rules every target has ----------------------------------------------------------

    @rule(fan=_FAN)
    def fund(self, fan: int) -> None:
        factory = self._factory()
        package = factory.package_for(TOP_UP_TOKENS)
        self._send([factory.purchase(user=self._fan(fan), amount_tokens=package.tokens)],
                   settle=True)

    @rule(sender=_FAN, recipient=_CREATOR, amount_tokens=_AMOUNT)
    def tip(self, sender: int, recipient: int, amount_tokens: int) -> None:
        self._send([self._tip(sender, recipient, amount_tokens)])

    @rule(ops=st.lists(st.one_of(
        st.builds(BatchTip, sender=_FAN, recipient=_CREATOR, amount_tokens=_AMOUNT,
                  copies=st.integers(1, COPIES_MAX)),
        st.builds(BatchRead, user=_USER),
        st.builds(BatchCharge, call=st.integers(0, CALLS_MAX - 1),
                  minute=st.integers(1, MINUTES_MAX))),
        min_size=BATCH_OPS_MIN, max_size=BATCH_OPS_MAX))
    def run_batch(self, ops: list[BatchOp]) -> None:
        """Send every op at once: the runner invokes them concurrently."""
        batch: list[Op] = []
        for item in ops:
            batch.extend(self._batch_ops(item))
        self._send(batch)

    # -- helpers ---------------------------------------------------------------------------

    def _batch_ops(self, item: BatchOp) -> list[Op]:
        ctx = self._ctx()
        factory = self._factory()
        if isinstance(item, BatchTip):
            copies = item.copies if ctx.traits.keyed(F.TIP) else 1
            first = self._tip(item.sender, item.recipient, item.amount_tokens)
            return [first, *(factory.again(first) for _ in range(copies - 1))]
        if isinstance(item, BatchRead):
            if not ctx.traits.offers(F.READ_BALANCE):
                return []
            return [factory.read_balance(self._user(item.user))]
        if not _offers_calls(ctx.traits):
            return []
        self._ensure_call()
        call_index = item.call % len(self.calls)
        charge = factory.call_charge(self.calls[call_index], minute=item.minute)
        self.charges[(call_index, item.minute)] = charge
        return [charge]

    def _ensure_call(self) -> None:
        """Open a call (fan 0 with creator 0) when a charge finds none open, in a step of
        its own: a charge is sent after the call it charges has its id."""
        if self.calls:
            return
        opened = self._factory().call_open(user=self._fan(0), creator=self._creator(0),
                                           rate_tokens_per_minute=DEFAULT_RATE_TOKENS)
        self.calls.append(opened)
        self._send([opened])

    def _tip(self, sender: int, recipient: int, amount_tokens: int,
             key: str | None = None) -> Op:
        op = self._factory().tip(sender=self._fan(sender), recipient=self._creator(recipient),
                                 amount_tokens=amount_tokens, key=key)
        self.tips.append(op)
        return op

    def _send(self, ops: Sequence[Op], *, settle: bool = False) -> None:
        if self.skipped:
            return
        program = self._program()
        ctx = self._ctx()
        before = program.ops_invoked_count
        if ops:
            self._await(program.batch(ops))
        if settle:
            self._await(program.settle())
        ctx.ops_count += program.ops_invoked_count - before

    def _await(self, coro: Any) -> Any:
        ctx = self._ctx()
        return ctx.loop.run(coro, timeout_s=ctx.timeout_s())

    def _ctx(self) -> MachineContext:
        ctx = type(self).context
        assert ctx is not None, "machine_class sets the context"
        return ctx

    def _program(self) -> StepwiseRun:
        assert self.program is not None, "initialize runs first"
        return self.program

    def _factory(self) -> OpFactory:
        assert self.factory is not None, "initialize runs first"
        return self.factory

    def _fan(self, index: int) -> str:
        return self.fans[index % len(self.fans)]

    def _creator(self, index: int) -> str:
        return self.creators[index % len(self.creators)]

    def _user(self, index: int) -> str:
        users = [*self.fans, *self.creators]
        return users[index % len(users)]


class _ReadRules(TokenMachine):
    @rule(user=_USER)
    def read_balance(self, user: int) -> None:
        self._send([self._factory().read_balance(self._user(user))])


class _KeyRules(TokenMachine):
    """Tips with a reused key: the same body again (a replay) or another body (a reuse)."""

    @precondition(lambda self: bool(self.tips))
    @rule(tip=st.integers(0, 63))
    def replay_tip(self, tip: int) -> None:
        """The same tip again, same key and same body: answered as before, applied once."""
        original = self.tips[tip % len(self.tips)]
        self._send([self._factory().again(original)])

    @precondition(lambda self: bool(self.tips))
    @rule(tip=st.integers(0, 63), recipient=_CREATOR, amount_tokens=_AMOUNT)
    def tip_reusing_key(self, tip: int, recipient: int, amount_tokens: int) -> None:
        """A tip of the same sender under an earlier tip's key, with the body drawn anew."""
        original = self.tips[tip % len(self.tips)]
        sender = self.fans.index(str(original.value["sender"]))
        self._send([self._tip(sender, recipient, amount_tokens,
                              key=original.idempotency_key)])


class _CallRules(TokenMachine):
    @precondition(lambda self: len(self.calls) < CALLS_MAX)
    @rule(fan=_FAN, creator=_CREATOR, rate_tokens_per_minute=st.integers(1, RATE_TOKENS_MAX))
    def open_call(self, fan: int, creator: int, rate_tokens_per_minute: int) -> None:
        opened = self._factory().call_open(user=self._fan(fan), creator=self._creator(creator),
                                           rate_tokens_per_minute=rate_tokens_per_minute)
        self.calls.append(opened)
        self._send([opened])

    @rule(call=st.integers(0, CALLS_MAX - 1), minute=st.integers(1, MINUTES_MAX),
          replay=st.booleans())
    def charge_minute(self, call: int, minute: int, replay: bool) -> None:
        """Charge a minute with a fresh key, or (``replay``) resend its last charge."""
        factory = self._factory()
        self._ensure_call()
        index = call % len(self.calls)
        earlier = self.charges.get((index, minute))
        if replay and earlier is not None and earlier.idempotency_key is not None:
            charge = factory.again(earlier)
        else:
            charge = factory.call_charge(self.calls[index], minute=minute)
        self.charges[(index, minute)] = charge
        self._send([charge])

    @precondition(lambda self: bool(self.calls))
    @rule(call=st.integers(0, CALLS_MAX - 1))
    def end_call(self, call: int) -> None:
        self._send([self._factory().call_end(self.calls[call % len(self.calls)])])


def _within_budget(ctx: MachineContext) -> bool:
    """Whether a new program may run: within the time bound and the shrink budget.

    The final replay of the failing program always runs, so Hypothesis prints it.
    """
    if current_build_context().is_final:
        return True
    if time.monotonic() > ctx.deadline_s:
        ctx.deadline_hit = True
        ctx.skipped_count += 1
        return False
    if ctx.first_failure_s is not None:
        if ctx.programs_after_failure >= ctx.shrink_programs_max:
            ctx.skipped_count += 1
            return False
        ctx.programs_after_failure += 1
    return True


def machine_class(context: MachineContext) -> type[TokenMachine]:
    """A ``TokenMachine`` with exactly the rules the context's target offers."""
    traits = context.traits
    bases: list[type[TokenMachine]] = []
    if traits.offers(F.READ_BALANCE):
        bases.append(_ReadRules)
    if traits.keyed(F.TIP):
        bases.append(_KeyRules)
    if _offers_calls(traits):
        bases.append(_CallRules)
    machine = type("TokenMachine", (*bases, TokenMachine), {"context": context})
    return machine


def anomaly_text(broken: dict[str, Verdict]) -> str:
    """The broken checkers' anomalies in words, a few per checker (pure)."""
    lines: list[str] = []
    for name, verdict in broken.items():
        lines.append(f"{name} did not hold" + (f" ({verdict.note})" if verdict.note else "")
                     + ":")
        for anomaly in verdict.anomalies[:ANOMALIES_SHOWN_MAX]:
            lines.append(f"  {anomaly.kind}: {anomaly.explanation}")
        hidden = len(verdict.anomalies) - ANOMALIES_SHOWN_MAX
        if hidden > 0:
            lines.append(f"  and {hidden} more")
    return "\n".join(lines)


def _no_steps(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """A program's steps come from its rules, never from a generator."""
    del rng, params
    return iter(())

