"""``[settle]`` of a profile: how to tell that a service has applied what it accepted.

What each mode means, and how the runner waits, is ``harness.targets.settle``'s story.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.targets.toml_table import Table

__all__ = ["POLLS_MAX", "SETTLE_MODES", "SettleSpec", "parse_settle"]

SETTLE_MODES = ("pending", "stable")
INTERVAL_MS_RANGE = (10, 10_000)
STABLE_MS_RANGE = (10, 60_000)
TIMEOUT_S_RANGE = (0.1, 600.0)
POLLS_MAX = 100_000  # with the smallest interval and the longest timeout: a bound regardless


@dataclass(frozen=True, slots=True, kw_only=True)
class SettleSpec:
    """How to tell that the service has applied everything it accepted."""

    mode: str  # one of SETTLE_MODES
    path: str | None = None  # pending: the GET path
    pending: str | None = None  # pending: the dotted path of the count in its answer
    headers: Mapping[str, str] = field(default_factory=dict)  # pending: beside the admin key
    interval_ms: int = 100
    stable_ms: int = 1000  # stable: unchanged for this long
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        assert self.mode in SETTLE_MODES, self.mode
        assert self.mode != "pending" or (self.path and self.pending is not None), self


def parse_settle(table: Table, *, headers: Mapping[str, str]) -> SettleSpec:
    """``[settle]`` of a profile, every number within its range; ``headers`` already read."""
    mode = table.choice("mode", SETTLE_MODES)
    path: str | None = None
    pending: str | None = None
    if mode == "pending":
        table.only("mode", "path", "pending", "headers", "interval_ms", "timeout_s")
        path = table.path("path", frozenset())
        pending = table.text("pending")
    else:
        table.only("mode", "interval_ms", "stable_ms", "timeout_s")
    return SettleSpec(mode=mode, path=path, pending=pending, headers=headers,
                      interval_ms=int(_number(table, "interval_ms", 100, INTERVAL_MS_RANGE,
                                              integer=True)),
                      stable_ms=int(_number(table, "stable_ms", 1000, STABLE_MS_RANGE,
                                            integer=True)),
                      timeout_s=_number(table, "timeout_s", 30.0, TIMEOUT_S_RANGE))


def _number(table: Table, key: str, default: float, bounds: tuple[float, float], *,
            integer: bool = False) -> float:
    value = table.raw(key, default)
    number = None if isinstance(value, bool) or not isinstance(value, int | float) \
        or (integer and not isinstance(value, int)) else float(value)
    if number is None or not bounds[0] <= number <= bounds[1]:
        kind = "an integer" if integer else "a number"
        raise table.error(key, value, f"must be {kind} from {bounds[0]:g} to {bounds[1]:g}")
    return number


