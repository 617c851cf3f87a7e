"""The reference service's tips/s over HTTP, side by side with pgbench running its own SQL.

One local stack (embedded durable PostgreSQL, the reference service as a child process)
holds every figure: fans funded in the database, creators to tip. For each client count
and workload (``hot``: every tip to one creator; ``uniform``: to a creator drawn among
many), interleaved ``reps`` times, the service is driven over HTTP by a pool of keep-alive
connections (one client per connection, each tipping from its own fan, as fast as the
answers come back), then pgbench runs the SQL the service runs for one tip
(``service.TIP_SQL``) against the same database and accounts with as many clients. The
ratio service/pgbench says how much of the database's speed the service's Python
(FastAPI, psycopg, the event loop) leaves on the table. The service sends the tips that
arrive together as one statement (``reference_impl.tip_batches``); pgbench sends each tip
as its own statement, as a service that did not batch would. How many tips the service
put in each write transaction is measured from the database's transaction ids.

The HTTP client is a few lines over asyncio streams, not httpx: its cost per request must
not be what is measured. This module measures; it never judges.
"""

from __future__ import annotations

import asyncio
import random
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from harness.bench import BenchOptions, Part, register

__all__ = [
    "TIP_VARIABLES",
    "WORKLOADS",
    "Figures",
    "pgbench_script",
    "run",
]

WORKLOADS = ("uniform", "hot")
_CREATORS_COUNT = 256  # uniform tips spread over this many recipients
_FUNDING_TOKENS = 10**12  # no sender runs dry during a bench
_TIP_TOKENS = 1
_WARMUP_S = 0.5
_PGBENCH_THREADS_MAX = 2
_HTTP_TIMEOUT_S = 30.0

# How pgbench fills each parameter of the service's tip SQL: a pgbench variable (set per
# transaction by the script's header), or a constant where the service passes one the
# database does not look into (the request's fingerprint). The service sends its tips in
# batches (arrays, one element per tip); pgbench sends one tip per statement.
TIP_VARIABLES: Mapping[str, str] = {
    "sender_ids": "ARRAY[CAST(:sender AS bigint)]",
    "recipient_ids": "ARRAY[CAST(:recipient AS bigint)]",
    "amounts_tokens": "ARRAY[CAST(:amount AS bigint)]",
    "keys": "ARRAY['pgbench-' || CAST(:key AS text)]",
    "fingerprints": "ARRAY['pgbench']",
}

_SCRIPT_HEADER = (
    "\\set sender :fan_first + (:client_id % :fan_count)\n"
    "\\set recipient random(:creator_first, :creator_last)\n"
    "\\set key random(1, 1000000000000000)\n"
)


