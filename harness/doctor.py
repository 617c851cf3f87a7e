"""``tokenchaos doctor``: try each op of a profile once, and say what works and what it lacks.

With two users (a fan and a creator) the doctor provisions, reads a balance, buys the
smallest package and waits for the webhook's credit, tips, opens, charges and ends a call,
retries a tip with the same key, buys again and refunds that purchase through the
provider, and observes the end state; with an SQL observer it checks the schema first.
For every step it keeps what was sent (secrets masked), what came back, how the profile
read it (OK, FAIL, INFO) and what the profile is missing, in words that name the key to
change.

It judges the profile, not the service: a *problem* is something that stops the profile
from running the suite (a wrong result path, a status in neither list, a refused
credential, an observer that cannot see the users) and makes ``doctor`` exit 2; a *note*
is worth reading but does not (a balance that differs from what was expected is a finding
for ``tokenchaos run``, not a profile error). The doctor never exits 1.

Addresses and the local stack are handled exactly as for ``run`` (``harness.campaign``):
the same opt-in for remote addresses, the same stack for ``--target local``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from harness.campaign import RunPlan, check_addresses, open_target
from harness.errors import ProviderError, TargetError, TokenchaosError
from harness.limits import DEFAULT_LIMITS, Limits
from harness.model import F, Kind, Observation, Op, Outcome
from harness.protocol import (
    Endpoints,
    FlowContext,
    Resolver,
    Unresolved,
    Unsupported,
    json_path,
    op_flow,
)
from harness.provider.client import ProviderClient
from harness.scenario import ScenarioParams
from harness.targets.http_async import drive_async
from harness.targets.observers import SqlObserver
from harness.targets.profile import Profile, load_profile
from harness.targets.profile_keys import OBSERVER_FIELDS, OP_LEFT_OUT
from harness.targets.schema_check import SchemaFinding
from harness.targets.session import TargetSession

__all__ = ["DoctorPlan", "DoctorReport", "Exchange", "Step", "format_report", "run_doctor"]

Reading = Literal["OK", "FAIL", "INFO", "SKIP"]

USERS: Mapping[str, str] = {"fan_0": "fan", "creator_0": "creator"}
_FAN, _CREATOR = "fan_0", "creator_0"
_EXCERPT_CHARS_MAX = 300
_CREDIT_POLLS_MAX = 50  # reads of the balance after quiescence, waiting for the credit
_CREDIT_POLL_S = 0.1
_READING: Mapping[Kind, Reading] = {Kind.OK: "OK", Kind.FAIL: "FAIL", Kind.INFO: "INFO"}
_SECRET_WORDS = ("authorization", "token", "secret", "key", "cookie", "password")


@dataclass(frozen=True, slots=True, kw_only=True)
class DoctorPlan:
    """What to examine: a profile, and where its target and provider answer."""

    profile: str  # a bundled profile name or a .toml path; "reference" with local=True
    local: bool = False  # start the local stack, as ``run --target local`` does
    target_url: str | None = None
    provider_url: str | None = None
    provider_key: str | None = None
    database_url: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    limits: Limits = DEFAULT_LIMITS


@dataclass(frozen=True, slots=True, kw_only=True)
class Exchange:
    """One request the doctor caused and its answer, as printed (secrets masked)."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: str
    status_code: int | None = None  # None: no answer came back
    answer: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One thing the doctor tried."""

    name: str  # "purchase", "credit", "tip", ...
    reading: Reading
    exchanges: tuple[Exchange, ...] = ()
    results: Mapping[str, object] = field(default_factory=dict)
    problems: tuple[str, ...] = ()  # each one keeps the profile from running the suite
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DoctorReport:
    """Everything the doctor found; ``ok`` when the profile can run the suite."""

    profile: str
    target_url: str
    schema: tuple[SchemaFinding, ...]
    steps: tuple[Step, ...]

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(f"{step.name}: {p}" for step in self.steps for p in step.problems)

    @property
    def ok(self) -> bool:
        return not self.problems


async def run_doctor(plan: DoctorPlan) -> DoctorReport:
    """Examine the plan's profile against its target; see the module docstring.

    Raises:
        UsageError: a bad profile, or an address that is malformed or not opted into.
        TokenchaosError: the target or the stack could not be reached at all.
    """
    profile = load_profile(plan.profile)
    run_plan = _run_plan(plan)
    check_addresses(run_plan, profile)
    async with open_target(run_plan, profile) as (session, provider, _info, _nemesis):
        doctor = _Doctor(session, provider, plan.limits)
        return await doctor.examine()


def format_report(report: DoctorReport) -> list[str]:
    """The report as console lines: schema findings first, then each step. Pure."""
    lines = [f"tokenchaos doctor: profile {report.profile} against {report.target_url}"]
    for finding in report.schema:
        label = "SCHEMA DEFECT" if finding.severity == "defect" else "SCHEMA NOT CHECKED"
        lines.append(f"{label}: {finding.text}")
    for step in report.steps:
        lines.append("")
        lines.append(f"[{step.reading}] {step.name}")
        for exchange in step.exchanges:
            lines.extend(_exchange_lines(exchange))
        if step.results:
            shown = ", ".join(f"{k}={v!r}" for k, v in step.results.items())
            lines.append(f"    read as: {step.reading} {shown}")
        lines.extend(f"    MISSING: {problem}" for problem in step.problems)
        lines.extend(f"    note: {note}" for note in step.notes)
    lines.append("")
    defects = [f for f in report.schema if f.severity == "defect"]
    if report.ok:
        lines.append("verdict: the profile can run the suite"
                     + (f" (the schema has {len(defects)} defect(s): the run will break on "
                        "them)" if defects else ""))
    else:
        lines.append(f"verdict: the profile cannot run the suite yet: "
                     f"{len(report.problems)} thing(s) to fix, marked MISSING above")
    return lines


def _exchange_lines(exchange: Exchange) -> list[str]:
    lines = [f"    sent: {exchange.method} {exchange.url}"]
    headers = "; ".join(f"{name}: {value}" for name, value in exchange.headers
                        if name.lower() not in ("accept", "content-type", "content-length",
                                                "host", "user-agent", "accept-encoding",
                                                "connection"))
    if headers:
        lines.append(f"          headers {headers}")
    if exchange.body:
        lines.append(f"          body {exchange.body}")
    if exchange.status_code is None:
        lines.append(f"    got:  no answer ({exchange.answer or 'transport error'})")
    else:
        lines.append(f"    got:  {exchange.status_code} {exchange.answer}")
    return lines


def _run_plan(plan: DoctorPlan) -> RunPlan:
    """The run machinery's plan for the same target; its one scenario is never run."""
    from scenarios import get_scenario

    return RunPlan(runs=((get_scenario("concurrent-tips"), ScenarioParams(seed=1)),),
                   suite=None, profile="reference" if plan.local else plan.profile,
                   local=plan.local, target_url=plan.target_url,
                   provider_url=plan.provider_url, provider_key=plan.provider_key,
                   database_url=plan.database_url, allowed_hosts=plan.allowed_hosts,
                   limits=plan.limits, command="tokenchaos doctor")


