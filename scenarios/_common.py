"""What every scenario shares: the op factory, funding, the closing reads, names and amounts.

``OpFactory`` hands out dense op ids and idempotency keys derived from the scenario's name
and seed, and builds each op kind with exactly the value keys the runner expects. It knows
the target (``ScenarioParams.target``): purchases are the target's own packages, and an op
kind that carries no idempotency key gets none (so same-key retries of it cannot be made).
``fund`` buys the package nearest a wanted amount through real purchases and waits for
their webhooks; ``scaled`` turns an amount written for the reference prices into the same
share of what was really bought; ``finish`` settles and reads every account. Nothing here
draws randomness or reads a clock: callers pass the ``random.Random`` they were given, so
a scenario stays a pure function of its seed and parameters.
"""

from __future__ import annotations

import random
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from typing import Literal

from harness.checkers.refusals import BAD_INPUT_KEY
from harness.model import DeliveryVariant, F, Op
from harness.scenario import ScenarioParams, TargetTraits
from harness.schedule import Batch, Settle, Step
from harness.targets.pricing import Package

__all__ = [
    "BASE_CHECKERS",
    "EVENT_DISPUTE_CREATED",
    "EVENT_REFUNDED",
    "EVENT_SUCCEEDED",
    "PM_DECLINED",
    "PM_THREE_D_SECURE",
    "PM_VISA",
    "OpFactory",
    "creators_of",
    "fans_of",
    "finish",
    "fund",
    "policy_seed",
    "roster",
    "scaled",
]

PM_VISA = "pm_card_visa"  # succeeds at once
PM_THREE_D_SECURE = "pm_card_threeDSecure2Required"  # answers requires_action
PM_DECLINED = "pm_card_chargeDeclined"  # declined: 402 card_declined

EVENT_SUCCEEDED = "payment_intent.succeeded"
EVENT_REFUNDED = "charge.refunded"
EVENT_DISPUTE_CREATED = "charge.dispute.created"

# Every scenario expects these to hold; each adds the checkers specific to its area.
BASE_CHECKERS = ("non_negative", "conservation", "reconciliation", "errors",
                 "exactly_once_credit", "coverage")

# A policy's own seed stays below this, so it fits every JSON reader.
_POLICY_SEED_MAX = 2**31 - 1


