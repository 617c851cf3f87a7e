"""Toxiproxy's toxics as data, and the link ``Fault`` each one carries out.

A ``Toxic`` has Toxiproxy's JSON shape (``name``, ``type``, ``stream``, ``toxicity``,
``attributes``), so the same object is sent to a real Toxiproxy and to our own proxy
(``harness.faults.proxy``). ``toxic_for(fault)`` maps a link fault to its toxic; ``down``
has none (it is the proxy's ``enabled: false``), and ``jitter`` is a latency toxic whose
latency is 0. ``parse_toxic`` reads a toxic from JSON the way Toxiproxy does (default
stream downstream, default name ``<type>_<stream>``, default toxicity 1.0) and raises
``ValueError`` with a message for anything it would refuse.

Pure: nothing here does I/O; randomness comes from the caller's ``random.Random``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.faults.spec import ATTRIBUTE_VALUE_MAX, Fault, FaultKind

__all__ = ["STREAMS", "TOXIC_ATTRIBUTES", "Toxic", "latency_delay_ms", "parse_toxic", "toxic_for",
           "toxic_name"]

STREAMS = ("downstream", "upstream")

# Toxiproxy's toxic types we carry out, with their attributes (all non-negative ints).
TOXIC_ATTRIBUTES: Mapping[str, frozenset[str]] = {
    "latency": frozenset({"latency", "jitter"}),
    "bandwidth": frozenset({"rate"}),
    "slow_close": frozenset({"delay"}),
    "timeout": frozenset({"timeout"}),
    "reset_peer": frozenset({"timeout"}),
    "limit_data": frozenset({"bytes"}),
}

_TOXIC_NAME_CHARS_MAX = 128


@dataclass(frozen=True, slots=True, kw_only=True)
class Toxic:
    """One toxic, in Toxiproxy's JSON shape."""

    name: str
    type: str
    stream: str = "downstream"  # "downstream": towards the client; "upstream": to the server
    toxicity: float = 1.0  # the share of connections it acts on
    attributes: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.type in TOXIC_ATTRIBUTES, self.type
        assert self.stream in STREAMS, self.stream
        assert 0.0 <= self.toxicity <= 1.0, self.toxicity
        assert set(self.attributes) <= TOXIC_ATTRIBUTES[self.type], self.attributes
        assert 0 < len(self.name) <= _TOXIC_NAME_CHARS_MAX, self.name

    def attribute(self, key: str) -> int:
        """An attribute's value; a missing one is 0, as in Toxiproxy."""
        assert key in TOXIC_ATTRIBUTES[self.type], (self.type, key)
        return self.attributes.get(key, 0)

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "type": self.type, "stream": self.stream,
                "toxicity": self.toxicity, "attributes": dict(self.attributes)}


def toxic_name(fault: Fault) -> str:
    """The toxic's name for a fault: its kind and stream, as Toxiproxy's default names are
    (``latency_downstream``), so a heal finds what the inject added."""
    assert fault.link is not None, fault
    return f"{fault.kind.value}_{fault.stream}"


def toxic_for(fault: Fault) -> Toxic | None:
    """The toxic that carries out a link fault; ``None`` for ``down`` (disable the proxy).

    Args:
        fault: a link fault (``fault.link`` is set).

    Returns:
        The toxic, named by ``toxic_name``; ``None`` for ``FaultKind.DOWN``.
    """
    assert fault.link is not None, f"{fault.capability} is not a link fault"
    if fault.kind is FaultKind.DOWN:
        return None
    if fault.kind is FaultKind.JITTER:
        toxic_type = "latency"
        attributes = {"latency": 0, "jitter": fault.attributes.get("jitter", 0)}
    else:
        toxic_type = fault.kind.value
        attributes = dict(fault.attributes)
    return Toxic(name=toxic_name(fault), type=toxic_type, stream=fault.stream,
                 attributes=attributes)


def latency_delay_ms(toxic: Toxic, rng: random.Random) -> int:
    """One chunk's delay under a latency toxic: ``latency`` plus a draw from
    [-jitter, jitter), as Toxiproxy draws it, never below 0."""
    assert toxic.type == "latency", toxic.type
    jitter = toxic.attribute("jitter")
    delay_ms = toxic.attribute("latency")
    if jitter > 0:
        delay_ms += rng.randrange(2 * jitter) - jitter
    return max(0, delay_ms)


def parse_toxic(data: object) -> Toxic:
    """A toxic from JSON, with Toxiproxy's defaults.

    Raises:
        ValueError: not an object, an unknown type or stream, a bad toxicity, or an
            attribute that is unknown or not a non-negative integer.
    """
    if not isinstance(data, dict):
        raise ValueError("a toxic is a JSON object")
    toxic_type = data.get("type")
    if not isinstance(toxic_type, str) or toxic_type not in TOXIC_ATTRIBUTES:
        raise ValueError(f"invalid toxic type {toxic_type!r}; one of "
                         f"{', '.join(sorted(TOXIC_ATTRIBUTES))}")
    stream = data.get("stream", "downstream") or "downstream"
    if stream not in STREAMS:
        raise ValueError(f"stream was invalid ({stream!r}), can be either upstream or "
                         "downstream")
    name = data.get("name") or f"{toxic_type}_{stream}"
    if not isinstance(name, str) or len(name) > _TOXIC_NAME_CHARS_MAX:
        raise ValueError(f"a toxic name is a string of at most {_TOXIC_NAME_CHARS_MAX} "
                         "characters")
    toxicity = data.get("toxicity", 1.0)
    if (isinstance(toxicity, bool) or not isinstance(toxicity, int | float)
            or not 0.0 <= toxicity <= 1.0):
        raise ValueError(f"toxicity {toxicity!r} is not a number from 0 to 1")
    raw_attributes = data.get("attributes")
    attributes = _parse_attributes(toxic_type, {} if raw_attributes is None else raw_attributes)
    return Toxic(name=name, type=toxic_type, stream=stream, toxicity=float(toxicity),
                 attributes=attributes)


def _parse_attributes(toxic_type: str, raw: object) -> dict[str, int]:
    if not isinstance(raw, dict):
        raise ValueError("attributes is a JSON object")
    allowed = TOXIC_ATTRIBUTES[toxic_type]
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(f"{toxic_type} has no attribute {', '.join(sorted(unknown))}; it "
                         f"takes {', '.join(sorted(allowed))}")
    attributes: dict[str, int] = {}
    for key, value in raw.items():
        if (isinstance(value, bool) or not isinstance(value, int)
                or not 0 <= value <= ATTRIBUTE_VALUE_MAX):
            raise ValueError(f"{toxic_type}.{key} = {value!r} is not an integer from 0 to "
                             f"{ATTRIBUTE_VALUE_MAX}")
        attributes[key] = value
    return attributes
