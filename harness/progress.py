"""Progress: what the runner tells whoever watches, as a live view on a terminal or as
plain lines in CI (``make_progress`` picks). Implementations never raise.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Mapping
from typing import Any, Protocol, TextIO

from harness.model import Event

__all__ = ["PlainProgress", "Progress", "RichProgress", "make_progress", "not_sent_summary"]


class Progress(Protocol):
    """What the runner tells whoever watches. Implementations never raise."""

    def scenario_started(self, name: str, *, seed: int, users_count: int) -> None: ...

    def step_started(self, description: str) -> None: ...

    def op_completed(self, event: Event) -> None: ...

    def scenario_finished(self, name: str, *, stats: Mapping[str, int | str]) -> None: ...


def make_progress(*, stream: TextIO | None = None,
                  environ: Mapping[str, str] | None = None) -> Progress:
    """A live view when ``stream`` is a terminal and not in CI (``CI`` set); else lines."""
    stream = sys.stderr if stream is None else stream
    environ = os.environ if environ is None else environ
    if environ.get("CI") or not stream.isatty():
        return PlainProgress(stream)
    return RichProgress(stream)


class PlainProgress:
    """One line per scenario start and end, and one per ``ops_per_line`` completed ops."""

    def __init__(self, stream: TextIO, *, ops_per_line: int = 1000) -> None:
        assert ops_per_line >= 1
        self._stream = stream
        self._ops_per_line = ops_per_line
        self._counts: Counter[str] = Counter()
        self._name = ""

    def scenario_started(self, name: str, *, seed: int, users_count: int) -> None:
        self._name = name
        self._counts = Counter()
        self._line(f"scenario {name} (seed {seed}, {users_count} users): started")

    def step_started(self, description: str) -> None:
        pass

    def op_completed(self, event: Event) -> None:
        self._counts[event.kind.value] += 1
        if self._counts.total() % self._ops_per_line == 0:
            self._line(f"scenario {self._name}: {self._summary()}")

    def scenario_finished(self, name: str, *, stats: Mapping[str, int | str]) -> None:
        self._line(f"scenario {name}: done in {stats.get('duration_ms', 0)} ms, "
                   f"{self._summary()}, {not_sent_summary(stats)}")

    def _summary(self) -> str:
        return ", ".join(f"{self._counts[kind]} {kind}" for kind in ("ok", "fail", "info"))

    def _line(self, text: str) -> None:
        print(f"tokenchaos: {text}", file=self._stream, flush=True)


class RichProgress:
    """A live line per scenario: a spinner, the current step, and ok/fail/info counts."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import Progress as RichBar
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        self._bar = RichBar(SpinnerColumn(), TextColumn("[bold]{task.description}"),
                            TextColumn("{task.fields[counts]}"),
                            TextColumn("[dim]{task.fields[step]}"), TimeElapsedColumn(),
                            console=Console(file=stream), transient=False)
        self._task: Any = None
        self._counts: Counter[str] = Counter()

    def scenario_started(self, name: str, *, seed: int, users_count: int) -> None:
        self._counts = Counter()
        if self._task is None:
            self._bar.start()
        self._task = self._bar.add_task(f"{name} (seed {seed})", total=None,
                                        counts=self._summary(), step="provisioning")

    def step_started(self, description: str) -> None:
        if self._task is not None:
            self._bar.update(self._task, step=description)

    def op_completed(self, event: Event) -> None:
        self._counts[event.kind.value] += 1
        if self._task is not None:
            self._bar.update(self._task, counts=self._summary())

    def scenario_finished(self, name: str, *, stats: Mapping[str, int | str]) -> None:
        if self._task is not None:
            self._bar.update(self._task, step=f"done in {stats.get('duration_ms', 0)} ms",
                             total=1, completed=1)
        self._bar.stop()
        self._task = None

    def _summary(self) -> str:
        return (f"[green]{self._counts['ok']} ok[/] [yellow]{self._counts['fail']} fail[/] "
                f"[red]{self._counts['info']} info[/]")


def not_sent_summary(stats: Mapping[str, int | str]) -> str:
    """How many ops were never sent, and why, from a scenario's stats (as run.json has them).

    ``ops_skipped_count``: their referent never got an id (its purchase or call failed);
    ``ops_unsupported_count``: the run or the profile offers no way to send that op kind.
    """
    skipped = _count(stats, "ops_skipped_count")
    unsupported = _count(stats, "ops_unsupported_count")
    text = f"{skipped + unsupported} skipped"
    if skipped or unsupported:
        text += (f" ({skipped} whose referent failed, {unsupported} the profile or run has no "
                 "way to send)")
    return text


def _count(stats: Mapping[str, int | str], key: str) -> int:
    value = stats.get(key, 0)
    return value if isinstance(value, int) else 0
