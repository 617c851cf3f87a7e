"""Which nemesis a run gets: the local stack's, or the one a target's profile describes.

For the local stack: process and database faults (``ProcessNemesis``) and, when the stack
was started with its fault proxies, link faults through them (``LinkNemesis``). For a
target the harness does not manage: the profile's ``[faults]`` commands
(``CommandNemesis``) and its ``[faults.toxiproxy]`` proxies (``LinkNemesis`` driving a
real Toxiproxy). What neither offers is "not run for this target", with the reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from harness.faults.commands import CommandNemesis
from harness.faults.links import LinkNemesis
from harness.faults.local import ProcessNemesis
from harness.faults.nemesis import CombinedNemesis, Nemesis, NoNemesis
from harness.faults.spec import Link
from harness.faults.toxiproxy import ToxiproxyClient
from harness.stack import LocalStack
from harness.targets.profile import Profile

__all__ = ["TOXIPROXY_TIMEOUT_S", "local_nemesis", "target_nemesis"]

TOXIPROXY_TIMEOUT_S = 10.0
_NO_LOCAL_PROXIES = ("the local stack was started without its fault proxies (no scenario of "
                     "this run injects a link fault)")
# The names the local stack gives its proxies are the links' own.
_LOCAL_PROXIES = {link: link.value for link in Link}


@contextlib.asynccontextmanager
async def local_nemesis(stack: LocalStack) -> AsyncIterator[Nemesis]:
    """The local stack's nemesis, for as long as the stack runs."""
    assert stack.info is not None, "start the stack first"
    api_url = stack.info.proxy_api_url
    if api_url is None:
        yield CombinedNemesis(ProcessNemesis(stack), NoNemesis(_NO_LOCAL_PROXIES))
        return
    async with ToxiproxyClient(api_url, timeout_s=TOXIPROXY_TIMEOUT_S) as client:
        yield CombinedNemesis(ProcessNemesis(stack),
                              LinkNemesis(client, _LOCAL_PROXIES, source="the local stack"))


@contextlib.asynccontextmanager
async def target_nemesis(profile: Profile, *, base_url: str) -> AsyncIterator[Nemesis]:
    """The nemesis a profile's ``[faults]`` describes (none: every fault not run)."""
    commands = CommandNemesis(profile, base_url=base_url)
    spec = profile.faults.toxiproxy
    if spec is None:
        yield CombinedNemesis(commands, NoNemesis(
            f"the profile {profile.source} names no fault proxy: add [faults.toxiproxy] "
            "with the Toxiproxy API's url and a proxy name per link"))
        return
    proxies = {Link(link): name for link, name in spec.proxies.items()}
    async with ToxiproxyClient(spec.url, timeout_s=TOXIPROXY_TIMEOUT_S) as client:
        yield CombinedNemesis(commands, LinkNemesis(client, proxies, source=profile.source))
