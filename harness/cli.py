"""The ``tokenchaos`` command: thin wrappers that parse flags and call into the stages.

Exit codes: 0 every invariant held; 1 an invariant broke; 2 the harness could not judge
(unreachable target, bad profile, a stack that would not start). ``TokenchaosError`` maps
to 2 with its message, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from harness.errors import TokenchaosError, UsageError

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=False,
                  help="Concurrency test and chaos harness for token services.")

EXIT_OK = 0
EXIT_INVARIANT_BROKE = 1
EXIT_CANNOT_JUDGE = 2


def main() -> None:
    """Console-script entry point: run the app, mapping our errors to exit 2."""
    try:
        app(standalone_mode=False)
    except TokenchaosError as exc:
        typer.echo(f"tokenchaos: {exc}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.BadParameter, typer.Abort) as exc:
        typer.echo(f"tokenchaos: {exc}", err=True)
        sys.exit(EXIT_CANNOT_JUDGE)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        from click import ClickException
        if isinstance(exc, ClickException):
            exc.show()
            sys.exit(EXIT_CANNOT_JUDGE)
        raise


async def _wait_for_signal() -> None:
    """Return on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@app.command()
def serve(
    flaw: Annotated[list[str] | None, typer.Option(
        "--flaw", help="Install this flaw in the reference service (repeatable).")] = None,
    service_port: Annotated[int | None, typer.Option(help="Port of the service.")] = None,
    provider_port: Annotated[int | None, typer.Option(help="Port of the provider.")] = None,
) -> None:
    """Start the local stack, print one JSON line with its URLs and secrets, serve until Ctrl-C."""
    from harness.stack import LocalStack, StackConfig

    flaws = tuple(flaw or ())
    _check_flaw_names(flaws)
    config = StackConfig.from_env(flaws=flaws or None, service_port=service_port,
                                  provider_port=provider_port)

    async def _serve() -> None:
        async with LocalStack(config) as info:
            typer.echo(json.dumps(info.to_json()))
            sys.stdout.flush()
            await _wait_for_signal()

    asyncio.run(_serve())


@app.command()
def provider(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = 0,
    webhook_url: Annotated[str | None, typer.Option(
        help="Where to deliver webhooks (your service's endpoint).")] = None,
    webhook_secret: Annotated[str | None, typer.Option(
        help="Signing secret (whsec_...); drawn fresh if not given.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for ids and delivery chaos.")] = 0,
) -> None:
    """Run the payment-provider simulator alone, for a staging service pointed at it."""
    import secrets

    from harness.provider.server import ProviderConfig, serve_provider

    secret = webhook_secret or "whsec_" + secrets.token_urlsafe(24)

    async def _serve() -> None:
        running = await serve_provider(
            ProviderConfig(webhook_url=webhook_url, webhook_secret=secret, seed=seed),
            host=host, port=port)
        try:
            typer.echo(json.dumps({"provider_url": str(running.url), "webhook_secret": secret}))
            sys.stdout.flush()
            await _wait_for_signal()
        finally:
            await running.stop()

    asyncio.run(_serve())


def _check_flaw_names(flaws: tuple[str, ...]) -> None:
    if not flaws:
        return
    from reference_impl.flaws import FLAWS

    unknown = [name for name in flaws if name not in FLAWS]
    if unknown:
        known = ", ".join(sorted(FLAWS)) or "(none registered)"
        raise UsageError(f"unknown flaw {unknown[0]!r}; known flaws: {known}")


def _existing_file(path: Path) -> Path:
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    return path
