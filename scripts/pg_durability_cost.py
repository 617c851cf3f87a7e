"""What durability costs the embedded PostgreSQL: single-row commits per second, side by side.

Starts one durable and one fast (``Durability.FAST``: no fsync, no synchronous commit, no
full-page writes) server, and runs the wheel's own ``pgbench`` against each with N
concurrent clients, every transaction one ``INSERT`` of one row (what a tip costs the
database, without the service). Prints one line per (mode, clients). With ``--service``,
also the end-to-end figure: tips per second through the reference service of a local stack
on each server, N clients tipping one token at a time.

    .venv/bin/python scripts/pg_durability_cost.py --clients 1 8 32 --seconds 10 --service
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import psycopg

from harness.pg import Durability, EmbeddedPostgres, create_service_database
from harness.stack import StackConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.stackapi import Api, StackThread

__all__ = ["Measurement", "main", "measure"]

_SCRIPT = "INSERT INTO bench (payload) VALUES (:client_id);\n"
_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.MULTILINE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    durability: Durability
    clients_count: int
    commits_per_s: float
    latency_ms_mean: float


def measure(server: EmbeddedPostgres, *, clients_count: int, duration_s: int,
            script: Path) -> Measurement:
    """Run pgbench for ``duration_s`` with ``clients_count`` clients on ``server``."""
    assert server.install is not None, "start the server first"
    url = urllib.parse.urlsplit(server.url)
    env = {**os.environ, "PGPASSWORD": url.password or ""}
    command = [str(server.install / "bin" / "pgbench"), "-n", "-h", "127.0.0.1",
               "-p", str(server.port), "-U", url.username or "postgres",
               "-c", str(clients_count), "-j", str(min(clients_count, 2)),
               "-T", str(duration_s), "-f", str(script), "postgres"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True,
                          timeout=duration_s + 60)
    tps, latency = _TPS.search(done.stdout), _LATENCY.search(done.stdout)
    if tps is None or latency is None:
        raise RuntimeError(f"could not read pgbench's output: {done.stdout[-500:]}")
    return Measurement(durability=server.durability, clients_count=clients_count,
                       commits_per_s=float(tps.group(1)),
                       latency_ms_mean=float(latency.group(1)))


def measure_service(server: EmbeddedPostgres, *, clients_count: int,
                    duration_s: int) -> float:
    """Tips per second through a local stack's service on ``server``, ``clients_count`` at once."""
    config = StackConfig(database_url=create_service_database(server.url))
    with StackThread(config) as info:
        api = Api(info)
        creator = api.create_user("creator")
        fans = [api.create_user("fan") for _ in range(clients_count)]
        for fan in fans:
            api.fund(fan, 10_000)
        counts = [0] * clients_count
        deadline = time.monotonic() + duration_s

        def tipper(index: int) -> None:
            while time.monotonic() < deadline:
                response = api.tip(fans[index], creator, 1)
                assert response.status_code == 201, response.text
                counts[index] += 1

        threads = [threading.Thread(target=tipper, args=(i,)) for i in range(clients_count)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed_s = time.monotonic() - started
        api.close()
    return sum(counts) / elapsed_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--service", action="store_true",
                        help="also measure tips/s through the reference service")
    args = parser.parse_args()
    results: dict[tuple[Durability, int], Measurement] = {}
    tips: dict[tuple[Durability, int], float] = {}
    for durability in (Durability.DURABLE, Durability.FAST):
        with EmbeddedPostgres(durability=durability) as server:
            with psycopg.connect(server.url, autocommit=True) as conn:
                conn.execute("CREATE TABLE bench (id BIGSERIAL PRIMARY KEY, payload INT)")
            script = server.root / "bench.sql"
            script.write_text(_SCRIPT)
            os.chmod(script, 0o644)
            for clients_count in args.clients:
                result = measure(server, clients_count=clients_count,
                                 duration_s=args.seconds, script=script)
                results[(durability, clients_count)] = result
                if args.service:
                    tips[(durability, clients_count)] = measure_service(
                        server, clients_count=clients_count, duration_s=args.seconds)
    print(f"{'clients':>7}  {'durable commits/s':>17}  {'fast commits/s':>14}  "
          f"{'durable/fast':>12}  {'durable ms':>10}  {'fast ms':>7}")
    for clients_count in args.clients:
        durable = results[(Durability.DURABLE, clients_count)]
        fast = results[(Durability.FAST, clients_count)]
        print(f"{clients_count:>7}  {durable.commits_per_s:>17.0f}  {fast.commits_per_s:>14.0f}  "
              f"{durable.commits_per_s / fast.commits_per_s:>12.2f}  "
              f"{durable.latency_ms_mean:>10.2f}  {fast.latency_ms_mean:>7.2f}")

    if args.service:
        print(f"{'clients':>7}  {'durable tips/s':>14}  {'fast tips/s':>11}  "
              f"{'durable/fast':>12}")
        for clients_count in args.clients:
            durable_tips = tips[(Durability.DURABLE, clients_count)]
            fast_tips = tips[(Durability.FAST, clients_count)]
            print(f"{clients_count:>7}  {durable_tips:>14.0f}  {fast_tips:>11.0f}  "
                  f"{durable_tips / fast_tips:>12.2f}")


if __name__ == "__main__":
    main()
