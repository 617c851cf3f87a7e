"""webhook_auth: forged, tampered and stale webhooks are refused and change nothing.

Two sources of forgeries: the provider's deliveries whose variant is forged (unsigned,
wrong secret, tampered body, or a timestamp past the tolerance window), and ``webhook``
ops the harness sent itself with a forged variant. Each must be answered with a 4xx; a
2xx is an anomaly naming the delivery or the op. An unanswered one proves nothing.

"Changes nothing" is judged with money by ``reconciliation`` and ``conservation``; here,
additionally, a forged success whose intent the provider never had delivered genuinely
must not show up in the owner's credited tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.checkers.base import CheckInput, Sampler, conclude, describe_op, op_pairs, value_str
from harness.checkers.intents import (
    SUCCEEDED_EVENT_TYPE,
    Credit,
    CreditTerms,
    Intents,
    credit_terms,
    parse_variant,
)
from harness.checkers.ledger import account_model
from harness.model import Anomaly, DeliveryVariant, Kind, Verdict

__all__ = ["check_webhook_auth"]


@dataclass(frozen=True, slots=True, kw_only=True)
class _ForgedSuccess:
    """A forged success for an intent, by delivery or by op."""

    intent_id: str
    label: str
    event_indexes: tuple[int, ...] = ()
    delivery_indexes: tuple[int, ...] = ()


def check_webhook_auth(inp: CheckInput) -> Verdict:
    """Check that every forged webhook was refused, and credited nothing.

    Anomaly kinds: ``forgery_accepted`` (unsigned, wrong secret or tampered answered 2xx),
    ``stale_accepted`` (past the tolerance window, answered 2xx), ``forged_credit`` (the
    intent of a forged success shows up credited).

    Count keys: ``forged_deliveries``, ``forged_ops``, ``rejected``, ``accepted``,
    ``indeterminate``.
    """
    sampler = Sampler()
    counts = {"forged_deliveries": 0, "forged_ops": 0, "rejected": 0, "accepted": 0,
              "indeterminate": 0}
    successes: list[_ForgedSuccess] = []
    if inp.truth is not None:
        for delivery in inp.truth.deliveries:
            if not delivery.variant.forged:
                continue
            counts["forged_deliveries"] += 1
            label = (f"delivery {delivery.index} ({delivery.variant} {delivery.event_type} "
                     f"for {delivery.intent_id})")
            _tally(counts, delivery.status_code, sampler, delivery.variant, label,
                   event_indexes=(), delivery_indexes=(delivery.index,))
            if delivery.event_type == SUCCEEDED_EVENT_TYPE and delivery.intent_id:
                successes.append(_ForgedSuccess(intent_id=delivery.intent_id, label=label,
                                                delivery_indexes=(delivery.index,)))
    intents, _ = account_model(inp)
    for pair in op_pairs(inp):
        if pair.invoke.f != "webhook":  # (the invocation's, as ``pair.f`` reads it, less a call)
            continue
        variant = parse_variant(value_str(pair.invoke.value, "variant"))
        if variant is None or not variant.forged:
            continue
        counts["forged_ops"] += 1
        label = describe_op(pair.f, pair.index, pair.invoke.value)
        status = {Kind.OK: 200, Kind.FAIL: 400}.get(pair.kind)
        _tally(counts, status, sampler, variant, label, event_indexes=pair.event_indexes,
               delivery_indexes=())
        intent_id = value_str(pair.value, "intent_id")
        purchase = value_str(pair.value, "purchase")
        if intent_id is None and purchase is not None and intents is not None:
            intent_id = intents.purchase_intents.get(purchase)
        if value_str(pair.value, "event_type") == SUCCEEDED_EVENT_TYPE and intent_id:
            successes.append(_ForgedSuccess(intent_id=intent_id, label=label,
                                            event_indexes=pair.event_indexes))
    if intents is not None:
        _check_forged_credit(inp, intents, successes, sampler)
    decided = counts["rejected"] + counts["accepted"]
    forged = counts["forged_deliveries"] + counts["forged_ops"]
    note = None
    if not forged:
        note = "no forged webhook was sent in this scenario"
    elif not decided:
        note = "every forged webhook went unanswered (timeout or 5xx)"
    return conclude(sampler, counts, checked=decided > 0, unknown_note=note)


def _tally(counts: dict[str, int], status_code: int | None, sampler: Sampler,
           variant: DeliveryVariant, label: str, *, event_indexes: tuple[int, ...],
           delivery_indexes: tuple[int, ...]) -> None:
    if status_code is None or status_code >= 500:
        counts["indeterminate"] += 1
        return
    if status_code >= 400:
        counts["rejected"] += 1
        return
    counts["accepted"] += 1
    kind = "stale_accepted" if variant == DeliveryVariant.STALE else "forgery_accepted"
    why = ("its timestamp was past the tolerance window" if variant == DeliveryVariant.STALE
           else f"it was {_VARIANT_WORDS.get(variant, str(variant))}")
    text = (f"Let W be {label}: {why}, yet the service answered {status_code} instead of "
            "refusing it with a 4xx.")
    sampler.add(Anomaly(kind=kind, event_indexes=event_indexes, expected="4xx",
                        observed=status_code, explanation=text,
                        delivery_indexes=delivery_indexes))


_VARIANT_WORDS = {
    DeliveryVariant.UNSIGNED: "unsigned",
    DeliveryVariant.WRONG_SECRET: "signed with the wrong secret",
    DeliveryVariant.TAMPERED: "tampered with after signing",
}


def _check_forged_credit(inp: CheckInput, intents: Intents, successes: list[_ForgedSuccess],
                         sampler: Sampler) -> None:
    """A forged success for an intent never genuinely delivered must credit nothing."""
    if inp.observation is None or inp.truth is None:
        return
    gross = credit_terms(intents, gross=True)
    flagged: set[str] = set()
    for forged in successes:
        model = intents.models.get(forged.intent_id)
        intent = inp.truth.intents.get(forged.intent_id)
        if intent is None or (model is not None and model.credit != Credit.NONE):
            continue
        user = intent.user or (model.user if model else None)
        account = inp.observation.accounts.get(user) if user else None
        if user is None or account is None or account.credited_tokens is None:
            continue
        before = inp.initial.accounts.get(user) if inp.initial is not None else None
        credited = account.credited_tokens - ((before.credited_tokens or 0) if before else 0)
        allowed = gross.get(user, CreditTerms()).max_tokens
        if credited - allowed >= intent.minted_tokens > 0 and forged.intent_id not in flagged:
            flagged.add(forged.intent_id)
            text = (f"Let W be {forged.label}, for intent {forged.intent_id} "
                    f"({intent.minted_tokens} tokens for {user}), which the provider never "
                    f"delivered genuinely. Then {user} was credited {credited} tokens, "
                    f"{credited - allowed} more than its genuine deliveries allow.")
            sampler.add(Anomaly(kind="forged_credit", event_indexes=forged.event_indexes,
                                expected=allowed, observed=credited, explanation=text,
                                user=user, delivery_indexes=forged.delivery_indexes),
                        badness=credited - allowed)
