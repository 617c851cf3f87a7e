"""The webhook dispatcher: one asyncio task per event, delivering by the current policy.

Every event the state machine emits is submitted here and becomes a task that, in order:
waits its drawn delay; if reordering, holds a ``payment_intent.succeeded`` until a later
event of the same intent has had its first attempt (or ``hold_ms_max`` passed); sends the
forged copies the policy asks for (before the genuine one, so a target that believes them
is fooled before it learns the truth); sends the genuine event with its concurrent
duplicates, retrying non-2xx answers and timeouts with exponential backoff up to
``attempts_max`` (the first ``drop_count`` answers are thrown away as if lost, and
retried); then sends stale copies; and, once acknowledged, replays it later. Each HTTP
attempt is recorded as a ``harness.model.Delivery``.

Bounds: at most ``Limits.webhook_queue_max`` events in flight (``has_room`` says whether
one more fits; the app answers 503 otherwise), at most ``Limits.connections_max``
concurrent attempts, every loop counted. Randomness comes only from
``random.Random(policy.seed)``, drawn when an event is submitted, so a seeded run makes
the same choices. This module sends; it never judges what the target answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from harness.errors import ProviderError
from harness.limits import DEFAULT_LIMITS, Limits
from harness.model import Delivery, DeliveryVariant
from harness.provider.policy import DeliveryPolicy
from harness.provider.signing import encode_event, sign_variant

__all__ = ["WAIT_ACKNOWLEDGED_S_MAX", "Dispatcher", "delivery_json", "intent_of"]

WAIT_ACKNOWLEDGED_S_MAX = 60.0  # the longest one wait_acknowledged call may take

_log = logging.getLogger(__name__)
_ANSWER_BYTES_MAX = 64 * 1024  # we read a little of each answer, never all of a huge one
_HOLD_WAKEUPS_MAX = 100_000
_ERRORS_KEPT_MAX = 100
_REORDERED_TYPE = "payment_intent.succeeded"
_TRANSPORT_ERRORS: tuple[tuple[type[httpx.HTTPError], str], ...] = (
    (httpx.ConnectError, "connect_error"),
    (httpx.ConnectTimeout, "connect_error"),
    (httpx.ReadTimeout, "read_timeout"),
    (httpx.PoolTimeout, "read_timeout"),
    (httpx.WriteTimeout, "write_timeout"),
    (httpx.ReadError, "connection_reset"),
    (httpx.WriteError, "connection_reset"),
    (httpx.RemoteProtocolError, "connection_reset"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    """Everything decided about one event when it was submitted."""

    event: Mapping[str, Any]
    body: str  # encoded once, so every copy carries the same bytes
    event_id: str
    event_type: str
    intent_id: str | None
    seq: int  # emission order, for reordering
    generation: int  # deliveries of an older generation are forgotten by reset
    url: str
    secret: str
    tolerance_s: int
    policy: DeliveryPolicy
    rng: random.Random  # this event's own draws: stale ages, wrong secrets, tampered ids
    delay_ms: int
    hold: bool
    duplicates_count: int
    drop_count: int
    forgeries: tuple[DeliveryVariant, ...]
    stale_count: int
    replays_count: int


class Dispatcher:
    """Delivers events to ``webhook_url``; ``pending`` counts the events not yet finished.

    Use as ``async with Dispatcher(...)``, or call ``start`` and ``aclose``.
    """

    def __init__(self, *, webhook_url: str | None, webhook_secret: str, tolerance_s: int = 300,
                 limits: Limits = DEFAULT_LIMITS,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.tolerance_s = tolerance_s
        self._limits = limits
        self._clock_ns = clock_ns
        self._policy = DeliveryPolicy()
        self._rng = random.Random(self._policy.seed)
        self._tasks: dict[asyncio.Task[None], int] = {}  # task -> its event's generation
        self._deliveries: dict[int, Delivery] = {}
        self._next_index = 0
        self._generation = 0
        self._seq = 0
        self._first_done: dict[str, int] = {}  # intent id -> latest seq whose first try ended
        self._waiters: dict[str, asyncio.Event] = {}
        self._semaphore = asyncio.Semaphore(limits.connections_max)
        self._acknowledged_count = 0  # genuine deliveries the target answered 2xx
        self._acknowledged = asyncio.Condition()
        self._client: httpx.AsyncClient | None = None
        self.errors: list[str] = []  # the dispatcher's own crashes (bugs), for the truth

    async def __aenter__(self) -> Dispatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Open the HTTP client (every option written out; no proxies from the environment)."""
        assert self._client is None, "started twice"
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self._limits.op_timeout_s,
                                  connect=self._limits.connect_timeout_s),
            limits=httpx.Limits(max_connections=self._limits.connections_max,
                                max_keepalive_connections=self._limits.connections_max,
                                keepalive_expiry=5.0),
            follow_redirects=False, trust_env=False)

    async def aclose(self) -> None:
        """Cancel every delivery in flight and close the client."""
        await self._cancel_all()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- control ---------------------------------------------------------------------------

    def configure(self, *, webhook_url: str | None, webhook_secret: str,
                  tolerance_s: int) -> None:
        """Deliver later events there, signed so; events already submitted keep theirs."""
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.tolerance_s = tolerance_s

    @property
    def policy(self) -> DeliveryPolicy:
        return self._policy

    def set_policy(self, policy: DeliveryPolicy) -> None:
        """Deliver events submitted from now on by ``policy``, drawing from its seed anew."""
        self._policy = policy
        self._rng = random.Random(policy.seed)

    @property
    def pending(self) -> int:
        """Events not finished: delayed, held, in flight, retrying, or with replays to come."""
        return len(self._tasks)

    @property
    def acknowledged_count(self) -> int:
        """Deliveries of real events (not forged) the target answered 2xx, since the reset."""
        return self._acknowledged_count

    async def wait_acknowledged(self, above: int, timeout_s: float) -> int:
        """Return the acknowledged count once it is above ``above``, or after
        ``timeout_s`` whatever it is: a fault may be timed to land just after one."""
        assert 0 <= timeout_s <= WAIT_ACKNOWLEDGED_S_MAX, timeout_s
        async with self._acknowledged:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._acknowledged.wait_for(
                        lambda: self._acknowledged_count > above)
            return self._acknowledged_count

    def has_room(self) -> bool:
        return len(self._tasks) < self._limits.webhook_queue_max

    def deliveries(self) -> list[Delivery]:
        """Every finished attempt since the last reset, in the order attempts started."""
        return [self._deliveries[index] for index in sorted(self._deliveries)]

    async def reset(self) -> None:
        """Forget deliveries and cancel those in flight, between scenarios."""
        # A new generation first: events submitted while we wait for the cancelled ones
        # belong to the next scenario and must be neither cancelled nor forgotten.
        self._generation += 1
        self._deliveries.clear()
        self._next_index = 0
        self._acknowledged_count = 0
        self._first_done.clear()
        self._waiters.clear()
        self.errors.clear()
        await self._cancel_all(generation_below=self._generation)

    def submit(self, event: Mapping[str, Any]) -> bool:
        """Start delivering ``event``; False (stored only) when no webhook_url is configured.

        Raises:
            ProviderError: the queue is full; callers check ``has_room`` first.
        """
        if self.webhook_url is None:
            return False
        if not self.has_room():
            raise ProviderError(f"{self.pending} webhook events are in flight, the limit "
                                "(Limits.webhook_queue_max); wait for quiescence or raise it")
        plan = self._plan(event, self.webhook_url)
        task = asyncio.get_running_loop().create_task(self._run(plan),
                                                      name=f"webhook {plan.event_id}")
        self._tasks[task] = plan.generation
        task.add_done_callback(self._forget_task)
        return True

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    def _plan(self, event: Mapping[str, Any], url: str) -> _Plan:
        """Draw every random choice for ``event`` now, in submission order."""
        policy = self._policy
        chaos = policy.applies_to(str(event["type"]))
        delay_ms = self._rng.randint(0, policy.delay_ms_max) if chaos else 0
        rng = random.Random(self._rng.getrandbits(64))
        self._seq += 1
        return _Plan(
            event=event, body=encode_event(event), event_id=str(event["id"]),
            event_type=str(event["type"]), intent_id=intent_of(event), seq=self._seq,
            generation=self._generation, url=url, secret=self.webhook_secret,
            tolerance_s=self.tolerance_s, policy=policy, rng=rng, delay_ms=delay_ms,
            hold=chaos and policy.reorder and event["type"] == _REORDERED_TYPE,
            duplicates_count=policy.duplicates_count if chaos else 0,
            drop_count=policy.drop_count if chaos else 0,
            forgeries=tuple(DeliveryVariant(v) for v in policy.forgeries) if chaos else (),
            stale_count=policy.stale_count if chaos else 0,
            replays_count=policy.replays_count if chaos else 0)

    # -- one event's life ------------------------------------------------------------------

    async def _run(self, plan: _Plan) -> None:
        try:
            if plan.delay_ms:
                await asyncio.sleep(plan.delay_ms / 1000)
            if plan.hold:
                await self._hold(plan)
            if plan.forgeries:
                await asyncio.gather(*(self._attempt(plan, variant)
                                       for variant in plan.forgeries))
            acknowledged = await self._deliver(plan)
            for _ in range(plan.stale_count):
                await self._attempt(plan, DeliveryVariant.STALE)
            if acknowledged:
                for _ in range(plan.replays_count):
                    await asyncio.sleep(plan.policy.replay_delay_ms / 1000)
                    await self._attempt(plan, DeliveryVariant.REPLAY)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug of ours: keep delivering the others, and say so
            _log.exception("webhook dispatcher failed on %s", plan.event_id)
            if len(self.errors) < _ERRORS_KEPT_MAX:
                self.errors.append(f"{plan.event_id}: {exc!r}")

    async def _deliver(self, plan: _Plan) -> bool:
        """The genuine event, retried with backoff until acknowledged; True if it was."""
        policy = plan.policy
        for attempt_index in range(policy.attempts_max):
            dropped = attempt_index < plan.drop_count
            if attempt_index == 0:
                copies = [self._attempt(plan, DeliveryVariant.DUPLICATE)
                          for _ in range(plan.duplicates_count)]
                results = await asyncio.gather(
                    self._attempt(plan, DeliveryVariant.GENUINE, dropped=dropped), *copies)
                status_code = results[0]
                self._first_attempt_done(plan)
            else:
                status_code = await self._attempt(plan, DeliveryVariant.RETRY, dropped=dropped)
            if _acknowledged(status_code) and not dropped:
                return True
            if attempt_index + 1 < policy.attempts_max:
                backoff_ms = min(policy.retry_backoff_ms_base * 2 ** attempt_index,
                                 policy.retry_backoff_ms_max)
                await asyncio.sleep(backoff_ms / 1000)
        return False

    async def _hold(self, plan: _Plan) -> None:
        """Wait until a later event of the same intent had its first attempt, or time's up."""
        if plan.intent_id is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + plan.policy.hold_ms_max / 1000
        for _ in range(_HOLD_WAKEUPS_MAX):
            if self._first_done.get(plan.intent_id, -1) > plan.seq:
                return
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                return
            waiter = self._waiters.setdefault(plan.intent_id, asyncio.Event())
            try:
                await asyncio.wait_for(waiter.wait(), remaining_s)
            except TimeoutError:
                return
        raise ProviderError(f"held {plan.event_id} through {_HOLD_WAKEUPS_MAX} wake-ups")

    def _first_attempt_done(self, plan: _Plan) -> None:
        if plan.intent_id is None or plan.generation != self._generation:
            return
        self._first_done[plan.intent_id] = max(plan.seq,
                                               self._first_done.get(plan.intent_id, -1))
        waiter = self._waiters.pop(plan.intent_id, None)
        if waiter is not None:
            waiter.set()

    async def _attempt(self, plan: _Plan, variant: DeliveryVariant, *,
                       dropped: bool = False) -> int | None:
        """One HTTP POST of the event dressed as ``variant``; records it; its status code."""
        client = self._client
        assert client is not None, "start the dispatcher first"
        async with self._semaphore:
            if plan.generation != self._generation:
                return None
            index = self._next_index
            self._next_index += 1
            started_ns = self._clock_ns()
            signed = sign_variant(plan.event, variant=variant, secret=plan.secret,
                                  now_s=started_ns // 1_000_000_000,
                                  tolerance_s=plan.tolerance_s, rng=plan.rng, body=plan.body)
            status_code, error = await _post(client, plan.url, signed.body, signed.headers)
            finished_ns = self._clock_ns()
        if dropped and error is None:
            error = "answer_dropped"  # the target answered; we act as if it never arrived
        if plan.generation == self._generation:
            self._deliveries[index] = Delivery(
                index=index, event_id=plan.event_id, event_type=plan.event_type,
                intent_id=plan.intent_id, variant=variant, status_code=status_code,
                started_ns=started_ns, finished_ns=finished_ns, error=error)
            if _acknowledged(status_code) and not variant.forged:
                async with self._acknowledged:
                    self._acknowledged_count += 1
                    self._acknowledged.notify_all()
        return status_code

    async def _cancel_all(self, *, generation_below: int | None = None) -> None:
        """Cancel the tasks in flight (of older generations only, when given) and await them."""
        tasks = [task for task, generation in self._tasks.items()
                 if generation_below is None or generation < generation_below]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in tasks:
            self._tasks.pop(task, None)