def scaled(amount_tokens: int, *, funded_tokens: int, nominal_tokens: int) -> int:
    """``amount_tokens``, written for a fund of ``nominal_tokens``, as the same share of
    ``funded_tokens`` (what the target's package really minted); at least 1.

    Against the reference prices the two funds are equal and the amount is unchanged.
    """
    assert nominal_tokens >= 1, nominal_tokens
    assert amount_tokens >= 1, amount_tokens
    if funded_tokens == nominal_tokens:
        return amount_tokens
    return max(1, amount_tokens * funded_tokens // nominal_tokens)


def policy_seed(rng: random.Random) -> int:
    """A seed for the provider's dispatcher, drawn from the scenario's own generator."""
    return rng.randint(0, _POLICY_SEED_MAX)


def roster(*, fans: int, creators: int) -> dict[str, str]:
    """Logical users: ``fan_0..`` then ``creator_0..``, mapped to their kind."""
    assert fans >= 0, fans
    assert creators >= 0, creators
    users = {f"fan_{i}": "fan" for i in range(fans)}
    users.update({f"creator_{i}": "creator" for i in range(creators)})
    return users


def fans_of(users: Mapping[str, str]) -> list[str]:
    """The fans of a roster, in roster order."""
    return [name for name, kind in users.items() if kind == "fan"]


def creators_of(users: Mapping[str, str]) -> list[str]:
    """The creators of a roster, in roster order."""
    return [name for name, kind in users.items() if kind == "creator"]


class OpFactory:
    """Builds the ops of one scenario run: dense ids, seeded keys, logical names.

    Args:
        scenario: the scenario's kebab name; it prefixes every idempotency key, so the
            scenarios of one suite run never share a key.
        seed: the run's seed; the same seed gives the same keys.
        target: what the target sells and which ops carry a key (default: the reference).
    """

    def __init__(self, *, scenario: str, seed: int,
                 target: TargetTraits | None = None) -> None:
        self._prefix = f"{scenario}-s{seed}"
        self.target = TargetTraits() if target is None else target
        self._packages: dict[str, Package] = {}
        self._op_count = 0
        self._key_count = 0
        self._purchase_count = 0
        self._call_count = 0
        self._dispute_count = 0

    @classmethod
    def of(cls, scenario: str, params: ScenarioParams) -> OpFactory:
        """The factory of one run of ``scenario`` with ``params`` (its seed and target)."""
        return cls(scenario=scenario, seed=params.seed, target=params.target)

    @property
    def op_count(self) -> int:
        """How many ops this factory has made so far."""
        return self._op_count

    def key(self) -> str:
        """A fresh idempotency key, the same for the same scenario, seed and position."""
        key = f"{self._prefix}-k{self._key_count:05d}"
        self._key_count += 1
        return key

    def keyed(self, f: F) -> bool:
        """Whether ops of kind ``f`` carry an idempotency key on this target."""
        return self.target.keyed(f)

    def _key_for(self, f: F, key: str | None) -> str | None:
        if key is not None:
            assert self.keyed(f), f"{f.value} carries no key on this target"
            return key
        return self.key() if self.keyed(f) else None

    def purchase(self, *, user: str, amount_tokens: int, payment_method: str = PM_VISA,
                 key: str | None = None) -> Op:
        """Buy the target's package of ``amount_tokens``; the op names a fresh logical
        purchase (``value["purchase"]``).

        Raises:
            ValueError: the target sells no package of that size (use ``package_for``).
        """
        package = self.target.pricing.package(amount_tokens)
        name = f"p_{self._purchase_count}"
        self._purchase_count += 1
        self._packages[name] = package
        return self._op(F.PURCHASE, {"user": user, "purchase": name,
                                     "amount_tokens": amount_tokens,
                                     "payment_method": payment_method},
                        self._key_for(F.PURCHASE, key))

    def package_for(self, wanted_tokens: int) -> Package:
        """The target's package nearest ``wanted_tokens`` (see ``Pricing.package_for``)."""
        return self.target.pricing.package_for(wanted_tokens)

    def package_of(self, purchase: Op) -> Package:
        """The package a purchase op of this factory buys."""
        return self._packages[_purchase_name(purchase)]

    def price_cents(self, purchase: Op) -> int:
        """What ``purchase`` costs at the provider: the most any refund of it can be."""
        return self.package_of(purchase).cents

    def tip(self, *, sender: str, recipient: str, amount_tokens: int,
            key: str | None = None) -> Op:
        """Move ``amount_tokens`` from ``sender`` to ``recipient``."""
        assert sender != recipient, sender
        assert amount_tokens >= 1, amount_tokens
        return self._op(F.TIP, {"sender": sender, "recipient": recipient,
                                "amount_tokens": amount_tokens}, self._key_for(F.TIP, key))

    def bad_tip(self, *, sender: str, recipient: str, amount: int | str, why: str,
                recipient_id: int | None = None) -> Op:
        """A tip a correct target must refuse with a 4xx, marked ``bad_input = why``.

        Any amount goes (negative, zero, past 64 bits, text), to anyone: the sender itself,
        or, with ``recipient_id``, an id the target never gave out (sent as is).
        """
        value: dict[str, int | str | None] = {"sender": sender, "recipient": recipient,
                                              "amount_tokens": amount, BAD_INPUT_KEY: why}
        if recipient_id is not None:
            value["recipient_id"] = recipient_id
        return self._op(F.TIP, value, self._key_for(F.TIP, None))

    def bad_charge(self, opened: Op, *, user: str, minute: int, why: str) -> Op:
        """A charge of the call ``opened`` made, sent by another ``user``: to be refused."""
        assert opened.f == F.CALL_OPEN, opened
        assert user != opened.value["user"], user
        value = opened.value
        return self._op(F.CALL_CHARGE, {"user": user, "creator": value["creator"],
                                        "call": value["call"], "minute": minute,
                                        "amount_tokens": value["rate_tokens_per_minute"],
                                        BAD_INPUT_KEY: why},
                        self._key_for(F.CALL_CHARGE, None))

    def call_open(self, *, user: str, creator: str, rate_tokens_per_minute: int) -> Op:
        """Open a call of ``user`` with ``creator``; the op names a fresh logical call."""
        assert rate_tokens_per_minute >= 1, rate_tokens_per_minute
        name = f"c_{self._call_count}"
        self._call_count += 1
        return self._op(F.CALL_OPEN, {"user": user, "creator": creator, "call": name,
                                      "rate_tokens_per_minute": rate_tokens_per_minute},
                        self._key_for(F.CALL_OPEN, None))

    def call_charge(self, opened: Op, *, minute: int, key: str | None = None) -> Op:
        """Charge one minute (1-based) of the call ``opened`` made, at its rate."""
        assert opened.f == F.CALL_OPEN, opened
        assert minute >= 1, minute
        value = opened.value
        return self._op(F.CALL_CHARGE, {"user": value["user"], "creator": value["creator"],
                                        "call": value["call"], "minute": minute,
                                        "amount_tokens": value["rate_tokens_per_minute"]},
                        self._key_for(F.CALL_CHARGE, key))

    def call_end(self, opened: Op) -> Op:
        """End the call ``opened`` made."""
        assert opened.f == F.CALL_OPEN, opened
        return self._op(F.CALL_END, {"user": opened.value["user"],
                                     "call": opened.value["call"]}, None)

    def read_balance(self, user: str) -> Op:
        """Read ``user``'s balance, debt and status."""
        return self._op(F.READ_BALANCE, {"user": user}, None)

    def authenticate(self, purchase: Op, *, outcome: Literal["succeed", "fail"]) -> Op:
        """The card holder finishes (or fails) 3-D Secure for ``purchase``."""
        return self._op(F.AUTHENTICATE, {"purchase": _purchase_name(purchase),
                                         "outcome": outcome}, None)

    def refund(self, purchase: Op, *, amount_cents: int | None) -> Op:
        """The merchant refunds ``amount_cents`` of ``purchase`` (None: the rest)."""
        if amount_cents is not None:
            assert amount_cents >= 1, amount_cents
        return self._op(F.REFUND, {"purchase": _purchase_name(purchase),
                                   "amount_cents": amount_cents}, None)

    def dispute_open(self, purchase: Op) -> Op:
        """The bank opens a dispute on ``purchase``; the op names a fresh logical dispute."""
        name = f"d_{self._dispute_count}"
        self._dispute_count += 1
        return self._op(F.DISPUTE_OPEN, {"purchase": _purchase_name(purchase),
                                         "dispute": name}, None)

    def dispute_close(self, opened: Op, *, outcome: Literal["won", "lost"]) -> Op:
        """The bank closes the dispute ``opened`` made."""
        assert opened.f == F.DISPUTE_OPEN, opened
        return self._op(F.DISPUTE_CLOSE, {"dispute": opened.value["dispute"],
                                          "outcome": outcome}, None)

    def webhook(self, purchase: Op | None, *, event_type: str,
                variant: DeliveryVariant) -> Op:
        """A webhook the harness sends itself; ``purchase`` None: an intent never paid."""
        name = None if purchase is None else _purchase_name(purchase)
        return self._op(F.WEBHOOK, {"purchase": name, "event_type": event_type,
                                    "variant": DeliveryVariant(variant).value}, None)

    def again(self, op: Op) -> Op:
        """The same request sent once more: a new op id, the same value and key.

        Only for an op that carries a key: without one a resend is a second request, and
        a scenario must not send it (check ``keyed`` first).
        """
        assert op.idempotency_key is not None, f"{op!r} carries no key: it cannot be retried"
        return self._op(op.f, dict(op.value), op.idempotency_key)

    def _op(self, f: F, value: dict[str, int | str | None], key: str | None) -> Op:
        assert f in self.target.ops or f not in _CALL_OPS, \
            f"the target has no {f.value}: the scenario must leave it out and say so"
        op = Op(id=self._op_count, f=f, value=value, idempotency_key=key)
        self._op_count += 1
        return op


def fund(ops: OpFactory, users: Sequence[str], amount_tokens: int,
         *, payment_method: str = PM_VISA) -> Generator[Step, None, dict[str, Op]]:
    """Buy the target's package nearest ``amount_tokens`` for each user at once (the
    smallest minting at least that many), then wait for the webhooks.

    Credit comes only from the provider's ``payment_intent.succeeded`` webhook, never
    from the purchase call and never from writing a balance. ``ops.package_of`` says what
    each purchase really minted.

    Returns:
        The purchase op of each user, to refund or dispute later.
    """
    assert users, "fund() needs at least one user"
    package = ops.package_for(amount_tokens)
    purchases = {user: ops.purchase(user=user, amount_tokens=package.tokens,
                                    payment_method=payment_method) for user in users}
    yield Batch(ops=tuple(purchases.values()))
    yield Settle()
    return purchases


def finish(ops: OpFactory, users: Iterable[str]) -> Iterator[Step]:
    """The end of every scenario: quiescence, then one read of every account."""
    yield Settle()
    yield Batch(ops=tuple(ops.read_balance(user) for user in users))


# A call_open op may be made without being sent (its charges name it); these may not.
_CALL_OPS = frozenset({F.CALL_CHARGE, F.CALL_END})


def _purchase_name(purchase: Op) -> str:
    assert purchase.f == F.PURCHASE, purchase
    name = purchase.value["purchase"]
    assert isinstance(name, str), name
    return name
