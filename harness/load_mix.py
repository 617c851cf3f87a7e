"""Load mode's workload: a weighted op mix, and what one locust user does next.

A *load profile* (``LoadMix``) weighs the op kinds a locust user draws: purchases, tips to
the user's own creator, tips to one of the run's hot creators (``hot_tip``), call charges
(a call is opened first and ended after a few minutes), webhook replays (a genuine success
event of one of the user's own purchases, sent again: the target must absorb it) and
balance reads. ``UserPlan`` is one locust user's state: its own fans and creator, its
purchases that went through, its open call; ``next_op`` draws the next op from the user's
own ``random.Random`` and builds it with the scenarios' ``OpFactory``, so load ops are the
same ops, with the same value keys, as every scenario's.

A locust user runs its ops one after another, so its own accounts never see two ops at
once. The hot creators (``HOT_CREATORS_COUNT``, named by ``hot_creator_names``) are what
makes the load concurrent: every user of every locust process tips the same few
creators, so tips to one recipient overlap as they do for a popular creator, and a
service that loses an update on the recipient's row loses tokens the checkers count.

The provisioning request of a user (``provisioning_request``, ``read_provisioned``) is
built and read here, sans-IO, from the profile's ``[provisioning]``, as
``harness.targets.provisioning`` does over httpx, so a locust process provisions through
its own client. Nothing here sends, sleeps, reads a clock or uses the global ``random``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.errors import ProvisioningFailed, UsageError
from harness.model import DeliveryVariant, F, Kind, Op, Outcome
from harness.protocol import (
    Credentials,
    HttpRequest,
    HttpResponse,
    body_excerpt,
    json_path,
    render_json,
    render_text,
)
from harness.targets.profile import HttpProvisioning, Profile
from scenarios._common import EVENT_SUCCEEDED, OpFactory, roster

__all__ = ["CALL_MINUTES_MAX", "DEFAULT_MIX", "FUND_TOKENS", "HOT_CREATORS_COUNT",
           "MIX_KINDS", "LoadMix", "UserPlan", "check_http_provisioning", "hot_creator_names",
           "load_provokes", "parse_mix", "provisioning_request", "read_provisioned"]

# The op kinds a load profile weighs, as written in --mix.
MIX_KINDS = ("purchase", "tip", "hot_tip", "call_charge", "webhook_replay", "read_balance")
FUND_TOKENS = 1000  # each fan buys the package nearest this before its first draw
FANS_PER_USER_COUNT = 2
CREATORS_PER_USER_COUNT = 1
# Creators every locust user tips (``hot_tip``): few, so that at any load beyond a handful
# of users several tips to one of them are in flight at once.
HOT_CREATORS_COUNT = 2
HOT_CREATOR_PREFIX = "hot_creator_"
TIP_TOKENS_MAX = 5
CALL_RATE_TOKENS_MAX = 3
CALL_MINUTES_MAX = 5  # minutes charged before a call is ended and another opened
_WEIGHT_MAX = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadMix:
    """Weights of the op kinds a locust user draws (0 leaves a kind out)."""

    weights: Mapping[str, int]

    def __post_init__(self) -> None:
        for kind, weight in self.weights.items():
            assert kind in MIX_KINDS, kind
            assert 0 <= weight <= _WEIGHT_MAX, (kind, weight)
        assert sum(self.weights.values()) >= 1, "a mix needs one weight above zero"

    def draw(self, rng: random.Random) -> str:
        """One op kind, with probability weight / total. Pure given ``rng``."""
        kinds = [kind for kind in MIX_KINDS if self.weights.get(kind, 0) > 0]
        point = rng.randrange(sum(self.weights[kind] for kind in kinds))
        for kind in kinds:
            point -= self.weights[kind]
            if point < 0:
                return kind
        raise AssertionError("the draw fell past the last weight")

    def text(self) -> str:
        """The mix as ``--mix`` takes it: ``tip=10,purchase=1``."""
        return ",".join(f"{kind}={self.weights[kind]}" for kind in MIX_KINDS
                        if kind in self.weights)


# Most tips go to the hot creators, where they race; the rest to the user's own creator,
# whose row only that user's ops touch, so both shapes of tip are loaded.
DEFAULT_MIX = LoadMix(weights={"purchase": 1, "tip": 4, "hot_tip": 6, "call_charge": 4,
                               "webhook_replay": 1, "read_balance": 2})


def hot_creator_names(count: int = HOT_CREATORS_COUNT) -> tuple[str, ...]:
    """The logical names of the hot creators: ``hot_creator_0``, ``hot_creator_1``..."""
    assert count >= 1, count
    return tuple(f"{HOT_CREATOR_PREFIX}{index}" for index in range(count))


def parse_mix(text: str) -> LoadMix:
    """A mix from ``kind=weight,...``; kinds not named weigh 0.

    Raises:
        UsageError: an unknown kind, a weight that is not a whole number from 0 to
            1000000, a kind named twice, or every weight 0.
    """
    weights: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        kind, sep, number = item.partition("=")
        kind = kind.strip()
        if not sep or kind not in MIX_KINDS:
            raise UsageError(f"--mix {text!r}: {item!r} is not KIND=WEIGHT with KIND one of "
                             f"{', '.join(MIX_KINDS)}; e.g. --mix tip=10,purchase=1")
        if kind in weights:
            raise UsageError(f"--mix {text!r}: {kind} is weighed twice")
        if not number.strip().isdigit() or int(number) > _WEIGHT_MAX:
            raise UsageError(f"--mix {text!r}: the weight of {kind} must be a whole number "
                             f"from 0 to {_WEIGHT_MAX}, not {number.strip()!r}")
        weights[kind] = int(number)
    if sum(weights.values()) < 1:
        raise UsageError(f"--mix {text!r}: give at least one kind a weight above 0")
    return LoadMix(weights=weights)


def load_provokes(mix: LoadMix) -> tuple[str, ...]:
    """What a load run of this mix must provoke (coverage): what its kinds surely do."""
    tags = []
    if mix.weights.get("tip", 0) > 0 or mix.weights.get("hot_tip", 0) > 0:
        tags.append("tip_succeeded")
    if mix.weights.get("call_charge", 0) > 0:
        tags.append("call_charged")
    return tuple(tags)


@dataclass(slots=True)
class _Call:
    opened: Op
    minutes_charged: int = 0
    open: bool = False  # its call_open came back OK


@dataclass(slots=True, kw_only=True)
class UserPlan:
    """One locust user's logical users and what it has done: the source of its next op.

    ``prefix`` makes its names unique in its process (``u3_fan_0``); ``ops`` is the
    process's one factory, so op ids and keys stay unique across all its users;
    ``hot_creators`` are the creators it shares with every other user (``hot_tip``).
    """

    prefix: str
    ops: OpFactory
    mix: LoadMix
    rng: random.Random
    hot_creators: tuple[str, ...] = ()
    purchases: list[Op] = field(default_factory=list)  # that came back OK
    call: _Call | None = None

    def __post_init__(self) -> None:
        if self.mix.weights.get("hot_tip", 0) > 0:
            assert self.hot_creators, "a mix with hot_tip needs the run's hot creators"
        own = self.users
        for name in self.hot_creators:
            assert name not in own, (name, self.prefix)

    @property
    def users(self) -> dict[str, str]:
        """Logical name -> kind, for provisioning."""
        base = roster(fans=FANS_PER_USER_COUNT, creators=CREATORS_PER_USER_COUNT)
        return {f"{self.prefix}_{name}": kind for name, kind in base.items()}

    @property
    def fans(self) -> list[str]:
        return [name for name, kind in self.users.items() if kind == "fan"]

    @property
    def creator(self) -> str:
        return next(name for name, kind in self.users.items() if kind == "creator")

    def funding(self) -> list[Op]:
        """One purchase per fan, of the package nearest ``FUND_TOKENS``."""
        tokens = self.ops.package_for(FUND_TOKENS).tokens
        return [self.ops.purchase(user=fan, amount_tokens=tokens) for fan in self.fans]

    def next_op(self) -> Op:
        """The next op, drawn by the mix; a kind that cannot go yet falls back to a read."""
        kind = self.mix.draw(self.rng)
        fan = self.rng.choice(self.fans)
        if kind == "tip":
            return self.ops.tip(sender=fan, recipient=self.creator,
                                amount_tokens=self.rng.randint(1, TIP_TOKENS_MAX))
        if kind == "hot_tip":
            return self.ops.tip(sender=fan, recipient=self.rng.choice(self.hot_creators),
                                amount_tokens=self.rng.randint(1, TIP_TOKENS_MAX))
        if kind == "purchase":
            smallest = min(p.tokens for p in self.ops.target.pricing.packages)
            return self.ops.purchase(user=fan, amount_tokens=smallest)
        if kind == "call_charge":
            return self._call_op(fan)
        if kind == "webhook_replay" and self.purchases:
            purchase = self.rng.choice(self.purchases)
            return self.ops.webhook(purchase, event_type=EVENT_SUCCEEDED,
                                    variant=DeliveryVariant.GENUINE)
        return self.ops.read_balance(self.rng.choice([*self.fans, self.creator,
                                                      *self.hot_creators]))

    def completed(self, op: Op, outcome: Outcome) -> None:
        """Learn from a completion: purchases that went through, the call's state."""
        if op.f == F.PURCHASE and outcome.kind == Kind.OK:
            self.purchases.append(op)
        call = self.call
        if call is None:
            return
        if op.f == F.CALL_OPEN and op.id == call.opened.id:
            if outcome.kind == Kind.OK:
                call.open = True
            else:
                self.call = None
        elif op.f == F.CALL_CHARGE and op.value.get("call") == call.opened.value["call"] \
                and outcome.kind != Kind.OK:
            self.call = None  # refused (funds) or indeterminate: start a new call
        elif op.f == F.CALL_END and op.value.get("call") == call.opened.value["call"]:
            self.call = None

    def _call_op(self, fan: str) -> Op:
        call = self.call
        if call is None:
            opened = self.ops.call_open(user=fan, creator=self.creator,
                                        rate_tokens_per_minute=self.rng.randint(
                                            1, CALL_RATE_TOKENS_MAX))
            self.call = _Call(opened=opened)
            return opened
        if not call.open:  # its open is still in flight: read meanwhile
            return self.ops.read_balance(str(call.opened.value["user"]))
        if call.minutes_charged >= CALL_MINUTES_MAX:
            return self.ops.call_end(call.opened)
        call.minutes_charged += 1
        return self.ops.call_charge(call.opened, minute=call.minutes_charged)