# ---------------------------------------------------------------------------------------
# Recording what was sent and what came back.


class _Recorder:
    """httpx event hooks on the session's client: every request and answer, masked."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets  # grows as users are provisioned
        self._open: list[dict[str, Any]] = []
        self.mark = 0

    async def on_request(self, request: httpx.Request) -> None:
        body = request.content.decode("utf-8", errors="replace") if request.content else ""
        self._open.append({"request": request, "method": request.method,
                           "url": str(request.url), "headers": list(request.headers.items()),
                           "body": body})

    async def on_response(self, response: httpx.Response) -> None:
        await response.aread()
        for item in reversed(self._open):
            if item["request"] is response.request:
                item["status_code"] = response.status_code
                item["answer"] = response.content.decode("utf-8", errors="replace")
                return

    def take(self) -> tuple[Exchange, ...]:
        """The exchanges since the last take."""
        items, self._open = self._open, []
        return tuple(Exchange(
            method=item["method"], url=item["url"],
            headers=tuple((n, self._mask_header(n, v)) for n, v in item["headers"]),
            body=self.excerpt(item["body"]), status_code=item.get("status_code"),
            answer=self.excerpt(item.get("answer", ""))) for item in items)

    def excerpt(self, text: str) -> str:
        text = self.mask(text)
        return text if len(text) <= _EXCERPT_CHARS_MAX else text[:_EXCERPT_CHARS_MAX] + "..."

    def mask(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            if len(secret) >= 4:
                text = text.replace(secret, _masked(secret))
        return text

    def _mask_header(self, name: str, value: str) -> str:
        lowered = name.lower()
        if "idempotency" in lowered or not any(w in lowered for w in _SECRET_WORDS):
            return self.mask(value)
        scheme, _, token = value.rpartition(" ")
        return f"{scheme} {_masked(token)}" if scheme else _masked(value)


def _masked(secret: str) -> str:
    return secret[:4] + "****" if len(secret) > 8 else "****"


# ---------------------------------------------------------------------------------------
# The examination.


class _Doctor:
    def __init__(self, session: TargetSession, provider: ProviderClient | None,
                 limits: Limits) -> None:
        self.session = session
        self.profile: Profile = session.profile
        self.provider = provider
        self.limits = limits
        secrets = [s for s in (session.admin_key, session.provider_api_key,
                               provider.control_key if provider else None) if s]
        self.recorder = _Recorder(secrets)
        hooks = session.client.event_hooks
        hooks["request"].append(self.recorder.on_request)
        hooks["response"].append(self.recorder.on_response)
        self.resolver = Resolver()
        from scenarios._common import OpFactory

        self.ops = OpFactory(scenario="doctor", seed=0)
        self.steps: list[Step] = []
        self.balance_tokens: int | None = None  # the fan's, as last read

    async def examine(self) -> DoctorReport:
        schema = await self._schema()
        self._left_out()
        if await self._provision():
            await self._read("read_balance")
            purchase = await self._purchase_and_credit("purchase")
            if purchase is not None:
                await self._spends()
                await self._refund()
            await self._observe()
        return DoctorReport(profile=self.profile.source, target_url=self.session.base_url,
                            schema=schema, steps=tuple(self.steps))

    # -- steps ---------------------------------------------------------------------------

    async def _schema(self) -> tuple[SchemaFinding, ...]:
        observer = self.session.observer
        if not isinstance(observer, SqlObserver):
            return ()
        if not observer.checks_schema:
            self._add(Step(name="schema", reading="SKIP", notes=(
                "the SQL observer names no tables, so the schema is not checked: add "
                "balances_table, balance_column, intents_table and intent_column to "
                "[observer]",)))
            return ()
        try:
            findings = await observer.check_schema()
        except TargetError as exc:
            self._add(Step(name="schema", reading="FAIL", problems=(str(exc),)))
            return ()
        unchecked = tuple(f.text for f in findings if f.severity == "cannot_check")
        self._add(Step(name="schema", reading="FAIL" if unchecked else "OK",
                       problems=unchecked, notes=tuple(
                           f"defect of the target (the run will break on it): {f.text}"
                           for f in findings if f.severity == "defect")))
        return findings

    def _left_out(self) -> None:
        missing = [f for f in (F.PURCHASE, F.TIP, F.CALL_OPEN, F.CALL_CHARGE, F.CALL_END,
                               F.READ_BALANCE, F.WEBHOOK) if f not in self.profile.ops]
        if missing:
            self._add(Step(name="ops left out", reading="INFO", notes=tuple(
                f"[ops.{f.value}] is left out: {OP_LEFT_OUT[f.value]}" for f in missing)))
        if self.provider is None:
            self._add(Step(name="provider", reading="FAIL", problems=(
                "no provider simulator: the suite waits for webhooks, refunds and disputes "
                "through it and judges credits by its truth; pass --provider-url and "
                "--provider-key (what tokenchaos provider printed)",)))

    async def _provision(self) -> bool:
        try:
            credentials = await self.session.provision(USERS, concurrency=1)
        except TokenchaosError as exc:
            exchanges = self.recorder.take()
            problems = [str(exc)]
            refused = [e.status_code for e in exchanges if e.status_code in (401, 403)]
            if refused:
                problems.append(_refused(self.profile, refused[0],
                                         "the admin key (admin_key_env)"))
            self._add(Step(name="provision", reading="FAIL", exchanges=exchanges,
                           problems=tuple(problems)))
            return False
        self.resolver.users.update(credentials)
        self.recorder.secrets.extend(c.token for c in credentials.values())
        self._add(Step(name="provision", reading="OK", exchanges=self.recorder.take(),
                       results={name: c.target_id for name, c in credentials.items()}))
        return True

    async def _read(self, name: str, *, expected_tokens: int | None = None) -> int | None:
        if F.READ_BALANCE not in self.profile.ops:
            return None
        outcome, step = await self._op(name, self.ops.read_balance(_FAN))
        balance = outcome.value.get("balance_tokens") if outcome is not None else None
        notes = list(step.notes)
        if isinstance(balance, int):
            self.balance_tokens = balance
            if expected_tokens is not None and balance != expected_tokens:
                notes.append(f"expected a balance of {expected_tokens} tokens, read {balance}:"
                             " tokenchaos run will look into it")
        elif outcome is not None and outcome.kind == Kind.OK and balance is not None:
            step = _with(step, problems=(f"result balance_tokens is {balance!r}, not a whole "
                                         "number of tokens",))
        self._add(_with(step, notes=tuple(notes)))
        return balance if isinstance(balance, int) else None

    async def _purchase_and_credit(self, name: str) -> Op | None:
        tokens, minted = _package(self.profile)
        op = self.ops.purchase(user=_FAN, amount_tokens=tokens)
        before = self.balance_tokens or 0
        outcome, step = await self._op(name, op)
        if outcome is None or outcome.kind != Kind.OK:
            self._add(step)
            return None
        status = outcome.value.get("purchase_status")
        notes = list(step.notes)
        if status == "requires_action":
            notes.append("the purchase needs 3-D Secure: the card holder finishes it")
        self._add(_with(step, notes=tuple(notes)))
        await self._credit(op, before + minted, minted)
        return op

    async def _credit(self, purchase: Op, expected_tokens: int, minted_tokens: int) -> None:
        """Wait for the webhook's credit; check the intent's metadata against [metadata]."""
        if self.provider is None or F.READ_BALANCE not in self.profile.ops:
            return
        problems: list[str] = []
        try:
            await self.provider.wait_quiescent(self.limits.quiescence_timeout_s)
        except ProviderError as exc:
            problems.append(str(exc))
        balance = self.balance_tokens
        for _ in range(_CREDIT_POLLS_MAX):
            balance = await self._quiet_balance()
            if balance is not None and balance >= expected_tokens:
                break
            await asyncio.sleep(_CREDIT_POLL_S)
        self.balance_tokens = balance
        intent_id = self.resolver.intents.get(str(purchase.value["purchase"]))
        truth = await self.provider.truth_json()
        problems += _metadata_problems(self.profile, truth, intent_id,
                                       self.resolver.target_id(_FAN), minted_tokens)
        if balance is None or balance < expected_tokens:
            problems.append(f"no credit arrived: the balance is {balance}, expected "
                            f"{expected_tokens} once the payment_intent.succeeded webhook is "
                            f"applied; {_deliveries(truth, intent_id)}")
        last_read = self.recorder.take()[-1:]  # the polls before it said the same
        self._add(Step(name="credit (webhook)", reading="FAIL" if problems else "OK",
                       exchanges=last_read, problems=tuple(problems),
                       results={"intent_id": intent_id, "balance_tokens": balance}))

    async def _quiet_balance(self) -> int | None:
        """Read the fan's balance without a step of its own (the caller records it)."""
        op = self.ops.read_balance(_FAN)
        try:
            flow = op_flow(op, self._ctx())
        except (Unresolved, Unsupported):
            return None
        outcome = await drive_async(flow, self.session.client, self.limits)
        value = outcome.value.get("balance_tokens")
        return value if isinstance(value, int) else None

    async def _spends(self) -> None:
        expected = self.balance_tokens
        if F.TIP in self.profile.ops:
            tip = self.ops.tip(sender=_FAN, recipient=_CREATOR, amount_tokens=1)
            outcome, step = await self._op("tip", tip)
            self._add(self._check_balance_result(step, outcome, expected, 1))
            if outcome is not None and outcome.kind == Kind.OK and expected is not None:
                expected -= 1
                await self._retry(tip, expected)
        opened = self.ops.call_open(user=_FAN, creator=_CREATOR, rate_tokens_per_minute=1)
        if F.CALL_OPEN in self.profile.ops:
            outcome, step = await self._op("call_open", opened)
            self._add(step)
        if F.CALL_CHARGE in self.profile.ops:
            outcome, step = await self._op("call_charge",
                                           self.ops.call_charge(opened, minute=1))
            self._add(self._check_balance_result(step, outcome, expected, 1))
            if outcome is not None and outcome.kind == Kind.OK and expected is not None:
                expected -= 1
        if F.CALL_END in self.profile.ops:
            _, step = await self._op("call_end", self.ops.call_end(opened))
            self._add(step)
        await self._read("read_balance after spending", expected_tokens=expected)

    async def _retry(self, tip: Op, expected_tokens: int) -> None:
        """Send the tip again with the same key: an idempotent op applies it once."""
        spec = self.profile.ops[F.TIP]
        if not spec.idempotent:
            self._add(Step(name="tip retried with the same key", reading="SKIP", notes=(
                "[ops.tip] carries no idempotency key: retries of tips are not tested",)))
            return
        _, step = await self._op("tip retried with the same key", self.ops.again(tip))
        balance = await self._quiet_balance()
        problems = list(step.problems)
        if balance is not None and balance != expected_tokens:
            problems.append(
                f"the same tip sent again with the same key was applied again (balance "
                f"{balance}, expected {expected_tokens}): if the service takes no key on "
                'tips, write idempotency = "none" in [ops.tip] (retries are then not run)')
        self.balance_tokens = balance
        self._add(_with(step, problems=tuple(problems), exchanges=(*step.exchanges,
                                                                    *self.recorder.take())))

    async def _refund(self) -> None:
        if self.provider is None:
            self._add(Step(name="refund", reading="SKIP",
                           notes=("refunds go through the provider, and there is none",)))
            return
        before = self.balance_tokens
        purchase = await self._purchase_and_credit("purchase to refund")
        if purchase is None or self.balance_tokens is None:
            return
        _, minted = _package(self.profile)
        credited = self.balance_tokens
        outcome, step = await self._op("refund (provider)",
                                       self.ops.refund(purchase, amount_cents=None))
        self._add(step)
        if outcome is None or outcome.kind != Kind.OK:
            return
        try:
            await self.provider.wait_quiescent(self.limits.quiescence_timeout_s)
        except ProviderError as exc:
            self._add(Step(name="clawback (webhook)", reading="FAIL", problems=(str(exc),)))
            return
        await self._read("read_balance after the refund",
                         expected_tokens=before if before is not None else credited - minted)

    async def _observe(self) -> None:
        observer = self.session.observer
        if observer is None:
            self._add(Step(name="observer", reading="FAIL", problems=(
                "the profile has no [observer]: the end state cannot be read, so most "
                "checkers are unknown; add [observer] (admin_http or sql)",)))
            return
        ids = {name: self.resolver.target_id(name) for name in USERS}
        ids.update(self.session.system_accounts)
        try:
            observation = await observer.observe(ids)
        except TargetError as exc:
            self._add(Step(name="observer", reading="FAIL", exchanges=self.recorder.take(),
                           problems=(str(exc),)))
            return
        self._add(_observer_step(observation, ids, self.balance_tokens,
                                 self.recorder.take()))

    # -- one op --------------------------------------------------------------------------

    def _ctx(self) -> FlowContext:
        return FlowContext(profile=self.profile, endpoints=self._endpoints(),
                           resolver=self.resolver,
                           response_body_bytes_max=self.limits.response_body_bytes_max)

    def _endpoints(self) -> Endpoints:
        import dataclasses

        return dataclasses.replace(
            self.session.endpoints,
            provider_control_key=self.provider.control_key if self.provider else None)

    async def _op(self, name: str, op: Op) -> tuple[Outcome | None, Step]:
        """Send one op, and read its answer as the profile says."""
        try:
            flow = op_flow(op, self._ctx())
        except (Unresolved, Unsupported) as exc:
            return None, Step(name=name, reading="SKIP", notes=(str(exc),))
        outcome = await drive_async(flow, self.session.client, self.limits)
        self.resolver.learn(op, outcome)
        exchanges = self.recorder.take()
        answer = _answer_json(exchanges)
        problems = _outcome_problems(self.profile, op, outcome, exchanges)
        if outcome.kind == Kind.OK and op.f in self.profile.ops:
            problems += _result_problems(self.profile, op.f, answer, self.recorder)
        results = {k: v for k, v in outcome.value.items() if v is not None}
        return outcome, Step(name=name, reading=_READING[outcome.kind], exchanges=exchanges,
                             results=results, problems=tuple(problems))

    def _check_balance_result(self, step: Step, outcome: Outcome | None,
                              before_tokens: int | None, spent_tokens: int) -> Step:
        value = outcome.value.get("balance_tokens") if outcome is not None else None
        if not isinstance(value, int) or before_tokens is None:
            return step
        if value != before_tokens - spent_tokens:
            return _with(step, notes=(*step.notes, (
                f"result balance_tokens = {value}, but the sender's balance is now "
                f"{before_tokens - spent_tokens}: does its path name the sender's balance "
                "after this op?")))
        return step

    def _add(self, step: Step) -> None:
        self.steps.append(step)


