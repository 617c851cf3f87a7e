"""reconciliation: some choice of the indeterminate ops explains every account's end net.

The model of an account's net (``balance − debt``) at quiescence is its initial net, plus
the acknowledged transfers (``ledger.py``), plus the credits the provider's truth says a
correct service applied, minus their clawbacks (``intents.py``). Acknowledged ops apply
once, failed ones never, and each indeterminate logical op either entirely or not at all.

The question is whether one assignment of the indeterminate ops makes every observed
account match. A tip couples its two accounts, so accounts are split into components
linked by indeterminate ops, and each component is decided on its own:

- exactly, by a pruned depth-first search, when it holds at most
  ``EXACT_UNKNOWNS_MAX`` indeterminate ops (and the search stays within its node budget);
- otherwise by sound per-account checks: a subset-sum over the account's own unknown
  deltas (a bitset), falling back to interval bounds when the sums get too wide. An
  account whose net no choice reaches is an anomaly; when every account passes on its own
  the verdict holds, with a note that no joint assignment was searched.

Reads during the run are checked in the same fold, against counter-style bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from harness.checkers.base import (
    CheckInput,
    Sampler,
    conclude,
    initial_net_tokens,
    plural,
    reaches,
)
from harness.checkers.intents import (
    CreditTerms,
    IntentModel,
    credit_terms,
    explain_gap,
    pending_note,
)
from harness.checkers.ledger import Ledger, Unknown, account_model
from harness.model import AccountState, Anomaly, F, Verdict

__all__ = ["EXACT_UNKNOWNS_MAX", "SEARCH_NODES_MAX", "NetModel", "check_reconciliation",
           "net_models"]

EXACT_UNKNOWNS_MAX = 16  # indeterminate ops per component searched exactly
SEARCH_NODES_MAX = 1 << 18  # nodes one exact search may visit before falling back
ANOMALY_OPS_MAX = 8  # ops named in one anomaly


def check_reconciliation(inp: CheckInput) -> Verdict:
    """Find an assignment of the indeterminate ops under which every account's net matches.

    Anomaly kinds: ``impossible_read`` (a read or a spend's balance outside what surely
    and possibly happened by then), ``unreconciled_net`` (an account's end net that no
    choice of its indeterminate ops reaches), ``unreconciled_jointly`` (each account
    reachable alone, but no single choice fits a component).

    Count keys: ``accounts_checked``, ``accounts_unobserved``, ``logical_ops``,
    ``indeterminate_ops``, ``reads_checked``, ``components``, ``components_exact``,
    ``components_bounded``.
    """
    sampler = Sampler()
    intents, ledger = account_model(inp)
    sampler.merge(ledger.reads)
    counts = {"logical_ops": ledger.logical_ops_count,
              "reads_checked": ledger.reads_checked_count,
              "indeterminate_ops": len(ledger.unknowns)}
    if inp.observation is None:
        return conclude(sampler, counts, checked=ledger.reads_checked_count > 0,
                        unknown_note="no end state was observed; only reads were checked")
    if intents is None and any(event.f == F.PURCHASE for event in inp.history):
        return conclude(sampler, counts, checked=ledger.reads_checked_count > 0,
                        unknown_note="purchases were made but no provider truth says "
                                     "which were credited")
    terms = credit_terms(intents) if intents is not None else {}
    problem = _Problem.build(inp, ledger, terms)
    counts["accounts_checked"] = len(problem.residual)
    counts["accounts_unobserved"] = len(ledger.users - set(inp.observation.accounts))
    notes: list[str] = []
    if None in terms:
        notes.append(f"{plural(len(terms[None].credited) + len(terms[None].possible), 'intent')}"
                     " with no known owner could have credited any account")
    components = problem.components()
    counts["components"] = len(components)
    counts["components_exact"] = 0
    counts["components_bounded"] = 0
    for users, unknowns in components:
        failed, sums_exact = _check_accounts(problem, users, unknowns, sampler)
        if failed:
            continue  # an account is impossible on its own: already reported
        if len(users) == 1:
            exact = sums_exact  # the subset sum over its own unknowns decides it
        else:
            exact = _decide_jointly(problem, users, unknowns, sampler)
        counts["components_exact" if exact else "components_bounded"] += 1
    pending = pending_note(inp.truth)
    if pending:
        notes.append(pending)
    if counts["components_bounded"]:
        notes.append(f"{plural(counts['components_bounded'], 'component')} had too many "
                     "indeterminate ops to search: each account was checked on its own "
                     "(subset sums or bounds), no joint assignment was searched")
    return conclude(sampler, counts, checked=bool(problem.residual),
                    unknown_note=None if problem.residual else "no account was observed",
                    note="; ".join(notes) or None)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetModel:
    """One observed account against the model in which every logical op applies once."""

    expected_tokens: int  # initial net + acknowledged transfers + sure credits
    observed_tokens: int  # balance − debt at the end
    exact: bool  # no indeterminate op, possible credit or clawback range can move it

    @property
    def residual_tokens(self) -> int:
        """How far the account ended above the model (below it when negative)."""
        return self.observed_tokens - self.expected_tokens


def net_models(inp: CheckInput) -> dict[str, NetModel] | None:
    """Each observed account's end net against the model ``check_reconciliation`` uses.

    Acknowledged logical ops (ops of one key and body, or of one call minute) count once,
    failed ones never; an account that an indeterminate op or an uncertain credit touches
    is not ``exact``. None when nothing was observed, or purchases were made and no
    provider truth says which were credited.
    """
    intents, ledger = account_model(inp)
    if inp.observation is None:
        return None
    if intents is None and any(event.f == F.PURCHASE for event in inp.history):
        return None
    terms = credit_terms(intents) if intents is not None else {}
    problem = _Problem.build(inp, ledger, terms)
    touched = {user for unknown in problem.unknowns for user, _ in unknown.effects}
    return {user: NetModel(expected_tokens=problem.expected[user],
                           observed_tokens=problem.expected[user] + residual,
                           exact=problem.slack[user] == 0 and user not in touched)
            for user, residual in problem.residual.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Problem:
    """Per observed account: residual = observed − sure model, to be covered by unknowns."""

    residual: Mapping[str, int]  # needs Σ(chosen deltas) ∈ [residual − slack, residual]
    slack: Mapping[str, int]
    unknowns: tuple[Unknown, ...]  # transfers and possible credits, effects on observed only
    accounts: Mapping[str, AccountState]
    expected: Mapping[str, int]  # the sure model
    ledger: Ledger
    terms: Mapping[str | None, CreditTerms]

    @classmethod
    def build(cls, inp: CheckInput, ledger: Ledger,
              terms: Mapping[str | None, CreditTerms]) -> _Problem:
        assert inp.observation is not None
        accounts = inp.observation.accounts
        unattributed = terms.get(None, CreditTerms()).max_tokens
        residual: dict[str, int] = {}
        slack: dict[str, int] = {}
        expected: dict[str, int] = {}
        for user, account in accounts.items():
            term = terms.get(user, CreditTerms())
            expected[user] = (initial_net_tokens(inp.initial, user)
                              + ledger.sure_tokens.get(user, 0) + term.sure_tokens)
            residual[user] = account.balance_tokens - account.debt_tokens - expected[user]
            slack[user] = term.slack_tokens + unattributed
        unknowns: list[Unknown] = []
        for unknown in ledger.unknowns:
            effects = tuple((u, d) for u, d in unknown.effects if u in accounts)
            if effects:
                unknowns.append(Unknown(label=unknown.label, effects=effects,
                                        event_indexes=unknown.event_indexes))
        for owner, term in terms.items():
            if owner is None or owner not in accounts:
                continue
            for delta, model in term.options:
                if delta != 0:
                    unknowns.append(_credit_unknown(owner, delta, model))
        return cls(residual=residual, slack=slack, unknowns=tuple(unknowns),
                   accounts=accounts, expected=expected, ledger=ledger, terms=terms)

    def components(self) -> list[tuple[list[str], list[Unknown]]]:
        """Accounts linked by indeterminate ops, each with its unknowns."""
        parent = {user: user for user in self.residual}

        def find(user: str) -> str:
            while parent[user] != user:
                parent[user] = parent[parent[user]]
                user = parent[user]
            return user

        for unknown in self.unknowns:
            first = find(unknown.effects[0][0])
            for user, _ in unknown.effects[1:]:
                parent[find(user)] = first
        users_by_root: dict[str, list[str]] = {}
        for user in self.residual:
            users_by_root.setdefault(find(user), []).append(user)
        unknowns_by_root: dict[str, list[Unknown]] = {}
        for unknown in self.unknowns:
            unknowns_by_root.setdefault(find(unknown.effects[0][0]), []).append(unknown)
        return [(users, unknowns_by_root.get(root, []))
                for root, users in users_by_root.items()]


def _credit_unknown(user: str, delta: int, model: IntentModel) -> Unknown:
    return Unknown(label=f"the credit of {model.describe()}, {model.describe_deliveries()}",
                   effects=((user, delta),), event_indexes=model.event_indexes)


def _check_accounts(problem: _Problem, users: Sequence[str], unknowns: Sequence[Unknown],
                    sampler: Sampler) -> tuple[bool, bool]:
    """Check each account alone and report the impossible ones.

    Returns (some account is impossible, every subset sum was exact rather than an interval).
    """
    failed = False
    exact = True
    for user in users:
        own = [u for u in unknowns if u.delta_for(user) != 0]
        residual = problem.residual[user]
        result = reaches([u.delta_for(user) for u in own],
                         residual - problem.slack[user], residual)
        if result is False:
            failed = True
            sampler.add(_unreconciled(problem, user, own), badness=abs(residual))
        elif result is None:
            exact = False
    return failed, exact


def _unreconciled(problem: _Problem, user: str, own: Sequence[Unknown]) -> Anomaly:
    account = problem.accounts[user]
    observed = account.balance_tokens - account.debt_tokens
    expected = problem.expected[user]
    gap = problem.residual[user]
    term = problem.terms.get(user, CreditTerms())
    credits = f" and {plural(len(term.credited), 'credited purchase')}" if term.credited else ""
    sentences = [f"Let U be {user}: it ended with net {observed} tokens (balance "
                 f"{account.balance_tokens}, debt {account.debt_tokens}), but its start, its "
                 f"acknowledged ops{credits} leave {expected}"]
    if problem.slack[user]:
        sentences[0] += f" to {expected + problem.slack[user]}"
    if own:
        low = sum(min(u.delta_for(user), 0) for u in own)
        high = sum(max(u.delta_for(user), 0) for u in own)
        names = ", ".join(u.label for u in own[:3])
        sentences.append(f"and no choice of its {plural(len(own), 'indeterminate op')} "
                         f"({names}{', …' if len(own) > 3 else ''}; together between {low} "
                         f"and {high}) reaches {observed}")
    else:
        sentences.append(f"and it had no indeterminate op: {_signed(gap)} tokens unexplained")
    text = ", ".join(sentences) + "."
    hint = _hint(problem, user, gap)
    if hint:
        text += " " + hint
    indexes = [i for u in own[:ANOMALY_OPS_MAX] for i in u.event_indexes]
    indexes += [r.index for r in problem.ledger.recent.get(user, ())]
    indexes += [i for m in term.credited[:ANOMALY_OPS_MAX] for i in m.event_indexes]
    return Anomaly(kind="unreconciled_net", event_indexes=tuple(sorted(set(indexes))),
                   expected=expected, observed=observed, explanation=text, user=user,
                   delivery_indexes=tuple(i for m in term.credited[:ANOMALY_OPS_MAX]
                                          for i in m.success_delivery_indexes))


def _hint(problem: _Problem, user: str, gap: int) -> str | None:
    """Name an acknowledged op or a credit whose size is exactly the gap."""
    if gap == 0:
        return None
    for recent in reversed(problem.ledger.recent.get(user, ())):
        if recent.delta_tokens == gap:
            return (f"The gap is exactly {recent.label}, acknowledged once: it looks applied "
                    "twice.")
        if recent.delta_tokens == -gap:
            return f"The gap is exactly {recent.label}: it looks acknowledged but not applied."
    term = problem.terms.get(user, CreditTerms())
    for model in term.credited:
        text = explain_gap(model, gap)
        if text is not None:
            return text
    return None


def _signed(tokens: int) -> str:
    return f"+{tokens}" if tokens > 0 else str(tokens)


def _decide_jointly(problem: _Problem, users: Sequence[str], unknowns: Sequence[Unknown],
                    sampler: Sampler) -> bool:
    """Search one component exactly if it is small; return whether it was decided exactly."""
    if len(unknowns) > EXACT_UNKNOWNS_MAX:
        return False
    found = _search(problem, users, unknowns)
    if found is None:
        return False
    if not found:
        names = ", ".join(u.label for u in unknowns[:ANOMALY_OPS_MAX])
        text = (f"Let C be the accounts {', '.join(users)}: each end net is reachable on its "
                f"own, but no single choice of their {plural(len(unknowns), 'indeterminate op')}"
                f" ({names}) explains them all at once: some op was applied to one side only.")
        sampler.add(Anomaly(kind="unreconciled_jointly",
                            event_indexes=tuple(sorted({i for u in unknowns
                                                        for i in u.event_indexes})),
                            expected="one assignment for all accounts",
                            observed="none exists", explanation=text),
                    badness=len(unknowns))
    return True


def _search(problem: _Problem, users: Sequence[str],
            unknowns: Sequence[Unknown]) -> bool | None:
    """Depth-first search over apply/skip per unknown, pruned by per-account ranges.

    Returns whether an assignment exists, or ``None`` past ``SEARCH_NODES_MAX`` nodes.
    """
    position = {user: i for i, user in enumerate(users)}
    steps = [[(position[u], d) for u, d in unknown.effects] for unknown in unknowns]
    count = len(users)
    # suffix_low[j][a] / suffix_high[j][a]: what unknowns j.. can still add to account a.
    suffix_low = [[0] * count for _ in range(len(steps) + 1)]
    suffix_high = [[0] * count for _ in range(len(steps) + 1)]
    for j in range(len(steps) - 1, -1, -1):
        suffix_low[j] = list(suffix_low[j + 1])
        suffix_high[j] = list(suffix_high[j + 1])
        for a, d in steps[j]:
            if d < 0:
                suffix_low[j][a] += d
            else:
                suffix_high[j][a] += d
    need = [problem.residual[user] for user in users]
    slack = [problem.slack[user] for user in users]
    nodes = 0

    def feasible(j: int) -> bool:
        return all(suffix_low[j][a] <= need[a] and suffix_high[j][a] >= need[a] - slack[a]
                   for a in range(count))

    # visit reaches itself through this list, emptied at the end: a function that named
    # itself would be a cycle, left for the collector (which check_all pauses).
    recurse: list[Callable[[int], bool | None]] = []

    def visit(j: int) -> bool | None:
        nonlocal nodes
        nodes += 1
        if nodes > SEARCH_NODES_MAX:
            return None
        if not feasible(j):
            return False
        if j == len(steps):
            return True
        for a, d in steps[j]:  # apply unknown j
            need[a] -= d
        applied = recurse[0](j + 1)
        for a, d in steps[j]:
            need[a] += d
        if applied is not False:
            return applied
        return recurse[0](j + 1)  # skip unknown j

    recurse.append(visit)
    try:
        return visit(0)
    finally:
        recurse.clear()
