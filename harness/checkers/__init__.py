"""Checkers: pure functions from a run's history and end state to a ``Verdict``.

``CHECKERS`` maps each name to its checker, in the order reports show them, and
``DESCRIPTIONS`` gives each a line for ``tokenchaos list``. ``check_all`` runs them, turning
a checker that crashes into an "unknown" verdict carrying the error, as Jepsen's
``check-safe`` does (tests pass ``raise_errors=True`` to see the traceback instead).

Nothing in this package does I/O, reads a clock, draws randomness, or imports httpx,
psycopg or asyncio; a unit test enforces it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from harness.checkers.balances import check_ledger_drift, check_non_negative
from harness.checkers.base import Checker, CheckInput
from harness.checkers.calls import check_calls
from harness.checkers.conservation import check_conservation
from harness.checkers.coverage import PROVOCATIONS, check_coverage, validate_tags
from harness.checkers.credit import check_exactly_once_credit
from harness.checkers.debt import check_debt
from harness.checkers.durability import check_durability
from harness.checkers.idempotency import check_idempotency
from harness.checkers.reconciliation import check_reconciliation
from harness.checkers.refunds import check_refunds
from harness.checkers.refusals import check_key_scope, check_refusals
from harness.checkers.server_errors import check_errors
from harness.checkers.webhooks import check_webhook_auth
from harness.errors import UsageError
from harness.model import Verdict

__all__ = [
    "CHECKERS",
    "DESCRIPTIONS",
    "PROVOCATIONS",
    "CheckInput",
    "Checker",
    "check_all",
    "validate_tags",
]

CHECKERS: dict[str, Checker] = {
    "non_negative": check_non_negative,
    "conservation": check_conservation,
    "exactly_once_credit": check_exactly_once_credit,
    "reconciliation": check_reconciliation,
    "idempotency": check_idempotency,
    "ledger_drift": check_ledger_drift,
    "refunds": check_refunds,
    "debt": check_debt,
    "calls": check_calls,
    "webhook_auth": check_webhook_auth,
    "refusals": check_refusals,
    "key_scope": check_key_scope,
    "durability": check_durability,
    "errors": check_errors,
    "coverage": check_coverage,
}

DESCRIPTIONS: dict[str, str] = {
    "non_negative": "no balance or debt below zero, in any read or at the end",
    "conservation": "accounts changed by exactly what was minted minus what was clawed back",
    "exactly_once_credit": "each delivered payment credited once; failed or undelivered never",
    "reconciliation": "some choice of the timed-out ops explains every account and every read",
    "idempotency": "a retried request answered the same; a reused key with another body refused",
    "ledger_drift": "every balance equals the sum of its ledger entries",
    "refunds": "clawbacks cumulative and within what was minted; shortfalls recorded as debt",
    "debt": "no account holds a balance beside a debt; an account owing tokens has status debt",
    "calls": "no minute charged twice, no charge after the call ended",
    "webhook_auth": "forged, tampered and stale webhooks refused and crediting nothing",
    "refusals": "bad input (negative, zero, huge or text amounts, self tips...) refused with a 4xx",
    "key_scope": "two accounts sending one idempotency key each get their own answer",
    "durability": "after faults heal, each acknowledged op is there once; the target recovers",
    "errors": "no 5xx answer, and no op slower than a latency bound you set (--latency-bound-ms)",
    "coverage": "the run provoked every outcome its scenario exists to provoke",
}

assert list(DESCRIPTIONS) == list(CHECKERS)


def check_all(inp: CheckInput, names: Iterable[str] | None = None, *,
              raise_errors: bool = False) -> dict[str, Verdict]:
    """Run the named checkers (all of them by default), in ``CHECKERS`` order.

    Args:
        inp: the history, end state and provider truth of one scenario run.
        names: which checkers to run; ``None`` runs every one.
        raise_errors: re-raise a checker's exception instead of turning it into an
            "unknown" verdict (for tests).

    Returns:
        Verdict per checker name.

    Raises:
        UsageError: a name is not in ``CHECKERS``.
    """
    wanted = list(CHECKERS) if names is None else list(dict.fromkeys(names))
    unknown = [name for name in wanted if name not in CHECKERS]
    if unknown:
        raise UsageError(f"unknown checker(s) {unknown}; known: {', '.join(CHECKERS)}")
    verdicts: dict[str, Verdict] = {}
    with _collector_paused():
        for name in sorted(wanted, key=list(CHECKERS).index):
            try:
                verdicts[name] = CHECKERS[name](inp)
            except Exception as exc:
                if raise_errors:
                    raise
                verdicts[name] = Verdict(valid="unknown", note=f"checker crashed: "
                                                               f"{type(exc).__name__}: {exc}")
    return verdicts


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while the checkers run.

    They allocate small objects per op (the shared pairs, the fold's groups); beside the
    millions of objects of a loaded history, every automatic collection rescans them all,
    which more than doubles the checkers' time on a large run. The checkers leave no
    cycles behind (a test checks), so nothing waits for the collector; it is restored as
    it was afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