def pgbench_script(statements: Sequence[str], variables: Mapping[str, str] = TIP_VARIABLES,
                   *, amount_tokens: int = _TIP_TOKENS) -> str:
    """A pgbench script running ``statements`` (psycopg ``%(name)s`` SQL) for one tip.

    Every ``%(name)s`` placeholder becomes the pgbench expression ``variables[name]``;
    each statement ends with a semicolon (pgbench's end of a command spanning lines).

    Raises:
        ValueError: a statement has a placeholder with no variable, or a positional ``%s``.
    """
    assert statements, "a tip runs at least one statement"
    lines = [_SCRIPT_HEADER + f"\\set amount {amount_tokens}\n"]
    for statement in statements:
        if re.search(r"%s", statement):
            raise ValueError("positional %s parameters cannot be mapped; name them")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in variables:
                raise ValueError(f"no pgbench variable for the tip's parameter {name!r}")
            return f"({variables[name]})"

        sql = re.sub(r"%\((\w+)\)s", substitute, statement.strip()).replace("%%", "%")
        lines.append(sql.rstrip(";") + ";\n")
    return "".join(lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class Figures:
    """One side-by-side measurement: the service's and pgbench's tips/s."""

    workload: str
    clients_count: int
    rep_index: int
    service_tips_per_s: float
    pgbench_tips_per_s: float
    service_errors_count: int
    service_tips_per_transaction: float  # the service's batches: tips per write transaction

    @property
    def ratio(self) -> float:
        return self.service_tips_per_s / self.pgbench_tips_per_s if self.pgbench_tips_per_s \
            else 0.0


@register("service")
def run(options: BenchOptions) -> Part:
    """Service tips/s vs pgbench on the service's own SQL, per workload and client count."""
    figures = asyncio.run(_measure_all(options))
    return _part(figures, options)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Accounts:
    fans: tuple[tuple[int, str], ...]  # (id, token), ids contiguous
    creator_ids: tuple[int, ...]  # contiguous


async def _measure_all(options: BenchOptions) -> list[Figures]:
    from harness.pg_install import install_dir
    from harness.stack import LocalStack, StackConfig
    from reference_impl import service

    pgbench = install_dir() / "bin" / "pgbench"
    if not pgbench.exists():
        raise RuntimeError(f"pgbench is not in the embedded PostgreSQL install ({pgbench})")
    fans_count = max(options.clients)
    script = pgbench_script(service.TIP_STATEMENTS)
    results: list[Figures] = []
    async with LocalStack(StackConfig.from_env(seed=options.seed)) as info:
        accounts = await _provision(info.service_url, info.admin_key, info.database_url,
                                    fans_count=fans_count)
        with tempfile.TemporaryDirectory(prefix="tokenchaos-bench-") as folder:
            script_path = Path(folder) / "tip.sql"
            script_path.write_text(script, encoding="utf-8")
            rng = random.Random(options.seed)
            for rep_index in range(options.reps):
                for clients_count in options.clients:
                    for workload in WORKLOADS:
                        xid_before = await _next_xid(info.database_url)
                        service_rate, errors, tips_count = await _drive_service(
                            info.service_url, accounts, workload=workload,
                            clients_count=clients_count, duration_s=options.duration_s,
                            rng=rng, run_tag=f"{rep_index}{workload[0]}{clients_count}")
                        transactions_count = await _next_xid(info.database_url) - xid_before
                        pgbench_rate = await asyncio.to_thread(
                            _run_pgbench, pgbench, script_path, info.database_url, accounts,
                            workload=workload, clients_count=clients_count,
                            duration_s=options.duration_s)
                        results.append(Figures(
                            workload=workload, clients_count=clients_count,
                            rep_index=rep_index, service_tips_per_s=service_rate,
                            pgbench_tips_per_s=pgbench_rate, service_errors_count=errors,
                            service_tips_per_transaction=tips_count / max(1, transactions_count)))
    return results


async def _provision(service_url: str, admin_key: str, database_url: str, *,
                     fans_count: int) -> _Accounts:
    """Fans (funded as if each had bought tokens once) and creators, with contiguous ids."""
    async with httpx.AsyncClient(base_url=service_url, timeout=_HTTP_TIMEOUT_S,
                                 headers={"Authorization": f"Bearer {admin_key}"}) as client:
        async def create(kind: str) -> tuple[int, str]:
            response = await client.post("/v1/users", json={"kind": kind})
            response.raise_for_status()
            return int(response.json()["id"]), str(response.json()["token"])

        fans = tuple([await create("fan") for _ in range(fans_count)])
        creators = tuple([(await create("creator"))[0] for _ in range(_CREATORS_COUNT)])
    fan_ids = [fan_id for fan_id, _ in fans]
    assert fan_ids == list(range(fan_ids[0], fan_ids[0] + fans_count)), "fan ids have gaps"
    assert list(creators) == list(range(creators[0], creators[0] + _CREATORS_COUNT))
    await _fund(database_url, fan_ids)
    return _Accounts(fans=fans, creator_ids=creators)


async def _fund(database_url: str, fan_ids: Sequence[int]) -> None:
    """Credit every fan as the webhook of one succeeded purchase would, books balanced."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
        for fan_id in fan_ids:
            cursor = await conn.execute(
                "INSERT INTO ledger_transactions (kind, reference) VALUES ('credit', %s)"
                " RETURNING id", (f"pi_bench_{fan_id}",))
            row = await cursor.fetchone()
            assert row is not None
            await conn.execute(
                "INSERT INTO ledger_entries (transaction_id, account_id, amount)"
                " VALUES (%s, 1, %s), (%s, %s, %s)",
                (row[0], -_FUNDING_TOKENS, row[0], fan_id, _FUNDING_TOKENS))
            await conn.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s",
                               (_FUNDING_TOKENS, fan_id))
            await conn.execute(
                "INSERT INTO payments (intent_id, account_id, amount_cents, minted_tokens,"
                " succeeded) VALUES (%s, %s, 100, %s, true)",
                (f"pi_bench_{fan_id}", fan_id, _FUNDING_TOKENS))


async def _next_xid(database_url: str) -> int:
    """The next transaction id the database will assign: the count of write transactions
    between two readings (a read-only reading assigns none)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def _drive_service(service_url: str, accounts: _Accounts, *, workload: str,
                         clients_count: int, duration_s: float, rng: random.Random,
                         run_tag: str) -> tuple[float, int, int]:
    """Tips/s acknowledged (201) by the service over ``duration_s``, the other answers in
    that window, and every tip acknowledged (warm-up included)."""
    host, _, port = service_url.removeprefix("http://").partition(":")
    started = time.monotonic()
    window = (started + _WARMUP_S, started + _WARMUP_S + duration_s)
    counts = [0, 0, 0]  # acknowledged in the window, answered otherwise, acknowledged ever

    async def client(client_index: int) -> None:
        _, token = accounts.fans[client_index % len(accounts.fans)]
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            tip_index = 0
            while time.monotonic() < window[1]:
                recipient = (accounts.creator_ids[0] if workload == "hot"
                             else rng.choice(accounts.creator_ids))
                body = b'{"to":%d,"amount":%d}' % (recipient, _TIP_TOKENS)
                writer.write(
                    b"POST /v1/tips HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                    b"Idempotency-Key: %s\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s"
                    % (host.encode(), token.encode(),
                       f"bench-{run_tag}-{client_index}-{tip_index}".encode(), len(body), body))
                tip_index += 1
                status = await _read_status(reader)
                now = time.monotonic()
                counts[2] += status == 201
                if window[0] <= now <= window[1]:
                    counts[0 if status == 201 else 1] += 1
        finally:
            writer.close()

    async with asyncio.timeout(duration_s + _WARMUP_S + _HTTP_TIMEOUT_S):
        await asyncio.gather(*(client(index) for index in range(clients_count)))
    return counts[0] / duration_s, counts[1], counts[2]


async def _read_status(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response with a Content-Length body; return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    assert match is not None, "the service answers with a Content-Length"
    await reader.readexactly(int(match.group(1)))
    return status


def _run_pgbench(pgbench: Path, script: Path, database_url: str, accounts: _Accounts, *,
                 workload: str, clients_count: int, duration_s: float) -> float:
    """pgbench's tips/s (transactions per second without connection time)."""
    creator_last = accounts.creator_ids[0] if workload == "hot" else accounts.creator_ids[-1]
    defines = {"fan_first": accounts.fans[0][0], "fan_count": len(accounts.fans),
               "creator_first": accounts.creator_ids[0], "creator_last": creator_last}
    command = [str(pgbench), "--no-vacuum", "--protocol=prepared", f"--file={script}",
               f"--client={clients_count}",
               f"--jobs={min(clients_count, _PGBENCH_THREADS_MAX)}",
               f"--time={max(1, round(duration_s))}",
               *(f"--define={name}={value}" for name, value in defines.items()),
               database_url]
    result = subprocess.run(command, capture_output=True, text=True, check=False,
                            timeout=duration_s + 60)
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", result.stdout)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"pgbench failed ({result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()[-800:]}")
    return float(match.group(1))


def _part(figures: Sequence[Figures], options: BenchOptions) -> Part:
    rows = [{"workload": f.workload, "clients": f.clients_count, "rep": f.rep_index,
             "service_tips_per_s": round(f.service_tips_per_s, 1),
             "pgbench_tips_per_s": round(f.pgbench_tips_per_s, 1),
             "ratio": round(f.ratio, 3), "service_errors": f.service_errors_count,
             "service_tips_per_transaction": round(f.service_tips_per_transaction, 2)}
            for f in figures]
    table = [f"{'workload':<8} {'clients':>7} {'service/s':>10} {'pgbench/s':>10} "
             f"{'ratio':>6} {'tips/batch':>10} {'ratios (each rep)':<24}"]
    for workload in WORKLOADS:
        for clients_count in options.clients:
            group = [f for f in figures
                     if f.workload == workload and f.clients_count == clients_count]
            if not group:
                continue
            table.append(
                f"{workload:<8} {clients_count:>7} "
                f"{statistics.median(f.service_tips_per_s for f in group):>10.1f} "
                f"{statistics.median(f.pgbench_tips_per_s for f in group):>10.1f} "
                f"{statistics.median(f.ratio for f in group):>6.2f} "
                f"{statistics.median(f.service_tips_per_transaction for f in group):>10.1f} "
                f"{' '.join(f'{f.ratio:.2f}' for f in group):<24}")
    errors = sum(f.service_errors_count for f in figures)
    notes = [f"medians of {options.reps} interleaved reps of {options.duration_s:g} s each; "
             "pgbench runs service.TIP_STATEMENTS one tip per statement, --protocol=prepared, "
             "same database; tips/batch: the service's tips per write transaction"]
    if errors:
        notes.append(f"{errors} tips answered other than 201 (not counted)")
    return Part(name="service", rows=rows, table=table, notes=notes)
