"""The data that flows through every stage: ops, outcomes, history events, observations.

Everything here is a frozen, slotted, keyword-only dataclass (never subclassed) or a
closed ``StrEnum``. Nothing in this module does I/O, reads a clock or draws randomness:
scenarios build ``Op``s, the protocol reads ``Outcome``s, the history stores ``Event``s,
observers produce an ``Observation``, the provider exports ``ProviderTruth``, and
checkers return ``Verdict``s made of ``Anomaly``s.

Units are in the names: ``amount_tokens``, ``amount_cents``, ``time_ns``. Users are named
by their *logical* name (``"fan_0"``, ``"creator_1"``), never by the target's ids, so a
history means the same thing against every deployment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

__all__ = [
    "BODY_EXCERPT_CHARS_MAX",
    "AccountState",
    "Anomaly",
    "Delivery",
    "DeliveryVariant",
    "Event",
    "F",
    "FaultWindow",
    "IntentTruth",
    "Kind",
    "Observation",
    "Op",
    "Outcome",
    "ProviderTruth",
    "Totals",
    "Validity",
    "Value",
    "Verdict",
    "merge_validity",
]

Value = Mapping[str, int | str | None]

# How much of an answer's body a completion keeps when the answer is a 5xx or a status the
# profile does not list: enough for "deadlock detected" and a stack trace's first line,
# bounded because the body comes from the target and every event is kept.
BODY_EXCERPT_CHARS_MAX = 512


class Kind(StrEnum):
    """Jepsen's ``:type``: an invocation and its one completion."""

    INVOKE = "invoke"
    OK = "ok"  # it happened, exactly once
    FAIL = "fail"  # it surely did not happen
    INFO = "info"  # indeterminate: may or may not have happened


class F(StrEnum):
    """What an op does. Target ops go to the service; provider ops to the simulator."""

    # Against the target (the token service).
    PURCHASE = "purchase"  # {user, purchase, amount_tokens, payment_method}
    TIP = "tip"  # {sender, recipient, amount_tokens}
    CALL_OPEN = "call_open"  # {user, creator, call, rate_tokens_per_minute}
    CALL_CHARGE = "call_charge"  # {user, creator, call, minute, amount_tokens}
    CALL_END = "call_end"  # {user, call}
    READ_BALANCE = "read_balance"  # {user} -> {balance_tokens, debt_tokens, status}
    # Against the provider: what a card holder, a bank or an operator does.
    AUTHENTICATE = "authenticate"  # {purchase, outcome: "succeed"|"fail"} finish 3-D Secure
    REFUND = "refund"  # {purchase, amount_cents}
    DISPUTE_OPEN = "dispute_open"  # {purchase, dispute}
    DISPUTE_CLOSE = "dispute_close"  # {dispute, outcome: "won"|"lost"}
    # A raw webhook the harness itself sends to the target (forgeries, stale replays).
    WEBHOOK = "webhook"  # {purchase, event_type, variant}


TARGET_FS = frozenset({F.PURCHASE, F.TIP, F.CALL_OPEN, F.CALL_CHARGE, F.CALL_END,
                       F.READ_BALANCE, F.WEBHOOK})
PROVIDER_FS = frozenset({F.AUTHENTICATE, F.REFUND, F.DISPUTE_OPEN, F.DISPUTE_CLOSE})
assert TARGET_FS.isdisjoint(PROVIDER_FS)
assert frozenset(F) == TARGET_FS | PROVIDER_FS


