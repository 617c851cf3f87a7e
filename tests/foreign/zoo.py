"""The flaw zoo of the foreign test target: ``python -m tests.foreign.zoo [--update-readme]``.

Runs the smoke suite through the foreign profile (``foreign.toml``), exactly as
``tests/e2e/test_foreign_target.py`` does, once against the correct foreign service and
once per flaw of ``tests.foreign.flaws.FLAWS``, each on a fresh foreign stack, and reduces
every run to a row with ``harness.zoo.zoo_row``: the same matrix as ``tokenchaos zoo``
makes for the reference service, for a service we did not write the harness with.

It prints the matrix, writes ``<report-dir>/foreign-zoo.json`` and ``foreign-zoo.md``, and
with ``--update-readme`` rewrites the README block between ``README_BEGIN`` and
``README_END`` (under the reference matrix). Exits 0 when the correct service is clean and
every flaw was caught by a checker its ``caught_by`` names, 1 when not, 2 when a run could
not be made.

The PostgreSQL server is ``--database-url`` (an admin URL), else
``TOKENCHAOS_DATABASE_URL``, else an embedded one started for the zoo.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from harness.campaign import RunPlan, run_plan
from harness.errors import TokenchaosError
from harness.history import load
from harness.zoo import Zoo, ZooRow, update_readme, zoo_markdown, zoo_row, zoo_to_json
from tests.foreign.flaws import FLAWS, Flaw
from tests.foreign.stack import PROFILE_PATH, STAGING_TOKEN_ENV, foreign_stack

__all__ = [
    "CORRECT_DESCRIPTION",
    "GENERATED_BY",
    "README_BEGIN",
    "README_END",
    "foreign_markdown",
    "main",
    "run_foreign_zoo",
]

README_BEGIN = "<!-- foreign-zoo:begin -->"
README_END = "<!-- foreign-zoo:end -->"
GENERATED_BY = "`python -m tests.foreign.zoo` (profile `tests/foreign/foreign.toml`)"
CORRECT_DESCRIPTION = "the foreign test service as it is: every operation correct"
SUITE = "smoke"
_ADMIN_URL_ENV = "TOKENCHAOS_DATABASE_URL"
_EXIT_OK, _EXIT_BROKE, _EXIT_ERROR = 0, 1, 2


def _plan(*, seed: int, flaws: tuple[str, ...], report_dir: Path, target_url: str,
          provider_url: str, provider_key: str, database_url: str) -> RunPlan:
    """The smoke suite with one seed through the foreign profile, as a user would run it."""
    from scenarios import get_scenario, get_suite

    suite = get_suite(SUITE).with_seeds([seed])
    runs = tuple((get_scenario(name), params) for name, params in suite.runs())
    return RunPlan(runs=runs, suite=SUITE, profile=str(PROFILE_PATH), local=False,
                   target_url=target_url, provider_url=provider_url,
                   provider_key=provider_key, database_url=database_url,
                   report_dir=report_dir,
                   command=f"tokenchaos run --target {PROFILE_PATH.name} --seed {seed}")


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """``name`` set to ``value`` for the block (the profile reads the staging token there)."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


async def _row(pg_admin_url: str, flaw: Flaw | None, *, seed: int,
               report_dir: Path) -> ZooRow:
    """One run of the smoke suite against a fresh foreign stack with ``flaw`` installed."""
    flaws = () if flaw is None else (flaw.name,)
    async with foreign_stack(pg_admin_url, flaws=flaws) as stack:
        plan = _plan(seed=seed, flaws=flaws, report_dir=report_dir, target_url=stack.url,
                     provider_url=stack.provider_url, provider_key=stack.provider_key,
                     database_url=stack.database_url)
        with _environment(STAGING_TOKEN_ENV, stack.staging_token):
            started_s = time.monotonic()
            outcome = await run_plan(plan)
            wall_s = time.monotonic() - started_s
    return zoo_row(flaw, outcome, load(outcome.report_dir / "history.jsonl"), wall_s=wall_s,
                   correct_description=CORRECT_DESCRIPTION)


