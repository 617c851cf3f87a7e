"""What a correct service must have credited and clawed back, from the provider's truth.

Money enters an account only through the ``payment_intent.succeeded`` webhook, so the
model of an intent is built from the provider's delivery log, not from the purchase call:

- *credited*: some genuine (not forged) delivery of its success event was acknowledged
  (a 2xx means the target durably applied it, or already had);
- *possibly credited*: no acknowledgement, but some genuine attempt got no answer or a
  5xx (the target may have committed before failing);
- *not credited*: otherwise, and always when the provider says it never succeeded.

A credited intent then loses its clawback: ``IntentTruth.expected_clawback_tokens`` when
every refund and dispute event of it was acknowledged (a refund that arrived before the
success is applied when the success arrives), zero when none was, and a range otherwise.

Only intents this scenario touched are in scope: those with an event in this truth (the
provider forgets events between scenarios, intents stay) or named by a purchase of this
history. Raw ``webhook`` ops the harness sent with a genuine signature count as deliveries
of the event they carry.
Nothing here judges: the checkers do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from harness.checkers.base import CheckInput, op_pairs, plural, value_int, value_str
from harness.model import DeliveryVariant, F, IntentTruth, Kind, ProviderTruth

__all__ = [
    "CLAWBACK_EVENT_TYPES",
    "DISPUTE_CLOSED_EVENT_TYPE",
    "DISPUTE_CREATED_EVENT_TYPE",
    "REFUNDED_EVENT_TYPE",
    "SUCCEEDED_EVENT_TYPE",
    "Credit",
    "CreditTerms",
    "IntentModel",
    "Intents",
    "credit_terms",
    "describe_intents",
    "explain_clawback_gap",
    "explain_gap",
    "model_intents",
    "parse_variant",
    "pending_note",
]

SUCCEEDED_EVENT_TYPE = "payment_intent.succeeded"
REFUNDED_EVENT_TYPE = "charge.refunded"
DISPUTE_CREATED_EVENT_TYPE = "charge.dispute.created"
DISPUTE_CLOSED_EVENT_TYPE = "charge.dispute.closed"
DISPUTE_EVENT_TYPES = frozenset({DISPUTE_CREATED_EVENT_TYPE, DISPUTE_CLOSED_EVENT_TYPE})
CLAWBACK_EVENT_TYPES = DISPUTE_EVENT_TYPES | {REFUNDED_EVENT_TYPE}
_TAKEN_DISPUTE_STATUSES = frozenset({"needs_response", "warning_needs_response", "lost"})


class Credit(StrEnum):
    """Whether a correct service has credited an intent by now."""

    CREDITED = "credited"
    POSSIBLE = "possible"
    NONE = "none"


class _Answer(StrEnum):
    """What the target said to the deliveries of one event, all attempts together."""

    ACK = "ack"  # some attempt got a 2xx
    MAYBE = "maybe"  # none did, but some got no answer or a 5xx
    NO = "no"  # every attempt was refused with a 4xx (or there was none)


@dataclass(slots=True)
class _EventLog:
    """The genuine delivery attempts of one event (or one raw webhook op)."""

    event_type: str
    intent_id: str
    answer: _Answer = _Answer.NO
    delivery_indexes: list[int] = field(default_factory=list)
    acknowledged_count: int = 0
    op_indexes: list[int] = field(default_factory=list)

    def record(self, status_code: int | None) -> None:
        if status_code is not None and 200 <= status_code < 300:
            self.answer = _Answer.ACK
            self.acknowledged_count += 1
        elif self.answer == _Answer.NO and (status_code is None or status_code >= 500):
            self.answer = _Answer.MAYBE


@dataclass(frozen=True, slots=True, kw_only=True)
class IntentModel:
    """One in-scope intent: what a correct service has credited and clawed back for it."""

    intent: IntentTruth
    user: str | None  # logical owner, from the truth or from the purchase that made it
    credit: Credit
    clawback_min_tokens: int
    clawback_max_tokens: int
    success_delivery_indexes: tuple[int, ...]  # genuine attempts of its success event(s)
    success_acknowledged_count: int
    clawback_delivery_indexes: tuple[int, ...]  # genuine attempts of refund/dispute events
    clawback_event_count: int
    clawback_acknowledged_count: int = 0  # 2xx answers to its refund/dispute deliveries
    purchase: str | None = None  # logical purchase name
    purchase_index: int | None = None  # history index of the purchase op that created it
    op_indexes: tuple[int, ...] = ()  # raw webhook ops about it
    paid_tokens: int | None = None  # the package's own tokens, from the purchase op
    clawback_answers: tuple[tuple[str, str], ...] = ()  # (event type, ack|maybe|no)

    def __post_init__(self) -> None:
        assert 0 <= self.clawback_min_tokens <= self.clawback_max_tokens
        assert self.clawback_max_tokens <= max(self.intent.minted_tokens, 0)

    @property
    def intent_id(self) -> str:
        return self.intent.intent_id

    @property
    def minted_tokens(self) -> int:
        return self.intent.minted_tokens

    @property
    def clawback_exact(self) -> bool:
        return self.clawback_min_tokens == self.clawback_max_tokens

    @property
    def net_min_tokens(self) -> int:
        """Least the intent adds to its account's net once credited."""
        return self.minted_tokens - self.clawback_max_tokens

    @property
    def net_max_tokens(self) -> int:
        return self.minted_tokens - self.clawback_min_tokens

    @property
    def bonus_tokens(self) -> int:
        """Tokens minted beyond the package's own (0 when unknown or none)."""
        if self.paid_tokens is None or not 0 < self.paid_tokens < self.minted_tokens:
            return 0
        return self.minted_tokens - self.paid_tokens

    @property
    def event_indexes(self) -> tuple[int, ...]:
        head = () if self.purchase_index is None else (self.purchase_index,)
        return head + self.op_indexes

    def describe(self) -> str:
        """``purchase #12 (intent pi_3, 500 tokens for fan_0)``."""
        owner = self.user or "an unknown user"
        what = f"intent {self.intent_id}, {self.minted_tokens} tokens for {owner}"
        if self.purchase_index is None:
            return f"the purchase of {what}"
        return f"purchase #{self.purchase_index} ({what})"

    def name(self) -> str:
        """``purchase #12 (intent pi_3)``: short, for a sentence that already named the user."""
        if self.purchase_index is None:
            return f"intent {self.intent_id}"
        return f"purchase #{self.purchase_index} (intent {self.intent_id})"

    def describe_deliveries(self) -> str:
        """``whose success webhook was acknowledged twice (deliveries 3, 4)``."""
        if not self.success_delivery_indexes:
            return "whose success webhook was never delivered"
        listed = ", ".join(str(i) for i in self.success_delivery_indexes[:8])
        if self.success_acknowledged_count == 0:
            return f"whose success webhook was never acknowledged (deliveries {listed})"
        times = {1: "once", 2: "twice"}.get(self.success_acknowledged_count,
                                             f"{self.success_acknowledged_count} times")
        return f"whose success webhook was acknowledged {times} (deliveries {listed})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Intents:
    """The in-scope intents, and how the history names them."""

    models: Mapping[str, IntentModel]  # intent id -> model
    purchase_intents: Mapping[str, str]  # logical purchase -> intent id
    purchase_users: Mapping[str, str]  # logical purchase -> logical user
    unattributed_count: int  # credited or possibly credited intents with no known owner

    def of_user(self, user: str) -> list[IntentModel]:
        return [m for m in self.models.values() if m.user == user]

    def users(self) -> set[str]:
        return {m.user for m in self.models.values() if m.user is not None}