@dataclass(frozen=True, slots=True, kw_only=True)
class Op:
    """What a scenario asks for: one call, with its arguments and idempotency key.

    ``value`` holds logical names (``sender="fan_0"``, ``purchase="p_3"``, ``call="c_1"``);
    the runner resolves them to the target's ids. ``id`` is unique within a run.
    """

    id: int
    f: F
    value: Value
    idempotency_key: str | None = None

    def __post_init__(self) -> None:
        assert self.id >= 0, self.id

    def __repr__(self) -> str:
        """Valid Python, so a failing batch can be pasted into a test."""
        key = f", idempotency_key={self.idempotency_key!r}" if self.idempotency_key else ""
        return f"Op(id={self.id}, f=F.{self.f.name}, value={dict(self.value)!r}{key})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What the protocol read back from a response (or from a transport failure)."""

    kind: Literal[Kind.OK, Kind.FAIL, Kind.INFO]
    value: Value = field(default_factory=dict)  # e.g. {"balance_tokens": 200, "tip_id": "t_9"}
    error: str | None = None  # FAIL/INFO only: why, in words ("insufficient_funds", "read timeout")
    status_code: int | None = None  # None when no response came back
    body_excerpt: str | None = None  # 5xx or unlisted status: the body's first characters

    def __post_init__(self) -> None:
        assert self.kind in (Kind.OK, Kind.FAIL, Kind.INFO), self.kind  # never an invoke
        if self.kind == Kind.OK:
            assert self.error is None, self.error
        if self.body_excerpt is not None:
            assert len(self.body_excerpt) <= BODY_EXCERPT_CHARS_MAX, len(self.body_excerpt)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One line of history: an invocation, or the completion of the one before it."""

    index: int  # dense, 0-based position in the history
    time_ns: int  # monotonic, from the start of the run
    process: int  # logical client; a fresh one after every INFO
    kind: Kind
    f: F
    op_id: int  # the Op this event belongs to; an invoke and its completion share it
    value: Value  # invoke: the op's arguments; completion: arguments merged with results
    idempotency_key: str | None = None
    error: str | None = None  # FAIL/INFO only
    status_code: int | None = None  # completions only, when a response came back
    body_excerpt: str | None = None  # completions only: Outcome.body_excerpt

    def __post_init__(self) -> None:
        assert self.index >= 0, self.index
        assert self.time_ns >= 0, self.time_ns
        if self.kind in (Kind.INVOKE, Kind.OK):
            assert self.error is None, self.error
        if self.kind == Kind.INVOKE:
            assert self.status_code is None, self.status_code
            assert self.body_excerpt is None, self.body_excerpt
        if self.body_excerpt is not None:
            assert len(self.body_excerpt) <= BODY_EXCERPT_CHARS_MAX, len(self.body_excerpt)


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultWindow:
    """One fault as it happened: injected, held, healed, and when the target answered again.

    Times are on the history's clock (ns from the scenario's start). ``healed_ns`` is when
    the heal began (the hold ended) and it then succeeded; ``recovered_ns`` is when the
    target first answered its health check after it, so the time to recover counts a
    restart's own time; None when it never answered within the bound. ``error`` says why
    a fault could not be injected or healed.
    """

    name: str  # unique within the scenario: "f0", "f1", ...
    kind: str  # harness.faults.spec.FaultKind value
    link: str | None  # harness.faults.spec.Link value, for link faults
    description: str  # "latency 200±50 ms on database"
    started_ns: int
    healed_ns: int | None
    recovered_ns: int | None
    attributes: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None
    # time.time_ns() minus the history clock, when the fault landed: puts the window on
    # the provider's wall clock, against which webhook deliveries are timed. None: unknown.
    wall_offset_ns: int | None = None

    def __post_init__(self) -> None:
        assert self.started_ns >= 0, self.started_ns
        if self.healed_ns is not None:
            assert self.healed_ns >= self.started_ns, (self.started_ns, self.healed_ns)
        if self.recovered_ns is not None:
            assert self.healed_ns is not None and self.recovered_ns >= self.healed_ns

    @property
    def recovery_ns(self) -> int | None:
        """From heal to the first healthy answer; None if it never came."""
        if self.healed_ns is None or self.recovered_ns is None:
            return None
        return self.recovered_ns - self.healed_ns

    def covers(self, start_ns: int, end_ns: int) -> bool:
        """Whether ``[start_ns, end_ns]`` overlaps the fault, from injection to recovery
        (to the end of time if it never recovered)."""
        until = self.recovered_ns if self.recovered_ns is not None else None
        return end_ns >= self.started_ns and (until is None or start_ns <= until)

    def covers_wall(self, start_wall_ns: int, end_wall_ns: int) -> bool:
        """``covers`` for times on the wall clock (webhook deliveries); False if unknown."""
        if self.wall_offset_ns is None:
            return False
        return self.covers(start_wall_ns - self.wall_offset_ns, end_wall_ns - self.wall_offset_ns)


# ---------------------------------------------------------------------------------------
# The end state, as an observer reads it at quiescence.


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountState:
    """One account at quiescence. Optional fields are ``None`` where the observer cannot see."""

    user: str  # logical name
    balance_tokens: int
    debt_tokens: int = 0
    status: str | None = None  # "active" | "debt", in the harness's words; None: not reported
    ledger_sum_tokens: int | None = None  # sum of the account's ledger entries
    credited_tokens: int | None = None  # tokens credited by purchases, all time
    clawed_back_tokens: int | None = None  # tokens taken back by refunds and disputes


@dataclass(frozen=True, slots=True, kw_only=True)
class Totals:
    """Sums over every account, where the target can report them (reference audit)."""

    minted_tokens: int
    clawed_back_tokens: int
    balances_tokens: int
    debts_tokens: int
    drift_accounts_count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """What the observer read at quiescence, keyed by logical user name."""

    accounts: Mapping[str, AccountState]
    totals: Totals | None = None


# ---------------------------------------------------------------------------------------
# The provider's truth: what really happened to money, and every webhook delivery.


class DeliveryVariant(StrEnum):
    """How one webhook delivery relates to the event it carries."""

    GENUINE = "genuine"  # first, correctly signed delivery
    DUPLICATE = "duplicate"  # the same event again, at once or concurrently
    REPLAY = "replay"  # the same event again, later
    RETRY = "retry"  # re-sent because the last attempt was not acknowledged
    STALE = "stale"  # signed with a timestamp past the tolerance window
    UNSIGNED = "unsigned"  # no Stripe-Signature header
    WRONG_SECRET = "wrong_secret"  # signed with another secret
    TAMPERED = "tampered"  # body changed after signing

    @property
    def forged(self) -> bool:
        """Whether a correct target must reject this delivery."""
        return self in _FORGED


_FORGED = frozenset({DeliveryVariant.STALE, DeliveryVariant.UNSIGNED,
                     DeliveryVariant.WRONG_SECRET, DeliveryVariant.TAMPERED})


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One HTTP attempt to deliver a webhook event to the target."""

    index: int  # dense, 0-based, in the order attempts started
    event_id: str
    event_type: str  # "payment_intent.succeeded", "charge.refunded", ...
    intent_id: str | None
    variant: DeliveryVariant
    status_code: int | None  # None: no answer (timeout, reset)
    started_ns: int  # wall clock, time.time_ns()
    finished_ns: int
    error: str | None = None

    @property
    def acknowledged(self) -> bool:
        """A 2xx: the target says it has durably applied (or already had) the event."""
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True, kw_only=True)
class IntentTruth:
    """One PaymentIntent as the provider knows it."""

    intent_id: str
    user: str | None  # logical name, from the metadata key the profile names; None if unknown
    amount_cents: int
    minted_tokens: int  # tokens the intent should mint once succeeded (with any bonus)
    status: str  # "succeeded" | "requires_action" | "requires_payment_method" | "canceled"
    refunded_cents: int = 0  # cumulative
    dispute_status: str | None = None  # None | "needs_response" | "won" | "lost"
    disputed_cents: int = 0
    idempotency_key: str | None = None  # the key the target sent when creating it

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def refund_clawback_tokens(self) -> int:
        """Tokens a correct service has taken back for refunds: floor(t * R / a)."""
        if self.amount_cents <= 0:
            return 0
        refunded_cents = min(self.refunded_cents, self.amount_cents)
        return self.minted_tokens * refunded_cents // self.amount_cents

    @property
    def expected_clawback_tokens(self) -> int:
        """All tokens a correct service has taken back: refunds, plus the rest if disputed."""
        if self.dispute_status in ("needs_response", "lost", "warning_needs_response"):
            return self.minted_tokens
        return self.refund_clawback_tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderTruth:
    """Everything the provider knows at quiescence: intents and every delivery attempt."""

    intents: Mapping[str, IntentTruth]
    deliveries: tuple[Delivery, ...] = ()
    event_types: Mapping[str, str] = field(default_factory=dict)  # event id -> type
    event_intents: Mapping[str, str] = field(default_factory=dict)  # event id -> intent id
    pending_deliveries_count: int = 0  # must be 0 at quiescence


