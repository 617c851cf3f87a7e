"""A profile's ``[faults]`` table: the commands that fault a target we do not manage.

As Jepsen's nemesis does, a profile may name the commands that kill, restart, pause and
resume the service (``kill = ["kubectl", "delete", "pod", "-l", "app=tokens"]``). Each is
an argv list run without a shell (a shell is one only if you name it:
``["sh", "-c", "..."]``), in the profile's folder, bounded by ``command_timeout_s``; after
``restart`` and ``resume`` the harness waits for ``[target] health_path`` to answer 2xx,
for at most ``recover_timeout_s``. Commands come in pairs: ``kill`` with ``restart``
(``kill_service``), ``pause`` with ``resume`` (``pause_service``); one without the other,
or a timeout with no command it applies to, is an error, as is any unknown key.

``[faults.toxiproxy]`` names a running Toxiproxy's API (``url`` or ``url_env``) and its
proxies on each link (``service``, ``webhooks``, ``database``), for a link nemesis to
drive. This module only validates and holds them: ``harness.faults`` carries them out.
No I/O, no clock; the environment is read for ``url_env`` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.faults.spec import Link
from harness.targets.address import http_address
from harness.targets.toml_table import Table

__all__ = [
    "COMMAND_TIMEOUT_S_DEFAULT",
    "COMMAND_TIMEOUT_S_MAX",
    "RECOVER_TIMEOUT_S_DEFAULT",
    "RECOVER_TIMEOUT_S_MAX",
    "FaultsSpec",
    "ToxiproxySpec",
    "parse_faults",
]

# A kubectl delete or a systemctl restart takes seconds; a minute is generous, ten the most.
COMMAND_TIMEOUT_S_DEFAULT = 60.0
COMMAND_TIMEOUT_S_MAX = 600.0
# A restarted pod or service answers its health check within a minute or two.
RECOVER_TIMEOUT_S_DEFAULT = 60.0
RECOVER_TIMEOUT_S_MAX = 600.0
assert 0 < COMMAND_TIMEOUT_S_DEFAULT <= COMMAND_TIMEOUT_S_MAX
assert 0 < RECOVER_TIMEOUT_S_DEFAULT <= RECOVER_TIMEOUT_S_MAX

_COMMANDS = ("kill", "restart", "pause", "resume")
_PAIRS = (("kill", "restart"), ("pause", "resume"))
_ARGV_EXAMPLE = '["kubectl", "delete", "pod", "-l", "app=tokens"]'


@dataclass(frozen=True, slots=True, kw_only=True)
class ToxiproxySpec:
    """A running Toxiproxy: its API's URL, and its proxy's name on each link."""

    url: str  # "http://127.0.0.1:8474", without a trailing slash
    proxies: Mapping[str, str]  # Link value ("service", "webhooks", "database") -> proxy name

    def __post_init__(self) -> None:
        assert self.proxies, "a Toxiproxy with no proxy"
        assert set(self.proxies) <= {link.value for link in Link}, self.proxies


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultsSpec:
    """What ``[faults]`` says; the default (no table) has no commands and no Toxiproxy."""

    kill: tuple[str, ...] | None = None  # argv; with restart, or neither
    restart: tuple[str, ...] | None = None
    pause: tuple[str, ...] | None = None  # argv; with resume, or neither
    resume: tuple[str, ...] | None = None
    command_timeout_s: float = COMMAND_TIMEOUT_S_DEFAULT
    recover_timeout_s: float = RECOVER_TIMEOUT_S_DEFAULT
    workdir: Path | None = None  # where commands run: the profile's folder; None: ours
    toxiproxy: ToxiproxySpec | None = None

    def __post_init__(self) -> None:
        assert (self.kill is None) == (self.restart is None), "kill and restart go together"
        assert (self.pause is None) == (self.resume is None), "pause and resume go together"
        assert 0 < self.command_timeout_s <= COMMAND_TIMEOUT_S_MAX, self.command_timeout_s
        assert 0 < self.recover_timeout_s <= RECOVER_TIMEOUT_S_MAX, self.recover_timeout_s
        for argv in self.commands.values():
            assert argv, "an empty argv"

    @property
    def commands(self) -> dict[str, tuple[str, ...]]:
        """The commands given, by name (``kill``, ``restart``, ``pause``, ``resume``)."""
        given = {"kill": self.kill, "restart": self.restart, "pause": self.pause,
                 "resume": self.resume}
        return {name: argv for name, argv in given.items() if argv is not None}


def parse_faults(table: Table | None, *, source: str, health_path: str | None,
                 folder: Path | None, environ: Mapping[str, str]) -> FaultsSpec:
    """Validate ``[faults]`` (None: the profile has none) into a ``FaultsSpec``.

    Raises:
        UsageError: an unknown key, a command without its pair, a timeout no command
            uses, a restart or resume without ``[target] health_path``, a bad value.
    """
    if table is None:
        return FaultsSpec()
    table.only(*_COMMANDS, "command_timeout_s", "recover_timeout_s", "toxiproxy")
    commands = {name: _argv(table, name) for name in _COMMANDS if name in table}
    for first, second in _PAIRS:
        for have, lack in ((first, second), (second, first)):
            if have in commands and lack not in commands:
                raise table.error(have, list(commands[have]), f"needs {lack} too: the "
                                  f"fault runs {first} and its heal runs {second}; add "
                                  f"{lack} = [...], or leave both out")
    if "command_timeout_s" in table and not commands:
        raise table.error("command_timeout_s", table.raw("command_timeout_s"), "applies to "
                          "the commands, and there are none; add kill and restart (or pause "
                          "and resume), or leave it out")
    recovering = {"restart", "resume"} & set(commands)
    if "recover_timeout_s" in table and not recovering:
        raise table.error("recover_timeout_s", table.raw("recover_timeout_s"), "is the wait "
                          "for health after restart or resume, and there is neither; add "
                          "them, or leave it out")
    if recovering and health_path is None:
        raise table.error(sorted(recovering)[0], list(commands[sorted(recovering)[0]]),
                          "is followed by a wait until the service is healthy, and [target] "
                          'has no health_path; add health_path = "/healthz" (a GET that '
                          "answers 2xx when the service is up)")
    toxiproxy_table = table.opt_table("toxiproxy")
    return FaultsSpec(
        **commands,
        command_timeout_s=_seconds(table, "command_timeout_s", COMMAND_TIMEOUT_S_DEFAULT,
                                   COMMAND_TIMEOUT_S_MAX),
        recover_timeout_s=_seconds(table, "recover_timeout_s", RECOVER_TIMEOUT_S_DEFAULT,
                                   RECOVER_TIMEOUT_S_MAX),
        workdir=folder,
        toxiproxy=_parse_toxiproxy(toxiproxy_table, source=source, environ=environ)
        if toxiproxy_table else None)


def _argv(table: Table, key: str) -> tuple[str, ...]:
    value = table.raw(key)
    if isinstance(value, str):
        raise table.error(key, value, f"must be a list of strings, an argv run without a "
                          f"shell: write e.g. {_ARGV_EXAMPLE}, or [\"sh\", \"-c\", \"...\"] "
                          "for a shell command line")
    if not isinstance(value, list) or not value or not all(
            isinstance(part, str) and part for part in value):
        raise table.error(key, value, f"must be a non-empty list of non-empty strings (an "
                          f"argv, no shell), e.g. {_ARGV_EXAMPLE}")
    return tuple(value)


def _seconds(table: Table, key: str, default: float, maximum: float) -> float:
    value = table.raw(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not 0 < value <= maximum:
        raise table.error(key, value, f"must be a number of seconds above 0 and at most "
                          f"{maximum:.0f}, e.g. {default:.0f}")
    return float(value)


def _parse_toxiproxy(table: Table, *, source: str,
                     environ: Mapping[str, str]) -> ToxiproxySpec:
    links = tuple(link.value for link in Link)
    table.only("url", "url_env", *links)
    env_name = table.opt_text("url_env")
    url = (environ.get(env_name) or None) if env_name else None
    url = url or table.opt_text("url")
    if not url:
        advice = (f"reads the environment variable {env_name}, which is not set, and there "
                  f"is no url; export {env_name}=http://HOST:8474 or add url"
                  if env_name else 'is missing; add url = "http://127.0.0.1:8474" (the '
                  'Toxiproxy API), or url_env and set that variable')
        raise table.error("url_env" if env_name else "url", env_name, advice)
    http_address(url, role="toxiproxy",
                 origin=f"profile {source}: [faults.toxiproxy] {'url_env' if env_name else 'url'}")
    proxies = {link: table.text(link) for link in links if link in table}
    if not proxies:
        raise table.error("service", None, "is missing, and so are webhooks and database; "
                          "name the Toxiproxy proxy on at least one link, e.g. service = "
                          '"tokens_api"')
    return ToxiproxySpec(url=url.rstrip("/"), proxies=proxies)
