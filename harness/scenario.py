"""The shape of a scenario: users, a seeded step generator, checkers, and what it provokes.

Scenario modules under ``scenarios/`` each define one ``SCENARIO``, as Jepsen's bank.clj
defines one workload. Generators are pure functions of a ``random.Random`` and the
parameters: nothing runs at import, nothing uses the global ``random`` or a clock.

The parameters carry what a scenario must know of its target (``TargetTraits``): the
packages it sells and which op kinds it offers, with or without an idempotency key. A
scenario draws its amounts from the first and leaves out what the second rules out; what
it leaves out it declares (``Scenario.not_run``), so the run reports it as "not run for
this target" instead of judging it or pretending it held.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.faults.spec import ALL_CAPABILITIES, Fault
from harness.model import TARGET_FS, F
from harness.schedule import Step
from harness.targets.pricing import REFERENCE_PRICING, Pricing

if TYPE_CHECKING:
    from harness.faults.nemesis import Nemesis
    from harness.targets.profile import OpSpec, Profile

__all__ = ["NotRun", "Scenario", "ScenarioParams", "StepGenerator", "TargetTraits",
           "traits_of"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetTraits:
    """What scenarios need to know of a target: its prices and the op kinds it offers.

    The default is the reference service: every op kind, every spend keyed.
    """

    pricing: Pricing = REFERENCE_PRICING
    ops: frozenset[F] = TARGET_FS  # op kinds the profile has an [ops.<kind>] for
    keyless: frozenset[F] = frozenset()  # of those, the ones that carry no idempotency key
    source: str = "reference.toml"  # the profile's file, for reasons
    # (op kind, template variable) pairs the profile's templates use, and those it casts
    # with :int; None: every variable, none cast (what the reference profile needs).
    variables: frozenset[tuple[F, str]] | None = None
    int_casts: frozenset[tuple[F, str]] = frozenset()
    # Fault.capability strings the run's nemesis can inject, and why each other one cannot.
    faults: frozenset[str] = frozenset()
    fault_reasons: Mapping[str, str] = field(default_factory=dict)

    def can(self, fault: Fault) -> bool:
        """Whether this run can inject ``fault`` on the target."""
        return fault.capability in self.faults

    def fault_reason(self, fault: Fault) -> str:
        """Why ``fault`` is not run for this target, in the user's terms."""
        assert fault.capability not in self.faults, fault.capability
        return self.fault_reasons.get(
            fault.capability, f"this run cannot inject {fault.describe()} on the target")

    def offers(self, f: F) -> bool:
        """Whether the target has this op kind at all."""
        return f in self.ops

    def keyed(self, f: F) -> bool:
        """Whether the target has this op kind and it carries an idempotency key."""
        return f in self.ops and f not in self.keyless

    def sends(self, f: F, variable: str) -> bool:
        """Whether the profile's templates of ``f`` send ``variable`` (as any type)."""
        return f in self.ops and (self.variables is None or (f, variable) in self.variables)

    def sends_text(self, f: F, variable: str) -> bool:
        """Whether ``variable`` may hold text in ``f``'s request (it is not cast to int)."""
        return self.sends(f, variable) and (f, variable) not in self.int_casts

    def missing_reason(self, f: F) -> str:
        """Why an op kind the scenario needs is not sent, in the profile's words."""
        assert f not in self.ops, f
        return f"the profile {self.source} has no [ops.{f.value}]"

    def keyless_reason(self, f: F) -> str:
        """Why same-key retries of an op kind are not sent, in the profile's words."""
        assert f in self.keyless, f
        return (f"{_PLURALS.get(f, f.value)} carry no idempotency key: [ops.{f.value}] "
                f'idempotency = "none" in {self.source}')


_PLURALS = {F.TIP: "tips", F.PURCHASE: "purchases", F.CALL_CHARGE: "call charges",
            F.CALL_OPEN: "call openings", F.CALL_END: "call endings"}