def parse_variant(text: str | None) -> DeliveryVariant | None:
    """A ``DeliveryVariant`` from an op value, or ``None`` when absent or unknown."""
    if text is None:
        return None
    try:
        return DeliveryVariant(text)
    except ValueError:
        return None


def model_intents(inp: CheckInput) -> Intents | None:
    """Model every in-scope intent of the provider's truth; ``None`` without a truth.

    One pass over the history (purchases name their intents, raw webhook ops count as
    deliveries) and one over the delivery log.
    """
    truth = inp.truth
    if truth is None:
        return None
    purchase_intents: dict[str, str] = {}
    purchase_users: dict[str, str] = {}
    purchase_indexes: dict[str, int] = {}
    purchase_tokens: dict[str, int] = {}
    raw_webhooks: list[tuple[int, str | None, str | None, str | None, str, Kind]] = []
    webhook = F.WEBHOOK  # (an Enum member is slow to look up, once per op)
    for pair in op_pairs(inp):
        completion = pair.completion  # (read once: the pair's properties cost a call each)
        value = pair.invoke.value if completion is None else completion.value
        purchase = value.get("purchase")
        if purchase is None and pair.invoke.f != webhook:
            continue  # a tip, a read, a call: nothing about intents
        purchase = purchase if isinstance(purchase, str) else None  # as value_str reads it
        if purchase is None and pair.f != webhook:
            continue
        if pair.f == F.PURCHASE and purchase is not None:
            user = value_str(value, "user")
            if user is not None:
                purchase_users.setdefault(purchase, user)
            purchase_indexes.setdefault(purchase, pair.index)
            tokens = value_int(pair.invoke.value, "amount_tokens")
            if tokens > 0:
                purchase_tokens.setdefault(purchase, tokens)
        intent_id = value_str(value, "intent_id")
        if pair.kind == Kind.OK and purchase is not None and intent_id is not None:
            purchase_intents.setdefault(purchase, intent_id)
        if pair.f == F.WEBHOOK:
            variant = parse_variant(value_str(value, "variant"))
            event_type = value_str(value, "event_type")
            if variant is not None and not variant.forged and event_type is not None:
                raw_webhooks.append((pair.index, purchase, intent_id,
                                     value_str(value, "event_id"), event_type, pair.kind))
    logs = _event_logs(truth)
    for op_index, purchase, intent_id, event_id, event_type, kind in raw_webhooks:
        log = logs.get(event_id or "")  # a genuine envelope re-sends a real event
        if log is None:
            resolved = intent_id or (purchase_intents.get(purchase) if purchase else None)
            if resolved is None:
                continue
            log = logs[f"op:{op_index}"] = _EventLog(event_type=event_type, intent_id=resolved)
        log.op_indexes.append(op_index)
        # An indeterminate op counts as an unanswered attempt.
        log.record({Kind.OK: 200, Kind.FAIL: 400}.get(kind))
    by_intent: dict[str, list[_EventLog]] = {}
    for log in logs.values():
        by_intent.setdefault(log.intent_id, []).append(log)
    intent_purchases = {intent: purchase for purchase, intent in purchase_intents.items()}
    models: dict[str, IntentModel] = {}
    for intent_id in sorted(set(by_intent) | set(intent_purchases)):
        intent = truth.intents.get(intent_id)
        if intent is None:
            continue
        purchase = intent_purchases.get(intent_id)
        user = intent.user or (purchase_users.get(purchase) if purchase else None)
        models[intent_id] = _model_one(
            intent, user, by_intent.get(intent_id, []), purchase,
            purchase_indexes.get(purchase) if purchase else None,
            purchase_tokens.get(purchase) if purchase else None)
    unattributed = sum(1 for m in models.values()
                       if m.user is None and m.credit != Credit.NONE)
    return Intents(models=models, purchase_intents=purchase_intents,
                   purchase_users=purchase_users, unattributed_count=unattributed)