# ---------------------------------------------------------------------------------------
# Verdicts.

Validity = Literal[True, False, "unknown"]


def merge_validity(*values: Validity) -> Validity:
    """Combine verdicts as Jepsen does: False beats "unknown", which beats True."""
    if any(v is False for v in values):
        return False
    if any(v == "unknown" for v in values):
        return "unknown"
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Anomaly:
    """One thing that went wrong, naming the ops involved and the numbers."""

    kind: str  # "lost_credit", "duplicated_credit", "negative_balance", "drift", ...
    event_indexes: tuple[int, ...]  # the ops involved, by history index (may be empty)
    expected: int | str
    observed: int | str
    explanation: str  # one sentence a QA engineer understands
    user: str | None = None  # the account concerned, if one
    delivery_indexes: tuple[int, ...] = ()  # webhook deliveries involved, by Delivery.index


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """A checker's result: tri-state validity, counts, and sampled anomalies."""

    valid: Validity
    counts: Mapping[str, int] = field(default_factory=dict)
    anomalies: tuple[Anomaly, ...] = ()  # per kind: first, worst, last; totals live in counts
    note: str | None = None  # why "unknown", or why a checker did not apply

    def __post_init__(self) -> None:
        if self.anomalies:
            assert self.valid is False, "a verdict with anomalies must be invalid"