def traits_of(profile: Profile, *, nemesis: Nemesis | None = None) -> TargetTraits:
    """The traits of the target a profile describes, with the faults ``nemesis`` can do
    (none without one)."""
    ops = frozenset(profile.ops) & TARGET_FS
    keyless = frozenset(f for f, spec in profile.ops.items()
                        if f in _SPENDS and not spec.idempotent)
    variables = frozenset((f, name) for f, spec in profile.ops.items()
                          for name in spec.variables)
    int_casts = frozenset((f, name) for f, spec in profile.ops.items()
                          for name in _INT_CAST.findall(_template_text(spec)))
    faults = frozenset() if nemesis is None else nemesis.capabilities
    reasons = {cap: ("this run has no nemesis" if nemesis is None else nemesis.why_not(cap))
               for cap in sorted(ALL_CAPABILITIES - faults)}
    return TargetTraits(pricing=profile.pricing, ops=ops, keyless=keyless,
                        source=profile.source, variables=variables, int_casts=int_casts,
                        faults=faults, fault_reasons=reasons)


_INT_CAST = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):int\}")


def _template_text(spec: OpSpec) -> str:
    return " ".join([spec.path, json.dumps(spec.body), *spec.headers.values()])


_SPENDS = frozenset({F.PURCHASE, F.TIP, F.CALL_CHARGE})


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioParams:
    """Size knobs every scenario reads; suites scale them. ``target`` is set per run."""

    seed: int = 0
    scale: int = 1  # smoke = 1; full multiplies the counts
    concurrency: int = 16  # ops per concurrent batch, where the scenario fans out
    target: TargetTraits = field(default_factory=TargetTraits)

    def __post_init__(self) -> None:
        assert self.scale >= 1
        assert self.concurrency >= 1

    def for_target(self, traits: TargetTraits) -> ScenarioParams:
        """The same parameters for a run against a target with ``traits``."""
        return dataclasses.replace(self, target=traits)

    def record(self) -> dict[str, int]:
        """The knobs as JSON values, for the history and run.json (the target is there)."""
        return {"seed": self.seed, "scale": self.scale, "concurrency": self.concurrency}


StepGenerator = Callable[[random.Random, ScenarioParams], Iterator[Step]]


@dataclass(frozen=True, slots=True, kw_only=True)
class NotRun:
    """A part of a scenario not run for this target, and why (or the whole: ``part`` None).

    ``provokes`` and ``checkers`` are what only that part provokes or needs: they are left
    out of the judgement, so the run never calls them ``unknown`` for want of the part.
    """

    part: str | None  # "tip retries with the same key"; None: the whole scenario
    reason: str  # 'tips carry no idempotency key: [ops.tip] idempotency = "none"'
    provokes: tuple[str, ...] = ()
    checkers: tuple[str, ...] = ()


def _nothing_left_out(params: ScenarioParams) -> tuple[NotRun, ...]:
    del params
    return ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One workload: who takes part, what they do, and what must hold afterwards."""

    name: str  # kebab-case, as on the command line: "tip-cycle"
    summary: str  # one line for `tokenchaos list`
    users: Callable[[ScenarioParams], Mapping[str, str]]  # logical name -> "fan" | "creator"
    generator: StepGenerator
    checkers: tuple[str, ...]  # names in harness.checkers.CHECKERS expected to hold
    provokes: tuple[str, ...] = ()  # coverage tags that must happen at least once
    extra: Mapping[str, int | str] = field(default_factory=dict)
    faults: tuple[Fault, ...] = ()  # every fault the generator may inject, for planning
    # The parts the generator leaves out for a target: the same pure function of params.
    not_run: Callable[[ScenarioParams], tuple[NotRun, ...]] = _nothing_left_out

    def adapted(self, params: ScenarioParams) -> Scenario:
        """This scenario as judged for ``params``' target: what it left out is not judged."""
        return self.without(self.not_run(params))

    def without(self, left_out: Sequence[NotRun]) -> Scenario:
        """This scenario judged without what ``left_out`` provokes or needs.

        ``tokenchaos check`` rebuilds a run's judgement from the parts its history says
        were left out, so it agrees with the run without knowing the target.
        """
        provokes = {tag for part in left_out for tag in part.provokes}
        checkers = {name for part in left_out for name in part.checkers}
        kept_provokes = tuple(t for t in self.provokes if t not in provokes)
        if self.provokes and not kept_provokes:
            # Everything it existed to provoke was left out: coverage has nothing to ask.
            checkers.add("coverage")
        return dataclasses.replace(
            self, provokes=kept_provokes,
            checkers=tuple(c for c in self.checkers if c not in checkers))

    def whole_not_run(self, params: ScenarioParams) -> NotRun | None:
        """Why none of this scenario can run against ``params``' target, or None."""
        return next((part for part in self.not_run(params) if part.part is None), None)
