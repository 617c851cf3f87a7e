"""The application factory: settings and operations in, a FastAPI app out.

``create_app`` wires the registry of operations (with any flaws installed), the body
limit, the error handlers and the routes. Its lifespan opens the connection pool, applies
the migrations (safe when several instances start at once), makes the Stripe client, and
closes everything on shutdown. Nothing here handles a request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any

import stripe
from fastapi import FastAPI

from reference_impl import db, routes, service
from reference_impl.api_schema import install_openapi
from reference_impl.errors import ConfigError
from reference_impl.flaws import install_flaws
from reference_impl.settings import Settings
from reference_impl.web import BodyLimitMiddleware, install_error_handlers

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(settings: Settings, *,
               operations: Mapping[str, Callable[..., Any]] | None = None) -> FastAPI:
    """The token service as an ASGI app.

    Args:
        settings: the configuration (``Settings.from_env()`` in production).
        operations: replacements for some of ``service.OPERATIONS``, by name (tests and
            flaws); every other operation is the correct one. The flaws named in
            ``settings.flaws`` are installed on top.

    Returns:
        The app; its lifespan connects to the database and migrates it.

    Raises:
        ConfigError: an unknown operation name or flaw name.
    """
    unknown = sorted(set(operations or {}) - set(service.OPERATIONS))
    if unknown:
        raise ConfigError(f"unknown operations {unknown}; known: {sorted(service.OPERATIONS)}")
    registry = install_flaws({**service.OPERATIONS, **(operations or {})}, settings.flaws)
    if settings.flaws:
        log.warning("FLAWS INSTALLED, this service is deliberately wrong: %s",
                    ", ".join(settings.flaws))
    app = FastAPI(title="tokenchaos reference token service", version="1", lifespan=_lifespan,
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.settings = settings
    app.state.operations = MappingProxyType(registry)
    app.state.user_ids_by_token = {}  # bearer token -> account id, filled as users call
    app.add_middleware(BodyLimitMiddleware, body_bytes_max=settings.request_body_bytes_max)
    install_error_handlers(app)
    app.include_router(routes.router)
    install_openapi(app)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    pool = app.state.operations["create_pool"](settings)
    await db.open_pool(pool, settings)
    http_client = stripe.HTTPXClient(timeout=settings.provider_timeout_s)
    try:
        applied = await db.apply_migrations(pool)
        log.info("database ready at %s (%d migrations applied now)",
                 db.redact_url(settings.database_url), len(applied))
        app.state.pool = pool
        app.state.stripe = stripe.StripeClient(
            settings.stripe_api_key,
            base_addresses={"api": settings.provider_url},
            http_client=http_client,
            max_network_retries=settings.provider_retries_max,
        )
        yield
    finally:
        await http_client.close_async()  # type: ignore[no-untyped-call]
        await pool.close()
