"""Benchmarks that print figures, side by side with a peer, never timed assertions.

The machines are shared and noisy, so every figure that matters is a ratio against a
peer measured in the same run, interleaved: the checkers against their own first pass
(cold and warm), the harness's op rate against locust on the same endpoint, the reference
service against pgbench running the service's own SQL. Each part is a module of this
package with one ``run(options) -> Part`` function registered in ``PARTS``;
``tokenchaos bench`` runs the parts asked for, prints each one's table and writes them
all as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PARTS", "BenchOptions", "Part", "load_parts", "register", "write_json"]

# The modules that register a part, in the order the parts run.
_PART_MODULES = ("harness.bench.checkers", "harness.bench.harness", "harness.bench.service")


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchOptions:
    """What a bench run was asked for; each part reads the knobs it has."""

    ops: tuple[int, ...] = (10_000, 100_000)  # checker history sizes
    seed: int = 1
    reps: int = 3  # interleaved repetitions of each side-by-side measurement
    duration_s: float = 10.0  # per measurement, for the parts that load a service
    clients: tuple[int, ...] = (1, 16, 64)


@dataclass(frozen=True, slots=True, kw_only=True)
class Part:
    """One part's figures: rows for JSON, and the lines of its table for the console."""

    name: str
    rows: Sequence[Mapping[str, Any]]
    table: Sequence[str]
    notes: Sequence[str] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"rows": [dict(row) for row in self.rows], "notes": list(self.notes)}


PartRunner = Callable[[BenchOptions], Part]
PARTS: dict[str, PartRunner] = {}


def register(name: str) -> Callable[[PartRunner], PartRunner]:
    """Register a part's ``run`` under ``name`` (as ``--part`` takes it)."""
    def decorate(run: PartRunner) -> PartRunner:
        assert name not in PARTS, f"bench part {name!r} registered twice"
        PARTS[name] = run
        return run
    return decorate


def load_parts() -> Mapping[str, PartRunner]:
    """Import every part's module (each registers itself); return the parts by name."""
    import importlib

    for module in _PART_MODULES:
        importlib.import_module(module)
    return PARTS


def write_json(parts: Sequence[Part], path: Path) -> Path:
    """Every part's figures in one JSON file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({part.name: part.to_json() for part in parts}, indent=2)
                    + "\n", encoding="utf-8")
    return path