def _event_logs(truth: ProviderTruth) -> dict[str, _EventLog]:
    """Genuine delivery attempts grouped by event; forged copies are not the provider's word."""
    logs: dict[str, _EventLog] = {}
    for event_id, intent_id in truth.event_intents.items():
        event_type = truth.event_types.get(event_id)
        if event_type is not None:
            logs[event_id] = _EventLog(event_type=event_type, intent_id=intent_id)
    for delivery in truth.deliveries:
        if delivery.variant.forged:
            continue
        log = logs.get(delivery.event_id)
        if log is None:
            owner = delivery.intent_id or truth.event_intents.get(delivery.event_id)
            if owner is None:
                continue
            log = _EventLog(event_type=delivery.event_type, intent_id=owner)
            logs[delivery.event_id] = log
        log.delivery_indexes.append(delivery.index)
        log.record(delivery.status_code)
    return logs


def _model_one(intent: IntentTruth, user: str | None, logs: Iterable[_EventLog],
               purchase: str | None, purchase_index: int | None,
               paid_tokens: int | None) -> IntentModel:
    logs = list(logs)
    success = [log for log in logs if log.event_type == SUCCEEDED_EVENT_TYPE]
    answers = {log.answer for log in success}
    credit = Credit.NONE
    if intent.succeeded and _Answer.ACK in answers:
        credit = Credit.CREDITED
    elif intent.succeeded and _Answer.MAYBE in answers:
        credit = Credit.POSSIBLE
    clawback_min, clawback_max = _clawback_range(intent, logs)
    clawback_logs = [log for log in logs if log.event_type in CLAWBACK_EVENT_TYPES]
    return IntentModel(
        intent=intent,
        user=user,
        credit=credit,
        clawback_min_tokens=clawback_min,
        clawback_max_tokens=clawback_max,
        success_delivery_indexes=tuple(i for log in success for i in log.delivery_indexes),
        success_acknowledged_count=sum(log.acknowledged_count for log in success),
        clawback_delivery_indexes=tuple(i for log in clawback_logs for i in log.delivery_indexes),
        clawback_event_count=len(clawback_logs),
        clawback_acknowledged_count=sum(log.acknowledged_count for log in clawback_logs),
        purchase=purchase,
        purchase_index=purchase_index,
        op_indexes=tuple(i for log in logs for i in log.op_indexes),
        paid_tokens=paid_tokens,
        clawback_answers=tuple((log.event_type, str(log.answer)) for log in clawback_logs),
    )


