"""The seed-shaped service running for a test: its database, its users, the provider.

``seedlike_stack`` creates a database owned by a fresh role that is no superuser, starts
the provider simulator in the caller's event loop, starts the service as a child process
(``python -m tests.seedlike``) on a free port, points the provider's webhooks at it, then
creates users in the service's tables directly (the seed has no API for it) and writes
the users file ``harness/targets/seed.toml`` reads: ``{"users": [{"id", "token",
"kind"}, ...]}``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from harness.pg import create_service_database
from harness.provider.client import ProviderClient
from harness.provider.server import ProviderConfig, serve_provider
from tests.child_service import announced_url, stop_child

__all__ = ["WEBHOOK_PATH", "SeedlikeStack", "create_users", "seedlike_stack"]

WEBHOOK_PATH = "/api/payments/webhook"
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedlikeStack:
    """Where the running service and its provider are, and the file of its users."""

    url: str
    provider_url: str
    provider_key: str
    database_url: str
    users_file: Path


@asynccontextmanager
async def seedlike_stack(pg_admin_url: str, users_file: Path, *, fans: int = 2,
                         creators: int = 2) -> AsyncIterator[SeedlikeStack]:
    """Run the service with this many users of each kind until the block ends."""
    database_url = await asyncio.to_thread(create_service_database, pg_admin_url)
    config = ProviderConfig()
    provider = await serve_provider(config)
    command = [sys.executable, "-m", "tests.seedlike", "--database-url", database_url,
               "--provider-url", provider.url, "--webhook-secret", config.webhook_secret]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=_REPO_ROOT, stdout=asyncio.subprocess.PIPE)
    try:
        url = await announced_url(process, name="seed-shaped service")
        async with ProviderClient(provider.url, control_key=config.control_key) as client:
            await client.configure(webhook_url=url + WEBHOOK_PATH)
        users = await asyncio.to_thread(create_users, database_url,
                                        {"fan": fans, "creator": creators})
        users_file.write_text(json.dumps({"users": users}, indent=2), encoding="utf-8")
        yield SeedlikeStack(url=url, provider_url=provider.url,
                            provider_key=config.control_key, database_url=database_url,
                            users_file=users_file)
    finally:
        await stop_child(process)
        await provider.stop()


def create_users(database_url: str, counts: dict[str, int]) -> list[dict[str, str]]:
    """Insert users (a zero balance each, a fresh bearer token) and list them as the file does."""
    users: list[dict[str, str]] = []
    with psycopg.connect(database_url) as conn:
        for kind, count in counts.items():
            for _ in range(count):
                user_id, token = str(uuid.uuid4()), "tok_" + secrets.token_urlsafe(24)
                conn.execute("INSERT INTO users (supabase_id, is_creator) VALUES (%s, %s)",
                             (user_id, kind == "creator"))
                conn.execute("INSERT INTO token_balances (user_id) VALUES (%s)", (user_id,))
                conn.execute("INSERT INTO auth_tokens (token, user_id) VALUES (%s, %s)",
                             (token, user_id))
                users.append({"id": user_id, "token": token, "kind": kind})
    return users
