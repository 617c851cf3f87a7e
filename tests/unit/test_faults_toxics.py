"""Link faults as Toxiproxy toxics, and reading toxics the way Toxiproxy does."""

from __future__ import annotations

import random

import pytest

from harness.faults.spec import LINK_KINDS, Fault, FaultKind, Link
from harness.faults.toxics import (
    TOXIC_ATTRIBUTES,
    Toxic,
    latency_delay_ms,
    parse_toxic,
    toxic_for,
)


def test_toxic_for_latency_keeps_toxiproxy_names_and_stream() -> None:
    fault = Fault(kind=FaultKind.LATENCY, link=Link.DATABASE,
                  attributes={"latency": 200, "jitter": 50}, stream="upstream")
    assert toxic_for(fault) == Toxic(name="latency_upstream", type="latency",
                                     stream="upstream",
                                     attributes={"latency": 200, "jitter": 50})


def test_toxic_for_jitter_is_latency_zero() -> None:
    toxic = toxic_for(Fault(kind=FaultKind.JITTER, link=Link.SERVICE,
                            attributes={"jitter": 30}))
    assert toxic is not None
    assert toxic.type == "latency"
    assert toxic.attributes == {"latency": 0, "jitter": 30}
    assert toxic.name == "jitter_downstream"  # not the latency fault's name: both may run


def test_toxic_for_down_is_none() -> None:
    assert toxic_for(Fault(kind=FaultKind.DOWN, link=Link.WEBHOOKS)) is None


@pytest.mark.parametrize("kind", sorted(LINK_KINDS - {FaultKind.DOWN, FaultKind.JITTER}))
def test_toxic_for_every_other_link_kind_has_its_own_type(kind: FaultKind) -> None:
    toxic = toxic_for(Fault(kind=kind, link=Link.SERVICE))
    assert toxic is not None
    assert toxic.type == kind.value
    assert toxic.type in TOXIC_ATTRIBUTES
    assert toxic.toxicity == 1.0


def test_toxic_json_round_trips() -> None:
    toxic = Toxic(name="t", type="bandwidth", stream="upstream", toxicity=0.5,
                  attributes={"rate": 10})
    assert parse_toxic(toxic.to_json()) == toxic


def test_parse_toxic_fills_toxiproxys_defaults() -> None:
    toxic = parse_toxic({"type": "timeout", "attributes": {"timeout": 5}})
    assert (toxic.name, toxic.stream, toxic.toxicity) == ("timeout_downstream",
                                                          "downstream", 1.0)


@pytest.mark.parametrize(("body", "words"), [
    ([], "JSON object"),
    ({"type": "slicer"}, "invalid toxic type"),
    ({"type": "latency", "stream": "sideways"}, "stream was invalid"),
    ({"type": "latency", "toxicity": 2}, "toxicity"),
    ({"type": "latency", "attributes": {"rate": 1}}, "no attribute rate"),
    ({"type": "latency", "attributes": {"latency": -1}}, "not an integer"),
    ({"type": "latency", "attributes": {"latency": True}}, "not an integer"),
    ({"type": "latency", "attributes": []}, "attributes"),
])
def test_parse_toxic_refuses_with_a_reason(body: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_toxic(body)


def test_latency_delay_is_seeded_and_within_the_jitter() -> None:
    toxic = Toxic(name="l", type="latency", attributes={"latency": 100, "jitter": 20})
    first = [latency_delay_ms(toxic, random.Random(5)) for _ in range(3)]
    rng_a, rng_b = random.Random(9), random.Random(9)
    draws_a = [latency_delay_ms(toxic, rng_a) for _ in range(200)]
    assert draws_a == [latency_delay_ms(toxic, rng_b) for _ in range(200)]
    assert len(set(first)) == 1
    assert all(80 <= d < 120 for d in draws_a)
    assert len(set(draws_a)) > 1


def test_jitter_alone_never_delays_below_zero() -> None:
    toxic = Toxic(name="j", type="latency", attributes={"latency": 0, "jitter": 50})
    rng = random.Random(1)
    assert min(latency_delay_ms(toxic, rng) for _ in range(100)) == 0