def _clawback_range(intent: IntentTruth, logs: list[_EventLog]) -> tuple[int, int]:
    """Tokens a correct service has taken back from a credited intent: [least, most].

    Refunds are cumulative, so once every refund event is acknowledged the service holds
    the final ``floor(t * R / a)``; a dispute takes the rest and a won one gives it back.
    """
    minted = max(intent.minted_tokens, 0)
    refunds = {log.answer for log in logs if log.event_type == REFUNDED_EVENT_TYPE}
    disputes = {log.answer for log in logs if log.event_type in DISPUTE_EVENT_TYPES}
    refund_final = min(intent.refund_clawback_tokens, minted)
    if not refunds or refunds == {_Answer.NO}:
        refund_range = (0, 0)
    elif refunds == {_Answer.ACK}:
        refund_range = (refund_final, refund_final)
    else:
        refund_range = (0, refund_final)
    if not disputes or disputes == {_Answer.NO}:
        return refund_range
    if disputes == {_Answer.ACK}:
        if intent.dispute_status in _TAKEN_DISPUTE_STATUSES:
            return (minted, minted)
        return refund_range
    return (refund_range[0], minted)


def describe_intents(models: Iterable[IntentModel], limit: int = 3) -> str:
    """``purchase #3 (…), purchase #9 (…) and 2 more``."""
    listed = list(models)
    head = ", ".join(m.describe() for m in listed[:limit])
    rest = len(listed) - limit
    return head if rest <= 0 else f"{head} and {plural(rest, 'more intent')}"


def explain_gap(model: IntentModel, gap_tokens: int) -> str | None:
    """Name the event of ``model`` whose effect is exactly ``gap_tokens`` off, if one is.

    ``gap_tokens`` is what the account holds beyond what the provider's truth leaves it
    (positive: too many tokens). Clawbacks are named first, by the kind of their event
    (refund, dispute opened, dispute closed won or lost) and, for a refund, by the bonus
    share it should have taken; a credit counted twice is named only when its success
    was acknowledged more than once, since a double credit needs a second delivery.
    Returns one sentence, or ``None`` when no single effect of this intent is the gap.
    """
    if gap_tokens == 0 or model.credit != Credit.CREDITED:
        return None
    for explain in (_explain_dispute, _explain_refund, _explain_credit):
        text = explain(model, gap_tokens)
        if text is not None:
            return text
    return None


def explain_clawback_gap(model: IntentModel, gap_tokens: int) -> str | None:
    """``explain_gap`` restricted to the intent's refunds and disputes."""
    if gap_tokens == 0 or model.credit != Credit.CREDITED:
        return None
    return _explain_dispute(model, gap_tokens) or _explain_refund(model, gap_tokens)


def _explain_dispute(model: IntentModel, gap: int) -> str | None:
    status = model.intent.dispute_status
    share = model.minted_tokens - model.intent.refund_clawback_tokens  # what a dispute takes
    if status is None or share <= 0 or abs(gap) != share:
        return None
    what = model.name()
    if status == "lost" and gap > 0:
        return (f"The dispute on {what} was closed lost, so its {share} tokens stay taken "
                "back, yet the account holds them: the lost dispute was given back as if won"
                f"{_unless_opened_never_applied(model)}.")
    if status in _TAKEN_DISPUTE_STATUSES and gap > 0:
        return (f"The dispute opened on {what} should have taken back {share} tokens, "
                "yet the account holds them: the dispute opened was never applied.")
    if status == "won" and gap < 0:
        return (f"The dispute on {what} was closed won, so its {share} tokens are given "
                "back, yet they stay taken: the won dispute was not reinstated.")
    return None