async def run_foreign_zoo(pg_admin_url: str, *, flaws: Sequence[str] | None = None,
                          seed: int = 1, report_dir: Path = Path("reports"),
                          on_row: Callable[[ZooRow], None] | None = None) -> Zoo:
    """Run the smoke suite against the correct foreign service, then each flaw, in turn.

    Args:
        pg_admin_url: a PostgreSQL URL allowed to create roles and databases.
        flaws: names from ``FLAWS`` (all of them by default), in the order to run.
        seed: the suite's seed, the same for every run.
        report_dir: where every run writes its report (``<report_dir>/<run-id>/``).
        on_row: called with each row as its run ends.

    Raises:
        ValueError: an unknown flaw name.
        TokenchaosError: a run could not be made.
    """
    names = list(FLAWS) if flaws is None else list(flaws)
    unknown = [name for name in names if name not in FLAWS]
    if unknown:
        raise ValueError(f"no foreign flaw {unknown[0]!r}; known: {', '.join(FLAWS)}")
    generated_at = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows: list[ZooRow] = []
    for flaw in [None, *(FLAWS[name] for name in names)]:
        row = await _row(pg_admin_url, flaw, seed=seed, report_dir=report_dir)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return Zoo(seed=seed, generated_at=generated_at, correct=rows[0], flaws=tuple(rows[1:]))


def foreign_markdown(zoo: Zoo) -> str:
    """The foreign matrix as the README block shows it."""
    return zoo_markdown(zoo, generated_by=GENERATED_BY)


def _verdict(row: ZooRow) -> str:
    if row.flaw is None:
        return "clean" if row.clean else f"NOT CLEAN (suite verdict {row.valid})"
    if not row.caught:
        return "NOT CAUGHT"
    verdict = (f"caught by {', '.join(row.checkers_fired)} in "
               f"{len(row.scenarios_caught)} scenario(s)")
    if not row.caught_as_described:
        verdict += f", NOT by {' or '.join(row.caught_by)}"
    return verdict


def _print_row(row: ZooRow) -> None:
    print(f"foreign zoo: {row.flaw or 'correct service'}: {_verdict(row)} "
          f"({row.wall_s:.1f} s; report {row.report_dir})", file=sys.stderr, flush=True)


def _write(zoo: Zoo, report_dir: Path) -> tuple[Path, Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    json_path = report_dir / "foreign-zoo.json"
    markdown_path = report_dir / "foreign-zoo.md"
    json_path.write_text(json.dumps(zoo_to_json(zoo), indent=2) + "\n", encoding="utf-8")
    markdown_path.write_text(foreign_markdown(zoo), encoding="utf-8")
    return json_path, markdown_path


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.foreign.zoo",
        description="The smoke suite against the correct foreign service and each of its "
                    "flaws: the detection matrix beside the reference service's.")
    parser.add_argument("--flaw", action="append", default=[], choices=list(FLAWS),
                        help="only this flaw (repeatable); default: every flaw")
    parser.add_argument("--seed", type=int, default=1, help="the smoke suite's seed")
    parser.add_argument("--report-dir", type=Path, default=Path("reports"),
                        help="where every run's report and the matrix go")
    parser.add_argument("--database-url", default=None,
                        help=f"PostgreSQL admin URL; default: ${_ADMIN_URL_ENV}, "
                             "else an embedded server")
    parser.add_argument("--update-readme", action="store_true",
                        help="rewrite the foreign matrix block of the README")
    parser.add_argument("--readme", type=Path, default=Path("README.md"),
                        help="the README to update")
    arguments = parser.parse_args(argv)
    if arguments.update_readme and arguments.flaw:
        parser.error("--update-readme needs every flaw: the README lists them all; "
                     "leave out --flaw")
    return arguments


def _run(arguments: argparse.Namespace, pg_admin_url: str) -> Zoo:
    return asyncio.run(run_foreign_zoo(pg_admin_url, flaws=arguments.flaw or None,
                                       seed=arguments.seed,
                                       report_dir=arguments.report_dir, on_row=_print_row))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the foreign zoo; print the matrix; exit 0 ok, 1 not ok, 2 no result."""
    arguments = _arguments(argv)
    admin_url = arguments.database_url or os.environ.get(_ADMIN_URL_ENV)
    try:
        if admin_url:
            zoo = _run(arguments, admin_url)
        else:
            from harness.pg import Durability, EmbeddedPostgres

            with EmbeddedPostgres(durability=Durability.FAST) as server:
                zoo = _run(arguments, server.url)
    except (TokenchaosError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _EXIT_ERROR
    json_path, markdown_path = _write(zoo, arguments.report_dir)
    print(foreign_markdown(zoo))
    print(f"matrix: {json_path}, {markdown_path}")
    if arguments.update_readme:
        changed = update_readme(arguments.readme, foreign_markdown(zoo), begin=README_BEGIN,
                                end=README_END)
        print(f"{arguments.readme}: {'updated' if changed else 'unchanged'}")
    print("verdict: " + ("every flaw caught, correct service clean" if zoo.ok else "NOT OK"))
    return _EXIT_OK if zoo.ok else _EXIT_BROKE


if __name__ == "__main__":
    sys.exit(main())
