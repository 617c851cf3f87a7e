"""The link nemesis: link faults carried out through a Toxiproxy API (real, or ours).

``LinkNemesis(client, proxies)`` knows, for each ``Link`` it can act on, the name of the
proxy that sits on it. It can inject every link kind on those links and nothing else
(process faults belong to another nemesis). A fault becomes a toxic named by
``toxic_name`` (so its heal removes exactly that toxic), or, for ``down``, the proxy is
disabled. ``heal_all`` resets only its own proxies: it never touches another proxy the
same server may run.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.errors import FaultError
from harness.faults.spec import LINK_KINDS, Fault, FaultKind, Link
from harness.faults.toxics import toxic_for, toxic_name
from harness.faults.toxiproxy import ToxiproxyClient

__all__ = ["LINK_CAPABILITIES", "PROFILE_TABLE", "LinkNemesis"]

PROFILE_TABLE = "[faults.toxiproxy]"  # keys: url, and one proxy name per link


# What a link nemesis answers ``why_not`` for in a ``CombinedNemesis``: every link fault.
LINK_CAPABILITIES = frozenset(f"{kind.value}@{link.value}" for kind in LINK_KINDS
                              for link in Link)


class LinkNemesis:
    """Link faults on the links named in ``proxies`` (``{Link.DATABASE: "database"}``).

    ``source`` names where the proxy names come from, for ``why_not`` (the profile's file).
    """

    domain = LINK_CAPABILITIES

    def __init__(self, client: ToxiproxyClient, proxies: Mapping[Link, str], *,
                 source: str = "the profile") -> None:
        self._client = client
        self._proxies = dict(proxies)
        self._source = source
        self._capabilities = frozenset(f"{kind.value}@{link.value}"
                                       for kind in LINK_KINDS for link in self._proxies)

    @property
    def capabilities(self) -> frozenset[str]:
        return self._capabilities

    def why_not(self, capability: str) -> str:
        kind, _, link = capability.partition("@")
        if not link:
            return (f"{kind.replace('_', ' ')} is not a link fault; the fault proxy "
                    "cannot inject it")
        return (f"no fault proxy on the {link} link: name one in {PROFILE_TABLE} of "
                f"{self._source} ({link} = \"<proxy name>\")")

    async def inject(self, fault: Fault) -> None:
        proxy = self._proxy_for(fault)
        toxic = toxic_for(fault)
        if toxic is None:
            assert fault.kind is FaultKind.DOWN
            await self._client.set_enabled(proxy, False)
        else:
            await self._client.add_toxic(proxy, toxic)

    async def heal(self, fault: Fault) -> None:
        proxy = self._proxy_for(fault)
        if fault.kind is FaultKind.DOWN:
            await self._client.set_enabled(proxy, True)
        else:
            await self._client.remove_toxic(proxy, toxic_name(fault))

    async def heal_all(self) -> None:
        """Enable each of our proxies and remove its toxics; keep going past a failure,
        then raise the first one."""
        first: FaultError | None = None
        for proxy in self._proxies.values():
            try:
                await self._client.set_enabled(proxy, True)
                for name in await self._client.toxic_names(proxy):
                    await self._client.remove_toxic(proxy, name)
            except FaultError as exc:
                first = first or exc
        if first is not None:
            raise first

    def _proxy_for(self, fault: Fault) -> str:
        if fault.capability not in self._capabilities:
            raise FaultError(f"cannot inject {fault.describe()}: "
                             f"{self.why_not(fault.capability)}")
        assert fault.link is not None
        return self._proxies[fault.link]