async def _post(client: httpx.AsyncClient, url: str, body: str,
                headers: Mapping[str, str]) -> tuple[int | None, str | None]:
    """POST and read at most a little of the answer: (status code, transport error code)."""
    try:
        async with client.stream("POST", url, content=body.encode(),
                                 headers=dict(headers)) as response:
            read_bytes = 0
            async for chunk in response.aiter_raw():
                read_bytes += len(chunk)
                if read_bytes > _ANSWER_BYTES_MAX:
                    break
            status_code = response.status_code
    except httpx.HTTPError as exc:
        for kind, code in _TRANSPORT_ERRORS:
            if isinstance(exc, kind):
                return None, code
        return None, "transport_error"
    return status_code, "server_error_5xx" if status_code >= 500 else None


def _acknowledged(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300


def intent_of(event: Mapping[str, Any]) -> str | None:
    """The PaymentIntent an event is about: the object itself, or its ``payment_intent``."""
    data_object = event.get("data", {}).get("object", {})
    if not isinstance(data_object, Mapping):
        return None
    if data_object.get("object") == "payment_intent":
        return str(data_object["id"])
    intent_id = data_object.get("payment_intent")
    if isinstance(intent_id, Mapping):  # expanded
        intent_id = intent_id.get("id")
    return intent_id if isinstance(intent_id, str) else None


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    """A Delivery as the truth endpoint exports it."""
    return {"index": delivery.index, "event_id": delivery.event_id,
            "event_type": delivery.event_type, "intent_id": delivery.intent_id,
            "variant": str(delivery.variant), "status_code": delivery.status_code,
            "started_ns": delivery.started_ns, "finished_ns": delivery.finished_ns,
            "error": delivery.error}