def check_http_provisioning(profile: Profile) -> HttpProvisioning:
    """The profile's ``[provisioning]``, which load mode needs over HTTP.

    Raises:
        UsageError: the profile takes its users from a file, which load mode does not
            share out between locust users.
    """
    spec = profile.provisioning
    if not isinstance(spec, HttpProvisioning):
        raise UsageError(f"profile {profile.source} takes users from a file; load mode "
                         "provisions fresh users for every locust user and needs "
                         "[provisioning] over HTTP")
    return spec


def provisioning_request(name: str, kind: str, *, profile: Profile, base_url: str,
                         admin_key: str | None) -> HttpRequest:
    """The request that creates user ``name`` of ``kind`` by the profile's provisioning.

    Raises:
        UsageError: the profile takes its users from a file (``check_http_provisioning``).
    """
    spec = check_http_provisioning(profile)
    variables = {"kind": kind, "name": name}
    url = base_url.rstrip("/") + render_text(spec.path, variables, quote=True)
    headers = [("Accept", "application/json")]
    if admin_key:
        headers.append((profile.auth.header, profile.auth.value(admin_key)))
    headers.extend((header, render_text(text, variables)) for header, text in spec.headers.items())
    template = spec.body_for(kind)
    body = b""
    if template is not None:
        import json

        body = json.dumps(render_json(template, variables)).encode()
        headers.append(("Content-Type", "application/json"))
    return HttpRequest(method=spec.method, url=url, headers=tuple(headers), body=body)


def read_provisioned(name: str, kind: str, response: HttpResponse, *,
                     profile: Profile) -> Credentials:
    """The credentials in a provisioning answer.

    Raises:
        ProvisioningFailed: the status is not one the profile lists, or the answer lacks
            the id or the token.
    """
    spec = profile.provisioning
    assert isinstance(spec, HttpProvisioning), "provisioning_request refused it"
    if response.status_code not in spec.status_ok:
        raise ProvisioningFailed(
            f"creating user {name} ({kind}) answered {response.status_code} "
            f"{body_excerpt(response.body)[:200]!r}, expected one of {sorted(spec.status_ok)}; "
            f"check the admin key and [provisioning] in {profile.source}")
    data = response.json()
    target_id, token = json_path(data, spec.id_path), json_path(data, spec.token_path)
    if target_id is None or token is None or isinstance(token, dict | list):
        raise ProvisioningFailed(
            f"creating user {name} ({kind}): the answer {body_excerpt(response.body)[:200]!r} "
            f"has no {spec.id_path!r} or {spec.token_path!r}; fix id/token in [provisioning] "
            f"of {profile.source}")
    return Credentials(target_id=str(target_id), token=str(token))
