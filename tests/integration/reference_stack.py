"""The reference service in the test's event loop, with the provider simulator behind it.

Purchases go through the official Stripe SDK to the simulator, which keeps its events
instead of delivering them (no webhook URL): tests deliver Stripe-shaped events for the
intents the service recorded, in whatever order and number they need.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from harness.provider.server import ProviderConfig, serve_provider
from reference_impl.settings import Settings
from reference_impl.testing import ServiceClient, assert_books_balance, serving

__all__ = ["service_with_provider"]


@asynccontextmanager
async def service_with_provider(database_url: str, *, admin_key: str, webhook_secret: str,
                                operations: Mapping[str, Callable[..., Any]] | None = None,
                                **settings: Any) -> AsyncIterator[ServiceClient]:
    """A client of a running service whose provider is the simulator; books checked after."""
    provider = await serve_provider(ProviderConfig(webhook_secret=webhook_secret))
    try:
        config = Settings(database_url=database_url, admin_key=admin_key,
                          webhook_secret=webhook_secret, provider_url=provider.url, **settings)
        async with serving(config, operations=operations) as base_url:
            client = ServiceClient(base_url, admin_key=admin_key, webhook_secret=webhook_secret)
            try:
                yield client
                await assert_books_balance(client, database_url)
            finally:
                await client.aclose()
    finally:
        await provider.stop()