# ---------------------------------------------------------------------------------------
# Reading answers (pure).


def _outcome_problems(profile: Profile, op: Op, outcome: Outcome,
                      exchanges: Sequence[Exchange]) -> list[str]:
    if outcome.kind == Kind.OK:
        return []
    status = outcome.status_code
    where = f"[ops.{op.f.value}]" if op.f in profile.ops else "the provider"
    last = exchanges[-1] if exchanges else None
    answer = f" {last.answer}" if last is not None and last.answer else ""
    if status is None:
        return [f"no answer ({outcome.error}): is the target up at {profile.base_url}?"]
    if status in (401, 403):
        return [_refused(profile, status, "how provisioning reads the token") + answer]
    if status >= 500:
        return [f"the target answered {status}{answer}: a server error, so this op cannot "
                "be judged; see the service's log"]
    if outcome.kind == Kind.INFO and op.f in profile.ops:
        spec = profile.ops[op.f]
        return [f"answered {status}{answer}, which is in neither status_ok "
                f"{sorted(spec.status_ok)} nor status_fail {sorted(spec.status_fail)} of "
                f"{where}: if {status} means it worked, add it to status_ok; if it means it "
                f'was refused, add e.g. {status} = "invalid" to status_fail']
    return [f"answered {status}{answer}, read as FAIL {outcome.error!r} by {where}, on an op "
            "that should succeed: check the body template and the ids it sends"]


