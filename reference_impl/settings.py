"""The service's settings: one frozen dataclass, read once from ``TOKENCHAOS_*`` variables.

Nothing else in the package reads the environment. Variables:

=================================  =====================================================
``TOKENCHAOS_DATABASE_URL``        PostgreSQL URL (required)
``TOKENCHAOS_ADMIN_KEY``           bearer key of the admin calls (required)
``TOKENCHAOS_WEBHOOK_SECRET``      Stripe webhook signing secret, ``whsec_...`` (required)
``TOKENCHAOS_PROVIDER_URL``        Stripe API base (default ``https://api.stripe.com``)
``TOKENCHAOS_STRIPE_API_KEY``      Stripe secret key (default ``sk_test_tokenchaos``)
``TOKENCHAOS_FLAWS``               comma list of flaw names to install (default none)
``TOKENCHAOS_POOL_SIZE_MIN``       database connections kept open (default 2)
``TOKENCHAOS_POOL_SIZE_MAX``       database connections at most (default 20)
``TOKENCHAOS_POOL_TIMEOUT_S``      wait for a free connection before 503 (default 60)
=================================  =====================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from reference_impl.errors import ConfigError

__all__ = ["Settings"]

_PREFIX = "TOKENCHAOS_"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the service is configured with. Limits are named ``<noun>_<unit>_<qualifier>``."""

    database_url: str
    admin_key: str
    webhook_secret: str
    provider_url: str = "https://api.stripe.com"
    stripe_api_key: str = "sk_test_tokenchaos"
    flaws: tuple[str, ...] = ()
    # The connection pool (psycopg_pool.AsyncConnectionPool).
    pool_size_min: int = 2
    pool_size_max: int = 20
    # Waiting for a free connection; past it the call is a 503. Longer than any client's
    # timeout: under load (a hot account, a CPU-starved machine) a correct service answers
    # late rather than refuse work it could do; a client that gives up sees a timeout.
    pool_timeout_s: float = 60.0
    pool_idle_s_max: float = 300.0  # close connections idle this long (above pool_size_min)
    pool_lifetime_s_max: float = 1800.0  # recycle every connection after this long
    pool_waiting_max: int = 1000  # requests queued for a connection; beyond, refused at once
    # A connection that cannot be (re)made is retried with doubling delays for this long,
    # then given up and tried afresh on demand: after an outage heals, the pool recovers
    # within seconds instead of waiting out a backoff as long as the outage was.
    pool_reconnect_timeout_s: float = 5.0
    pool_open_timeout_s: float = 30.0  # at start-up: the database must answer within this
    connect_timeout_s: int = 5
    # No statement may run longer (a stuck lock, a bug). A lock wait on a hot row of a busy
    # machine is not stuck: row-lock waiters are woken in no fixed order, so one may wait
    # many seconds behind others; only a wait far beyond any client's patience is a fault.
    statement_timeout_ms: int = 90_000
    lock_timeout_ms: int = 60_000
    # The provider (Stripe or the simulator).
    provider_timeout_s: float = 10.0
    provider_retries_max: int = 1  # safe: every request carries an idempotency key
    webhook_tolerance_s: int = 300  # Stripe's default signature timestamp tolerance
    # Requests.
    request_body_bytes_max: int = 64 * 1024

    def __post_init__(self) -> None:
        for name in ("database_url", "admin_key", "webhook_secret", "provider_url",
                     "stripe_api_key"):
            if not getattr(self, name).strip():
                raise ConfigError(f"setting {name} is empty; set {_PREFIX}{name.upper()}")
        if len(self.admin_key) < 16:
            raise ConfigError(f"{_PREFIX}ADMIN_KEY is {len(self.admin_key)} characters long; "
                              "use a random key of at least 16")
        if not 1 <= self.pool_size_min <= self.pool_size_max:
            raise ConfigError(f"pool sizes must satisfy 1 <= min <= max, got min "
                              f"{self.pool_size_min} and max {self.pool_size_max}; fix "
                              f"{_PREFIX}POOL_SIZE_MIN / {_PREFIX}POOL_SIZE_MAX")
        if self.pool_timeout_s <= 0:
            raise ConfigError(f"{_PREFIX}POOL_TIMEOUT_S must be positive, "
                              f"got {self.pool_timeout_s}")
        assert self.request_body_bytes_max >= 1024
        assert self.lock_timeout_ms < self.statement_timeout_ms

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the ``TOKENCHAOS_*`` variables (see the module docstring).

        Raises:
            ConfigError: a required variable is missing or a value does not parse.
        """
        env = os.environ if env is None else env
        values: dict[str, object] = {
            "database_url": _required(env, "DATABASE_URL"),
            "admin_key": _required(env, "ADMIN_KEY"),
            "webhook_secret": _required(env, "WEBHOOK_SECRET"),
            "flaws": _names(env.get(_PREFIX + "FLAWS", "")),
        }
        for name in ("PROVIDER_URL", "STRIPE_API_KEY"):
            if env.get(_PREFIX + name):
                values[name.lower()] = env[_PREFIX + name]
        for name in ("POOL_SIZE_MIN", "POOL_SIZE_MAX"):
            if env.get(_PREFIX + name):
                values[name.lower()] = _number(env, name, int)
        if env.get(_PREFIX + "POOL_TIMEOUT_S"):
            values["pool_timeout_s"] = _number(env, "POOL_TIMEOUT_S", float)
        return cls(**values)  # type: ignore[arg-type]


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(_PREFIX + name, "").strip()
    if not value:
        raise ConfigError(f"{_PREFIX}{name} is not set; the service cannot start without it")
    return value


def _number(env: Mapping[str, str], name: str, kind: type[int] | type[float]) -> int | float:
    text = env[_PREFIX + name]
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"{_PREFIX}{name}={text!r} is not a number") from None


def _names(text: str) -> tuple[str, ...]:
    """A comma list of names, blanks dropped: ``"a, b,"`` -> ``("a", "b")``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())
