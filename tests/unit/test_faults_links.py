"""The link nemesis: what it can do, why not, and which API calls a fault becomes."""

from __future__ import annotations

from typing import Any

import pytest

from harness.errors import FaultError
from harness.faults.links import LinkNemesis
from harness.faults.nemesis import CombinedNemesis, NoNemesis
from harness.faults.spec import LINK_KINDS, Fault, FaultKind, Link
from harness.faults.toxics import Toxic


class _FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def set_enabled(self, name: str, enabled: bool) -> None:
        self.calls.append(("enabled", name, enabled))

    async def add_toxic(self, proxy: str, toxic: Toxic) -> None:
        self.calls.append(("add", proxy, toxic.name, toxic.type))

    async def remove_toxic(self, proxy: str, name: str) -> None:
        self.calls.append(("remove", proxy, name))

    async def toxic_names(self, proxy: str) -> tuple[str, ...]:
        return ("latency_downstream",) if proxy == "db" else ()


def _nemesis() -> tuple[LinkNemesis, _FakeClient]:
    client = _FakeClient()
    return LinkNemesis(client, {Link.DATABASE: "db"}), client  # type: ignore[arg-type]


def test_capabilities_are_every_link_kind_on_named_links_only() -> None:
    nemesis, _ = _nemesis()
    assert nemesis.capabilities == {f"{k.value}@database" for k in LINK_KINDS}


def test_why_not_names_the_profile_table() -> None:
    nemesis, _ = _nemesis()
    reason = nemesis.why_not("latency@webhooks")
    assert "no fault proxy on the webhooks link" in reason
    assert "[faults.toxiproxy]" in reason
    assert "not a link fault" in nemesis.why_not("kill_service")
    named = LinkNemesis(_FakeClient(), {}, source="seed.toml")  # type: ignore[arg-type]
    assert "[faults.toxiproxy] of seed.toml" in named.why_not("down@service")


def test_a_combined_nemesis_asks_the_link_nemesis_why_not_for_links_only() -> None:
    nemesis, _ = _nemesis()
    combined = CombinedNemesis(nemesis, NoNemesis("no process faults here"))
    assert "webhooks link" in combined.why_not("down@webhooks")
    assert combined.why_not("kill_service") == "no process faults here"


async def test_inject_and_heal_a_toxic_by_the_same_name() -> None:
    nemesis, client = _nemesis()
    fault = Fault(kind=FaultKind.LATENCY, link=Link.DATABASE, attributes={"latency": 5})
    await nemesis.inject(fault)
    await nemesis.heal(fault)
    assert client.calls == [("add", "db", "latency_downstream", "latency"),
                            ("remove", "db", "latency_downstream")]


async def test_down_disables_and_heal_enables() -> None:
    nemesis, client = _nemesis()
    fault = Fault(kind=FaultKind.DOWN, link=Link.DATABASE)
    await nemesis.inject(fault)
    await nemesis.heal(fault)
    assert client.calls == [("enabled", "db", False), ("enabled", "db", True)]


async def test_a_link_without_a_proxy_is_a_fault_error() -> None:
    nemesis, client = _nemesis()
    with pytest.raises(FaultError, match="webhooks link"):
        await nemesis.inject(Fault(kind=FaultKind.DOWN, link=Link.WEBHOOKS))
    assert client.calls == []


async def test_heal_all_enables_and_clears_only_its_proxies() -> None:
    nemesis, client = _nemesis()
    await nemesis.heal_all()
    assert client.calls == [("enabled", "db", True), ("remove", "db", "latency_downstream")]
