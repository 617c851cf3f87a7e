"""The ledger fold's records: what it hands the checkers, what it works with, and the
effects of one transfer.

``Unknown`` (an indeterminate logical op), ``Recent`` (an acknowledged op, to name in
prose) and ``Ledger`` (the fold's result) are made by ``ledger.py`` and read by the
checkers that share its fold. ``Bounds``, ``Group``, ``Pending`` and ``TipInFlight`` are
the fold's working state, read and written by ``ledger.py`` alone. ``transfer_effects``
says who a tip or call charge moves tokens between, for the fold and for ``durability``.
Nothing here folds a history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.checkers.base import Sampler, describe_op, value_int, value_str
from harness.fees import NO_FEES, Fees
from harness.model import Event, F, Value

__all__ = [
    "IN_FLIGHT",
    "Bounds",
    "Group",
    "GroupKey",
    "Ledger",
    "Pending",
    "Recent",
    "TipInFlight",
    "Unknown",
    "transfer_effects",
]

GroupKey = tuple[object, ...]
_TIP = F.TIP


@dataclass(frozen=True, slots=True, kw_only=True)
class Unknown:
    """One indeterminate logical op: applied entirely, or not at all."""

    label: str  # "tip #12 (fan_0 → creator_0, 300 tokens)"
    effects: tuple[tuple[str, int], ...]  # (user, tokens added to its net), non-zero
    event_indexes: tuple[int, ...]

    def delta_for(self, user: str) -> int:
        return sum(delta for who, delta in self.effects if who == user)


@dataclass(frozen=True, slots=True, kw_only=True)
class Recent:
    """An acknowledged op touching an account, kept to name in anomaly prose."""

    index: int
    f: F
    value: Value  # the op's arguments (shared with the history, not copied)
    delta_tokens: int

    @property
    def label(self) -> str:
        return describe_op(self.f, self.index, self.value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ledger:
    """The fold's result: sure transfer totals per account and the indeterminate ops."""

    sure_tokens: Mapping[str, int]  # per user: net of the acknowledged transfers
    unknowns: tuple[Unknown, ...]
    users: frozenset[str]  # every user the history names in a transfer or purchase
    transfer_users: frozenset[str]  # users named by any tip or call charge
    recent: Mapping[str, tuple[Recent, ...]]
    logical_ops_count: int
    reads_checked_count: int
    reads: Sampler  # impossible reads found on the way (merge it, do not add to it)


@dataclass(slots=True)
class Bounds:
    sure_up: int = 0
    sure_down: int = 0
    possible_up: int = 0
    possible_down: int = 0
    clawback_possible: bool = False


@dataclass(slots=True)
class Group:
    """One logical op being assembled from its ops.

    Made once per op, positionally (``Group(effects, f, index, value, keyed)``): keyword
    arguments cost several times as much in a generated ``__init__``.
    """

    effects: tuple[tuple[str, int], ...]
    f: F
    index: int  # the first op's invoke index
    value: Value  # the first op's arguments (shared with the history, not copied)
    keyed: bool  # more ops may join it later (same key, or same call minute)
    is_purchase: bool = False
    invoked_count: int = 0
    outstanding_count: int = 0
    ok: bool = False
    info_count: int = 0
    counted: bool = False  # its effects are in the possible bounds
    once: bool = False  # no other op carries its key: nothing to remember once settled
    event_indexes: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        return describe_op(self.f, self.index, self.value)


# The placeholder a tip sent once keeps in ``groups`` while in flight, holding its place
# in the groups' order; never read, and replaced by a real ``Group`` if it stays there.
IN_FLIGHT = Group((), F.TIP, -1, {}, True)
# A tip sent once, in flight: (invoke, group key, sender, recipient, amount, the sender's
# sure_up and sure_down at its invoke).
TipInFlight = tuple[Event, GroupKey, str, str, int, int, int]


@dataclass(slots=True)
class Pending:
    """An op between its invocation and its completion; made positionally, as ``Group``."""

    invoke: Event
    group: GroupKey | None
    user: str | None  # the payer or reader whose bounds are checked
    sure_up: int
    sure_down: int
    first: bool  # the first op of its logical op (a later one may get a cached answer)


def transfer_effects(f: F, value: Value,
                     calls: Mapping[str, tuple[str | None, str | None, int]],
                     fees: Fees = NO_FEES) -> tuple[str | None, tuple[tuple[str, int], ...]]:
    """(payer, effects) of a tip or call charge: the payer loses, the payee gains.

    Where the target takes a fee on the op kind, the payee gains the amount less the fee
    and the fee's system account the fee.
    """
    amount = value_int(value, "amount_tokens", -1)
    rule = fees.rule(f)
    if f == _TIP:
        sender, recipient = value.get("sender"), value.get("recipient")
        if isinstance(sender, str) and isinstance(recipient, str) and rule is None:
            amount = max(amount, 0)  # the usual tip, at once
            if sender == recipient or amount == 0:
                return sender, ()
            return sender, ((sender, -amount), (recipient, amount))
        payer = sender if isinstance(sender, str) else None
        payee = recipient if isinstance(recipient, str) else None
    else:
        call = calls.get(value_str(value, "call") or "", (None, None, 0))
        payer = value_str(value, "user") or call[0]
        payee = value_str(value, "creator") or call[1]
        if amount < 0:
            amount = call[2]
    amount = max(amount, 0)
    fee = 0 if rule is None or payer == payee else rule.fee_tokens(amount)
    legs = [(payer, -amount), (payee, amount - fee)]
    if fee:
        assert rule is not None
        legs.append((rule.account, fee))
    net: dict[str, int] = {}
    for user, delta in legs:
        if user is not None:
            net[user] = net.get(user, 0) + delta
    return payer, tuple((user, delta) for user, delta in net.items() if delta != 0)
