"""The foreign service running for a test: its own database, the provider, a child process.

``foreign_stack`` creates a database owned by a fresh role that is no superuser on the
test PostgreSQL, starts the provider simulator in the caller's event loop, starts the
foreign service as a child process on a free port (``python -m tests.foreign``), and
points the provider's webhooks at it. ``ForeignStack`` holds what a harness run or a test
needs: the service URL, the provider's URL and control key, the webhook secret, the
database URL (for the SQL observer) and the staging token (for provisioning).
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.pg import create_service_database
from harness.provider.client import ProviderClient
from harness.provider.server import ProviderConfig, serve_provider
from tests.child_service import announced_url, stop_child

__all__ = ["PROFILE_PATH", "STAGING_TOKEN_ENV", "ForeignStack", "foreign_stack"]

PROFILE_PATH = Path(__file__).with_name("foreign.toml")
STAGING_TOKEN_ENV = "FOREIGN_STAGING_TOKEN"  # the profile's provisioning header reads it
WEBHOOK_PATH = "/stripe/events"
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True, kw_only=True)
class ForeignStack:
    """Where the running foreign service and its provider are, and their secrets."""

    url: str
    provider_url: str
    provider_key: str
    webhook_secret: str
    database_url: str
    staging_token: str


@asynccontextmanager
async def foreign_stack(pg_admin_url: str, *,
                        flaws: tuple[str, ...] = ()) -> AsyncIterator[ForeignStack]:
    """Run the foreign service (with these flaws) and the provider until the block ends."""
    database_url = await asyncio.to_thread(create_service_database, pg_admin_url)
    config = ProviderConfig()
    provider = await serve_provider(config)
    staging_token = "stg_" + secrets.token_urlsafe(16)
    command = [sys.executable, "-m", "tests.foreign", "--database-url", database_url,
               "--provider-url", provider.url, "--webhook-secret", config.webhook_secret,
               "--staging-token", staging_token]
    for name in flaws:
        command += ["--flaw", name]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=_REPO_ROOT, stdout=asyncio.subprocess.PIPE)
    try:
        url = await announced_url(process, name="foreign service")
        async with ProviderClient(provider.url, control_key=config.control_key) as client:
            await client.configure(webhook_url=url + WEBHOOK_PATH)
        yield ForeignStack(url=url, provider_url=provider.url, provider_key=config.control_key,
                           webhook_secret=config.webhook_secret, database_url=database_url,
                           staging_token=staging_token)
    finally:
        await stop_child(process)
        await provider.stop()
