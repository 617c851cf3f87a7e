"""How the provider delivers webhooks: the chaos a scenario chooses.

A ``DeliveryPolicy`` is plain data, JSON-serialisable with ``to_json``/``from_json`` so the
harness can set it on a provider running in another process (``PUT /_tokenchaos/policy``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from harness.model import DeliveryVariant

__all__ = ["DeliveryPolicy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryPolicy:
    """Delivery rules for every event the provider emits while the policy is in force.

    The default delivers each event once, retrying with backoff until a 2xx.
    """

    duplicates_count: int = 0  # extra copies of each event, sent concurrently with the first
    replays_count: int = 0  # extra copies sent later, after the first was acknowledged
    replay_delay_ms: int = 200
    delay_ms_max: int = 0  # each event waits uniform [0, delay_ms_max] before its first attempt
    reorder: bool = False  # hold payment_intent.succeeded until a later event of its intent is sent
    hold_ms_max: int = 5_000  # ...or until this long has passed
    drop_count: int = 0  # first N attempts per event: sent, answer thrown away, then retried
    stale_count: int = 0  # copies re-sent signed with a timestamp past the tolerance window
    forgeries: tuple[DeliveryVariant, ...] = ()  # per event, also send these forged copies
    event_types: tuple[str, ...] = ()  # apply the chaos only to these types; () means all
    retry_backoff_ms_base: int = 50  # doubled per attempt
    retry_backoff_ms_max: int = 2_000
    attempts_max: int = 8  # genuine attempts per event before the provider gives up
    seed: int = 0  # drives every random choice of the dispatcher

    def __post_init__(self) -> None:
        for name in ("duplicates_count", "replays_count", "replay_delay_ms", "delay_ms_max",
                     "hold_ms_max", "drop_count", "stale_count", "retry_backoff_ms_base"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"DeliveryPolicy.{name} must be a non-negative int, got {value!r}")
        if not 1 <= self.attempts_max <= 32:
            raise ValueError(
                f"DeliveryPolicy.attempts_max must be in 1..32, got {self.attempts_max}")
        if self.drop_count >= self.attempts_max:
            raise ValueError(
                "DeliveryPolicy.drop_count must be below attempts_max, or nothing lands")
        if self.duplicates_count > 16 or self.replays_count > 16 or self.stale_count > 16:
            raise ValueError("DeliveryPolicy: at most 16 duplicates, replays or stale copies")
        for variant in self.forgeries:
            if not DeliveryVariant(variant).forged:
                raise ValueError(f"DeliveryPolicy.forgeries: {variant!r} is not a forged variant")

    def applies_to(self, event_type: str) -> bool:
        """Whether the chaos rules apply to events of this type."""
        return not self.event_types or event_type in self.event_types

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["forgeries"] = [str(v) for v in self.forgeries]
        data["event_types"] = list(self.event_types)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeliveryPolicy:
        """Build a policy from JSON, rejecting unknown keys with a clear message."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown DeliveryPolicy keys {unknown}; known: {sorted(known)}")
        values = dict(data)
        if "forgeries" in values:
            values["forgeries"] = tuple(DeliveryVariant(v) for v in values["forgeries"])
        if "event_types" in values:
            values["event_types"] = tuple(str(v) for v in values["event_types"])
        return cls(**values)