def _refused(profile: Profile, status: int | None, also: str) -> str:
    return (f"the target refused our credentials ({status}): check [auth] (header = "
            f'"{profile.auth.header}", scheme = "{profile.auth.scheme or "none"}") and {also}')


def _result_problems(profile: Profile, f: F, answer: Any, recorder: _Recorder) -> list[str]:
    problems = []
    for key, path in profile.ops[f].result.items():
        if json_path(answer, path) is not None:
            continue
        shown = recorder.excerpt(json.dumps(answer, separators=(",", ":")))
        keys = sorted(answer) if isinstance(answer, dict) else []
        problems.append(f"result {key}: path {path!r} is not in the answer {shown}; the "
                        f"answer has keys {', '.join(keys) or '(none: not a JSON object)'}; "
                        f"fix result.{key} in [ops.{f.value}]")
    return problems


def _answer_json(exchanges: Sequence[Exchange]) -> Any:
    if not exchanges:
        return None
    try:
        return json.loads(exchanges[-1].answer)
    except ValueError:
        return None


def _metadata_problems(profile: Profile, truth: Mapping[str, Any], intent_id: str | None,
                       user_id: str, minted_tokens: int) -> list[str]:
    intents = truth.get("intents") or []
    item = next((i for i in intents if isinstance(i, dict) and i.get("id") == intent_id), None)
    if item is None:
        return [f"the provider knows no intent {intent_id!r}: does result.intent_id of "
                "[ops.purchase] name the PaymentIntent id?"]
    metadata = item.get("metadata") or {}
    problems = []
    spec = profile.metadata
    if str(metadata.get(spec.user_key)) != user_id:
        problems.append(f"[metadata] user_key = {spec.user_key!r}, but the intent's metadata "
                        f"{json.dumps(metadata)} does not hold the user's id {user_id} there; "
                        f"its keys are {', '.join(sorted(metadata)) or '(none)'}")
    from harness.provider.truth import minted_tokens as minted_by

    found = minted_by(metadata, spec.tokens_keys)
    if found != minted_tokens:
        problems.append(f"[metadata] tokens_keys = {list(spec.tokens_keys)} add up to {found} "
                        f"in the intent's metadata {json.dumps(metadata)}, not the "
                        f"{minted_tokens} tokens the package mints")
    return problems


