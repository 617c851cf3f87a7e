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
from harness.faults.local import ProcessNemesis
from harness.faults.nemesis import CombinedNemesis, Nemesis, NoNemesis
from harness.stack import LocalStack
from harness.targets.profile import Profile

__all__ = ["local_nemesis", "target_nemesis"]

_NO_LOCAL_PROXIES = ("the local stack was started without its fault proxies (no scenario of "
                     "this run injects a link fault)")


@contextlib.asynccontextmanager
async def local_nemesis(stack: LocalStack) -> AsyncIterator[Nemesis]:
    """The local stack's nemesis, for as long as the stack runs."""
    yield CombinedNemesis(ProcessNemesis(stack), NoNemesis(_NO_LOCAL_PROXIES))


@contextlib.asynccontextmanager
async def target_nemesis(profile: Profile, *, base_url: str) -> AsyncIterator[Nemesis]:
    """The nemesis a profile's ``[faults]`` describes (none: every fault not run)."""
    yield CombinedNemesis(CommandNemesis(profile, base_url=base_url),
                          NoNemesis(f"the profile {profile.source} names no fault proxy "
                                    "([faults.toxiproxy])"))