def _unless_opened_never_applied(model: IntentModel) -> str:
    answers = dict(model.clawback_answers)
    if answers.get("charge.dispute.created") == str(_Answer.ACK):
        return ""
    return " (or the dispute opened, never acknowledged, was never applied)"


def _explain_refund(model: IntentModel, gap: int) -> str | None:
    intent = model.intent
    taken = intent.refund_clawback_tokens
    if intent.refunded_cents <= 0 or taken <= 0 or intent.dispute_status in (
            _TAKEN_DISPUTE_STATUSES):
        return None  # a dispute that took everything hides what the refund took
    refund = (f"the refund of {min(intent.refunded_cents, intent.amount_cents)} of "
              f"{intent.amount_cents} cents on {model.name()}")
    bonus = model.bonus_tokens
    if bonus and model.paid_tokens is not None:
        refunded_cents = min(intent.refunded_cents, intent.amount_cents)
        bonus_share = taken - model.paid_tokens * refunded_cents // intent.amount_cents
        if bonus_share > 0 and gap == bonus_share:
            package = f"the {model.paid_tokens}-token package"
            share = (f"the {bonus} bonus tokens of {package} were" if bonus_share == bonus
                     else f"the bonus share ({bonus_share} of the {bonus} bonus tokens of "
                          f"{package}) was")
            return (f"Of {refund}, {taken - bonus_share} tokens were taken back, not {taken}: "
                    f"{share} not clawed back.")
    refund = refund[0].upper() + refund[1:]
    whole = (intent.refunded_cents < intent.amount_cents
             and gap == taken - model.minted_tokens)
    redelivered = model.clawback_acknowledged_count > model.clawback_event_count
    if gap == -taken and (redelivered or not whole):
        return f"{refund} ({taken} tokens) was applied twice."
    if whole:
        return (f"{refund} took back the whole purchase, {model.minted_tokens} tokens, "
                f"not its share of {taken}.")
    if gap == taken:
        return f"{refund} ({taken} tokens) was dropped: never applied."
    return None


def _explain_credit(model: IntentModel, gap: int) -> str | None:
    if gap == model.minted_tokens:
        looks = "was" if model.success_acknowledged_count >= 2 else "looks"
        return (f"The gap is exactly the credit of {model.describe()}, "
                f"{model.describe_deliveries()}: it {looks} credited twice.")
    if gap in (-model.net_min_tokens, -model.minted_tokens) and gap != 0:
        return (f"The gap is exactly the credit of {model.describe()}, "
                f"{model.describe_deliveries()}: it looks never credited.")
    return None


@dataclass(slots=True)
class CreditTerms:
    """What credits add to one account: ``sure`` + a subset of ``options`` + [0, ``slack``]."""

    sure_tokens: int = 0
    options: list[tuple[int, IntentModel]] = field(default_factory=list)
    slack_tokens: int = 0
    credited: list[IntentModel] = field(default_factory=list)
    possible: list[IntentModel] = field(default_factory=list)

    @property
    def max_tokens(self) -> int:
        return self.sure_tokens + sum(max(d, 0) for d, _ in self.options) + self.slack_tokens


def credit_terms(intents: Intents, *, gross: bool = False) -> dict[str | None, CreditTerms]:
    """Per owner (``None``: unknown owner), what the in-scope intents add.

    Args:
        intents: the model.
        gross: count minted tokens only (what ``AccountState.credited_tokens`` reports),
            else minted minus clawback (what the net ``balance − debt`` shows).
    """
    terms: dict[str | None, CreditTerms] = {}
    for model in intents.models.values():
        if model.credit == Credit.NONE:
            continue
        term = terms.setdefault(model.user, CreditTerms())
        low = model.minted_tokens if gross else model.net_min_tokens
        high = model.minted_tokens if gross else model.net_max_tokens
        if model.credit == Credit.CREDITED:
            term.credited.append(model)
            term.sure_tokens += low
            term.slack_tokens += high - low
            continue
        term.possible.append(model)
        if low == high:
            term.options.append((low, model))
        else:
            term.slack_tokens += high
    return terms


def pending_note(truth: ProviderTruth | None) -> str | None:
    """A remark when the provider still had deliveries queued: the end state may move."""
    if truth is None or truth.pending_deliveries_count <= 0:
        return None
    count = truth.pending_deliveries_count
    return (f"the provider still had {count} {'delivery' if count == 1 else 'deliveries'} "
            "pending when its truth was read: a late webhook may explain a difference")