def _deliveries(truth: Mapping[str, Any], intent_id: str | None) -> str:
    statuses = [d.get("status_code") for d in truth.get("deliveries") or []
                if isinstance(d, dict) and d.get("intent_id") == intent_id]
    if not statuses:
        return ("the provider delivered no webhook for it: is its webhook URL the target's "
                "endpoint?")
    return (f"the provider's deliveries of its webhooks were answered {statuses}: check the "
            "webhook endpoint, its signing secret, and [metadata]")


def _observer_step(observation: Observation, ids: Mapping[str, str],
                   balance_tokens: int | None, exchanges: tuple[Exchange, ...]) -> Step:
    problems = [f"the observer did not report {name} (id {target_id}): does the user_id it "
                "gives match the id provisioning reads?"
                if name in USERS else
                f"the observer did not report the system account {name} (id {target_id}): "
                f"is that its id? fix system_accounts.{name} in [observer]"
                for name, target_id in ids.items() if name not in observation.accounts]
    notes = []
    fan = observation.accounts.get(_FAN)
    if fan is not None:
        if balance_tokens is not None and fan.balance_tokens != balance_tokens:
            notes.append(f"the observer says {_FAN} holds {fan.balance_tokens} tokens, the "
                         f"last read said {balance_tokens}")
        for spec in OBSERVER_FIELDS:
            if getattr(fan, spec.name, 0) is None:
                notes.append(f"no {spec.name} ({spec.meaning}): {spec.without}")
    if observation.totals is None:
        notes.append("no totals: conservation checks the accounts alone")
    results: dict[str, object] = {}
    if fan is not None:
        results = {"balance_tokens": fan.balance_tokens, "debt_tokens": fan.debt_tokens}
    return Step(name="observer", reading="FAIL" if problems else "OK", exchanges=exchanges,
                results=results, problems=tuple(problems), notes=tuple(notes))


def _package(profile: Profile) -> tuple[int, int]:
    """The smallest package: the tokens a purchase asks for, and the tokens it mints."""
    package = min(profile.pricing.packages, key=lambda p: p.cents)  # never empty
    return package.tokens, package.minted_tokens


def _with(step: Step, **changes: Any) -> Step:
    import dataclasses

    return dataclasses.replace(step, **changes)
