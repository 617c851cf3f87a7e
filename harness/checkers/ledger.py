"""The history fold behind reconciliation: what surely and possibly moved between accounts.

One pass over the history, in order, groups ops into *logical* ops and keeps, per account,
four counters in the manner of Jepsen's counter checker:

- ``sure_up`` / ``sure_down``: tokens surely received / spent (acknowledged transfers);
- ``possible_up`` / ``possible_down``: tokens that may have been received or spent by
  now: every transfer invoked and not known to have failed, the tokens an in-flight or
  done purchase may have credited, and what a refund or dispute may have taken back.

A read is checked at its completion: the account's net (``balance − debt``) lies between
``initial + sure_up(at its invoke) − possible_down(now)`` and
``initial + possible_up(now) − sure_down(at its invoke)``. Acknowledged spends are checked
the same way through the balance they return.

Logical ops: ops that share (sender, idempotency key) and body are one op (applied once if
any is OK, never if all FAIL, maybe otherwise); two charges of one call and minute are one
charge whatever their keys. So an OK marked ``replayed = 1`` (the profile's replay rule
matched) adds nothing new: its logical op is applied once, however many of its ops were
acknowledged; a genuine double-apply shows as money moved twice. A replay mark on an op
with no earlier op of its own (``idempotency`` reports it) still counts as acknowledged:
the client asked for the op and was told OK, so the money must show it. At the end, the
logical ops that are still "maybe" become ``Unknown``s: each is applied entirely or not
at all, and a tip couples two accounts.

Memory: the accounts, the open calls, the idempotency keys and the indeterminate ops.
Credits come from the provider's truth (``intents.py``), not from here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from harness.checkers.base import (
    CheckInput,
    Sampler,
    describe_op,
    initial_account,
    key_uses,
    memoised,
    value_int,
    value_str,
)
from harness.checkers.intents import Credit, Intents, model_intents
from harness.checkers.ledger_records import (
    IN_FLIGHT,
    Bounds,
    Group,
    GroupKey,
    Ledger,
    Pending,
    Recent,
    TipInFlight,
    Unknown,
    transfer_effects,
)
from harness.model import Anomaly, Event, F, Kind, Value

__all__ = ["Ledger", "Recent", "Unknown", "account_model", "fold_ledger", "transfer_effects"]

RECENT_OPS_PER_USER_MAX = 8  # acknowledged ops kept per account, to name in prose
_GROUP_INDEXES_MAX = 16  # history indexes one logical op keeps, to name in prose

# Enum members read once per op, as module constants: ``Kind.OK`` is an attribute
# lookup on an Enum class, several times slower than reading a global.
_OK, _INFO = Kind.OK, Kind.INFO
_TIP, _CHARGE, _READ = F.TIP, F.CALL_CHARGE, F.READ_BALANCE
_TRANSFER_FS = frozenset({F.TIP, F.CALL_CHARGE})


def fold_ledger(inp: CheckInput, intents: Intents | None) -> Ledger:
    """Fold the history once, checking reads and spend answers on the way.

    Args:
        inp: the history and the initial state.
        intents: the provider-side model, to bound what purchases may credit and what
            refunds may take back; ``None`` when there is no truth (bounds get looser).
    """
    fold = _Fold(inp, intents)
    fold.run(inp.history)
    return fold.result()


def account_model(inp: CheckInput) -> tuple[Intents | None, Ledger]:
    """``model_intents`` and ``fold_ledger`` of ``inp``, computed once per input.

    Several checkers need the same fold; it is kept with the input (``memoised``), so
    ``check_all`` folds the history once.
    """
    return memoised(inp, "account_model", _account_model)


def _account_model(inp: CheckInput) -> tuple[Intents | None, Ledger]:
    intents = model_intents(inp)
    return intents, fold_ledger(inp, intents)


class _Fold:
    """The state of one pass; see the module docstring."""

    def __init__(self, inp: CheckInput, intents: Intents | None):
        self.inp = inp
        self.intents = intents
        self.sampler = Sampler()
        self.bounds: dict[str, Bounds] = {}
        self.groups: dict[GroupKey, Group] = {}
        self.done: dict[GroupKey, Value] = {}  # acknowledged keyed logical ops, settled
        self.pending: dict[int, Pending] = {}
        self.tips: dict[int, TipInFlight] = {}  # tips sent once, in flight, by op id
        self.calls: dict[str, tuple[str | None, str | None, int]] = {}
        self.disputes: dict[str, str] = {}  # logical dispute -> logical purchase
        self.clawed: set[str] = set()  # purchases whose clawback is in the bounds
        self.purchase_users: dict[str, str] = {}
        self.unknowns: list[Unknown] = []
        self.users: set[str] = set()
        self.transfer_users: set[str] = set()
        # (index, f, value, delta) per acknowledged op, made ``Recent``s at the end
        self.recent: dict[str, deque[tuple[int, F, Value, int]]] = {}
        self.starts: dict[str, tuple[int, int]] = {}  # initial (balance, debt) per user
        self.key_texts = key_uses(inp)
        self.logical_ops_count = 0
        self.reads_checked_count = 0
        self.cap_by_user: dict[str, int] = {}
        if intents is not None:
            for model in intents.models.values():
                if model.user is not None and model.credit != Credit.NONE:
                    cap = self.cap_by_user.get(model.user, 0)
                    self.cap_by_user[model.user] = max(cap, model.minted_tokens)

    def _b(self, user: str) -> Bounds:
        bounds = self.bounds.get(user)
        if bounds is None:
            bounds = self.bounds[user] = Bounds()
        return bounds

    def run(self, history: Iterable[Event]) -> None:
        """Fold every event in order.

        Most ops of a large run are tips between two named accounts whose key no other op
        carries: their invocations are taken here, their completions by ``_complete_tip``,
        doing what ``invoke`` and ``complete`` would (a test checks the two ways agree)
        without the group records.
        """
        invoke, complete, complete_tip, new_bounds = (self.invoke, self.complete,
                                                      self._complete_tip, self._b)
        texts, tips, tips_pop = self.key_texts.get, self.tips, self.tips.pop
        groups, bounds, users_add, transfer_add = (self.groups, self.bounds, self.users.add,
                                                   self.transfer_users.add)
        # A tip that pays a fee moves tokens to three accounts: it takes the general way.
        tip = _TIP if self.inp.fees.rule(_TIP) is None else None
        invoke_kind, taken = Kind.INVOKE, 0
        for event in history:
            if event.kind != invoke_kind:
                in_flight = tips_pop(event.op_id, None)
                if in_flight is None:
                    complete(event)
                else:
                    complete_tip(in_flight, event)
                continue
            key_text = event.idempotency_key
            if event.f is not tip or key_text is None or texts(key_text) != 1:
                invoke(event)
                continue
            value = event.value
            sender, recipient = value.get("sender"), value.get("recipient")
            amount = value.get("amount_tokens")
            if (type(sender) is not str or type(recipient) is not str
                    or type(amount) is not int or amount <= 0 or sender == recipient):
                invoke(event)
                continue
            users_add(sender)
            users_add(recipient)
            transfer_add(sender)
            transfer_add(recipient)
            key = ("tip", sender, key_text)
            groups[key] = IN_FLIGHT
            taken += 1
            payer = bounds.get(sender) or new_bounds(sender)
            payer.possible_down += amount
            (bounds.get(recipient) or new_bounds(recipient)).possible_up += amount
            tips[event.op_id] = (event, key, sender, recipient, amount, payer.sure_up,
                                 payer.sure_down)
        self.logical_ops_count += taken

    def _complete_tip(self, tip: TipInFlight, event: Event) -> None:
        """``complete`` of a tip ``run`` took."""
        invoke, key, sender, recipient, amount, sure_up, sure_down = tip
        kind, bounds = event.kind, self.bounds
        payer, payee = bounds[sender], bounds[recipient]
        if kind == _INFO:
            group = self.groups[key] = self._tip_group(tip)
            group.event_indexes.append(event.index)
            group.info_count = 1
            return
        del self.groups[key]  # no other op joins it: settled, it is never asked for again
        if kind != _OK:
            payer.possible_down -= amount
            payee.possible_up -= amount
            return
        value = event.value
        if "balance_tokens" in value:
            balance = value["balance_tokens"]
            start = self.starts.get(sender) or self._start(sender)
            net = start[0] - start[1]
            if (type(balance) is int and net + sure_up - payer.possible_down <= balance
                    <= net + payer.possible_up - sure_down - amount):
                self.reads_checked_count += 1
            else:  # out of bounds, or not a plain int: the general check says what it is
                self._check_spend(Pending(invoke, key, sender, sure_up, sure_down, True),
                                  event, self._tip_group(tip))
        payer.sure_down += amount
        payee.sure_up += amount
        recent = self.recent
        kept = recent.get(sender) or self._recent(sender)
        kept.append((invoke.index, _TIP, invoke.value, -amount))
        kept = recent.get(recipient) or self._recent(recipient)
        kept.append((invoke.index, _TIP, invoke.value, amount))

    def _recent(self, user: str) -> deque[tuple[int, F, Value, int]]:
        """The acknowledged ops of ``user`` kept so far, a new record the first time."""
        kept = self.recent.get(user)
        if kept is None:
            kept = self.recent[user] = deque(maxlen=RECENT_OPS_PER_USER_MAX)
        return kept

    @staticmethod
    def _tip_group(tip: TipInFlight) -> Group:
        """The group ``invoke`` would have made for a tip ``run`` took."""
        invoke, _, sender, recipient, amount, _, _ = tip
        group = Group(((sender, -amount), (recipient, amount)), _TIP, invoke.index,
                       invoke.value, True)
        group.invoked_count = 1
        group.counted = group.once = True
        group.event_indexes.append(invoke.index)
        return group

    # -- invocations ---------------------------------------------------------------

    def invoke(self, event: Event) -> None:
        f = event.f
        user: str | None
        key: GroupKey | None = None
        group: Group | None = None
        if f in _TRANSFER_FS:
            user, key, group = self._invoke_transfer(event)
        else:
            value = event.value
            user = value_str(value, "user")
            if f == F.PURCHASE:
                key = self._invoke_purchase(event)
                group = self.groups.get(key)
            elif f == F.CALL_OPEN:
                call = value_str(value, "call")
                if call is not None:
                    self.calls[call] = (user, value_str(value, "creator"),
                                        value_int(value, "rate_tokens_per_minute"))
            elif f in (F.REFUND, F.DISPUTE_OPEN, F.DISPUTE_CLOSE):
                self._invoke_clawback(value)
        if user is not None:
            bounds = self.bounds.get(user) or self._b(user)
            sure_up, sure_down = bounds.sure_up, bounds.sure_down
        else:
            sure_up = sure_down = 0
        # invoke, group, user, sure_up, sure_down, first
        self.pending[event.op_id] = Pending(event, key, user, sure_up, sure_down,
                                             group is None or group.invoked_count == 1)

    def _invoke_transfer(self, event: Event
                         ) -> tuple[str | None, GroupKey | None, Group | None]:
        """(payer, group key, group) of a tip or charge; no group for a settled replay."""
        value = event.value
        payer, effects = transfer_effects(event.f, value, self.calls, self.inp.fees)
        users, transfer_users = self.users, self.transfer_users
        for user, _ in effects:
            users.add(user)
            transfer_users.add(user)
        once = False
        if event.f == _CHARGE:
            key: GroupKey = ("charge", value_str(value, "call"), value_int(value, "minute"))
            keyed, settled = True, key in self.done
        elif event.idempotency_key is not None:
            once = self.key_texts[event.idempotency_key] == 1
            key = ("tip", payer, event.idempotency_key)
            # A key sent once has no group nor settled op yet: no need to look.
            key, settled = (key, False) if once else self._keyed(key, value)
            keyed = True
        else:
            key = ("op", event.op_id)
            keyed, settled = False, key in self.done
        if settled:
            return payer, None, None  # a replay of an acknowledged logical op: nothing moves
        group = self._join(key, effects, event, keyed)
        group.once = once
        if len(group.event_indexes) < _GROUP_INDEXES_MAX:
            group.event_indexes.append(event.index)
        if not group.ok and not group.counted:
            group.counted = True
            bounds_by_user = self.bounds
            for user, delta in effects:
                bounds = bounds_by_user.get(user) or self._b(user)
                if delta > 0:
                    bounds.possible_up += delta
                else:
                    bounds.possible_down -= delta
        return payer, key, group

    def _keyed(self, key: GroupKey, value: Value) -> tuple[GroupKey, bool]:
        """(group, settled) of an op with an idempotency key: the key, or key and body if
        reused; settled when that logical op was acknowledged already (it is ``done``).

        A key is in ``groups`` or in ``done``, never both: it moves on its OK.
        """
        group = self.groups.get(key)
        if group is not None:
            if group.value == value:
                return key, False
        else:
            first = self.done.get(key)
            if first is None:
                return key, False
            if first == value:
                return key, True
        reused = (*key, tuple(sorted(value.items())))
        return reused, reused in self.done

    def _join(self, key: GroupKey, effects: tuple[tuple[str, int], ...], event: Event,
              keyed: bool) -> Group:
        group = self.groups.get(key)
        if group is None:
            # effects, f, index, value, keyed
            group = self.groups[key] = Group(effects, event.f, event.index, event.value,
                                              keyed)
            self.logical_ops_count += 1
        group.invoked_count += 1
        group.outstanding_count += 1
        return group

    def _invoke_purchase(self, event: Event) -> GroupKey:
        value = event.value
        user = value_str(value, "user")
        purchase = value_str(value, "purchase")
        if user is not None:
            self.users.add(user)
            if purchase is not None:
                self.purchase_users[purchase] = user
        if event.idempotency_key is not None:
            key: GroupKey = self._keyed(("purchase", user, event.idempotency_key), value)[0]
        else:
            key = ("op", event.op_id)
        if self.intents is None:
            cap = 2 * value_int(value, "amount_tokens")  # no truth: a generous bonus
        else:
            cap = self.cap_by_user.get(user or "", 0)
        effects = ((user, cap),) if user is not None and cap > 0 else ()
        group = self._join(key, effects, event, keyed=True)
        group.is_purchase = True
        if not group.ok and not group.counted:
            group.counted = True
            for who, delta in effects:
                self._b(who).possible_up += delta
        return key

    def _invoke_clawback(self, value: Value) -> None:
        purchase = value_str(value, "purchase")
        dispute = value_str(value, "dispute")
        if purchase is not None and dispute is not None:
            self.disputes[dispute] = purchase
        if purchase is None and dispute is not None:
            purchase = self.disputes.get(dispute)
        if purchase is None or purchase in self.clawed:
            return
        user = self.purchase_users.get(purchase)
        if user is None and self.intents is not None:
            user = self.intents.purchase_users.get(purchase)
        if user is None:
            return
        self.clawed.add(purchase)
        bounds = self._b(user)
        bounds.clawback_possible = True
        bounds.possible_down += self._minted_of(purchase, user)

    def _minted_of(self, purchase: str, user: str) -> int:
        if self.intents is not None:
            intent_id = self.intents.purchase_intents.get(purchase)
            model = self.intents.models.get(intent_id or "")
            if model is not None:
                return model.minted_tokens
            return self.cap_by_user.get(user, 0)
        return max(self.cap_by_user.get(user, 0), 0)

    # -- completions ---------------------------------------------------------------

    def complete(self, event: Event) -> None:
        pending = self.pending.pop(event.op_id, None)
        assert pending is not None, f"completion #{event.index} has no invoke"
        if pending.group is not None:
            self._complete_group(pending, event)
        elif event.f == _READ and event.kind == _OK:
            self._check_read(pending, event)

    def _complete_group(self, pending: Pending, event: Event) -> None:
        assert pending.group is not None
        group = self.groups[pending.group]
        group.outstanding_count -= 1
        if len(group.event_indexes) < _GROUP_INDEXES_MAX:
            group.event_indexes.append(event.index)
        kind = event.kind
        if kind == _OK:
            if group.is_purchase:
                self._refine_purchase(group, event)
            elif not group.ok:
                if pending.first and pending.user is not None:
                    self._check_spend(pending, event, group)
                self._apply_sure(group, pending.invoke.index)
            group.ok = True
        elif kind == _INFO:
            group.info_count += 1
        elif not group.ok and group.info_count == 0 and group.outstanding_count == 0:
            self._uncount(group)
        if group.outstanding_count > 0:
            return
        if not group.keyed:
            del self.groups[pending.group]
            self._close(group)
        elif group.ok and not group.is_purchase:
            # Keep only what a later retry needs: the body, to tell a replay from a reuse.
            del self.groups[pending.group]
            if not group.once:
                self.done[pending.group] = group.value

    def _apply_sure(self, group: Group, index: int) -> None:
        bounds_by_user = self.bounds
        for user, delta in group.effects:
            bounds = bounds_by_user.get(user) or self._b(user)
            if delta > 0:
                bounds.sure_up += delta
            else:
                bounds.sure_down -= delta
            recent = self.recent.get(user)
            if recent is None:
                recent = self.recent[user] = deque(maxlen=RECENT_OPS_PER_USER_MAX)
            recent.append((index, group.f, group.value, delta))

    def _uncount(self, group: Group) -> None:
        if not group.counted:
            return
        group.counted = False
        for user, delta in group.effects:
            if delta > 0:
                self._b(user).possible_up -= delta
            else:
                self._b(user).possible_down += delta

    def _refine_purchase(self, group: Group, event: Event) -> None:
        """The intent is known now: bound the credit by what this intent may mint."""
        if group.ok or self.intents is None or not group.effects:
            return
        model = self.intents.models.get(value_str(event.value, "intent_id") or "")
        # Until its clawback lands the account may hold all it minted.
        cap = 0 if model is None or model.credit == Credit.NONE else model.minted_tokens
        user, counted = group.effects[0]
        if group.counted:
            self._b(user).possible_up += cap - counted
        group.effects = ((user, cap),)

    def _close(self, group: Group) -> None:
        """A logical op that can get no more ops: fold it away unless it is indeterminate."""
        if group.is_purchase or group.ok or not group.effects:
            return
        if group.info_count > 0 or group.outstanding_count > 0:
            self.unknowns.append(Unknown(label=group.label, effects=group.effects,
                                         event_indexes=tuple(group.event_indexes)))

    # -- bound checks ----------------------------------------------------------------

    def _check_read(self, pending: Pending, event: Event) -> None:
        if pending.user is None:
            return
        value = event.value
        if "balance_tokens" not in value:
            return
        balance = value_int(value, "balance_tokens")
        debt = value_int(value, "debt_tokens")
        self.reads_checked_count += 1
        # A read that shows no debt bounds the net from above only when no debt can exist.
        self._check_bounds(pending, event, observed=balance - debt, own_down=0,
                           shown=lambda: (f"net {balance - debt} tokens (balance {balance}, "
                                          f"debt {debt})"),
                           upper_applies=True if "debt_tokens" in value else None)

    def _start(self, user: str) -> tuple[int, int]:
        """``initial_account`` of ``user``, looked up once."""
        start = self.starts.get(user)
        if start is None:
            start = self.starts[user] = initial_account(self.inp.initial, user)
        return start

    def _debt_impossible(self, user: str) -> bool:
        """No debt at the start and no clawback possible yet: balance equals net."""
        return not self._b(user).clawback_possible and self._start(user)[1] == 0

    def _check_spend(self, pending: Pending, event: Event, group: Group) -> None:
        if pending.user is None:
            return
        value = event.value
        if "balance_tokens" not in value:
            return
        balance = value_int(value, "balance_tokens")
        own_down = 0
        for who, delta in group.effects:
            if who == pending.user:
                own_down -= delta
        # A balance hides debt, so it bounds the net from above only when no debt can exist.
        self.reads_checked_count += 1
        self._check_bounds(pending, event, observed=balance, own_down=max(own_down, 0),
                           shown=lambda: f"a balance of {balance} tokens after it",
                           upper_applies=None)

    def _check_bounds(self, pending: Pending, event: Event, *, observed: int, own_down: int,
                      shown: Callable[[], str], upper_applies: bool | None) -> None:
        """Check one answer against the bounds; the prose is written only for an anomaly.

        ``upper_applies``: whether the upper bound holds; ``None``, only when no debt can
        exist (``_debt_impossible``, asked only of an answer above that bound).
        """
        assert pending.user is not None
        user = pending.user
        bounds = self._b(user)
        initial_net = self._start(user)
        start = initial_net[0] - initial_net[1]
        lower = start + pending.sure_up - bounds.possible_down
        upper = start + bounds.possible_up - pending.sure_down - own_down
        if observed < lower:
            what = describe_op(event.f, pending.invoke.index, pending.invoke.value)
            text = (f"Let R be {what}: it saw {shown()}, but at least {lower} had to be there "
                    f"({start} at the start, +{pending.sure_up} surely received before it "
                    f"began, −{bounds.possible_down} at most spent or clawed back by its end).")
            self._add(pending, event, expected=f">= {lower}", observed=observed, text=text,
                      badness=lower - observed)
        elif observed > upper and (upper_applies if upper_applies is not None
                                   else self._debt_impossible(user)):
            what = describe_op(event.f, pending.invoke.index, pending.invoke.value)
            text = (f"Let R be {what}: it saw {shown()}, but at most {upper} could be there "
                    f"({start} at the start, +{bounds.possible_up} at most credited or "
                    f"received by its end, −{pending.sure_down + own_down} surely spent).")
            self._add(pending, event, expected=f"<= {upper}", observed=observed, text=text,
                      badness=observed - upper)

    def _add(self, pending: Pending, event: Event, *, expected: str, observed: int, text: str,
             badness: int) -> None:
        self.sampler.add(Anomaly(kind="impossible_read",
                                 event_indexes=(pending.invoke.index, event.index),
                                 expected=expected, observed=observed, explanation=text,
                                 user=pending.user), badness=badness)

    # -- the end -------------------------------------------------------------------

    def result(self) -> Ledger:
        for tip in self.tips.values():  # never completed: indeterminate, in its place
            group = self.groups[tip[1]] = self._tip_group(tip)
            group.outstanding_count = group.info_count = 1
        for pending in self.pending.values():  # never completed: indeterminate
            if pending.group is not None and pending.group in self.groups:
                self.groups[pending.group].info_count += 1
        for group in self.groups.values():
            self._close(group)
        sure = {user: b.sure_up - b.sure_down for user, b in self.bounds.items()}
        return Ledger(sure_tokens=sure, unknowns=tuple(self.unknowns),
                      users=frozenset(self.users), transfer_users=frozenset(self.transfer_users),
                      recent={user: tuple(Recent(index=index, f=f, value=value,
                                                 delta_tokens=delta)
                                          for index, f, value, delta in items)
                              for user, items in self.recent.items()},
                      logical_ops_count=self.logical_ops_count,
                      reads_checked_count=self.reads_checked_count,
                      reads=self.sampler)
