"""Exceptions the harness raises about itself. Misbehaviour of a target is never one.

    TokenchaosError
     ├── UsageError            bad flags, bad profile, bad scenario name      -> exit 2
     ├── TargetError           the harness cannot work with the target         -> exit 2
     │    ├── TargetUnreachable
     │    └── ProvisioningFailed
     ├── ProviderError         the payment-provider simulator failed or was misused
     ├── StackError            the local stack (PostgreSQL, service) would not start
     └── FaultError            a fault could not be injected or healed (the nemesis failed)

What the target does wrong becomes an ``Outcome`` or an ``Anomaly`` (exit 1), never an
exception. Errors from httpx, psycopg or tomllib are translated at the edge of the module
that calls them, with ``raise X(...) from exc``. A message says what is wrong, gives the
value, and says what to do instead.
"""

from __future__ import annotations

__all__ = [
    "FaultError",
    "ProviderError",
    "ProvisioningFailed",
    "StackError",
    "TargetError",
    "TargetUnreachable",
    "TokenchaosError",
    "UsageError",
]


class TokenchaosError(Exception):
    """Base of every error the harness raises on purpose."""

    exit_code: int = 2


class UsageError(TokenchaosError):
    """Bad flags, profile or scenario name: the user must change something."""


class TargetError(TokenchaosError):
    """The harness cannot work with the target at all (not: the target misbehaved)."""


class TargetUnreachable(TargetError):
    """No connection to the target, or it never became healthy."""


class ProvisioningFailed(TargetError):
    """Users could not be created or funded as the profile says."""


class ProviderError(TokenchaosError):
    """The payment-provider simulator failed, or was asked for something it cannot do."""


class StackError(TokenchaosError):
    """The local stack (embedded PostgreSQL, reference service, provider) would not start."""


class FaultError(TokenchaosError):
    """A fault could not be injected or healed: a proxy, signal or command failed."""
