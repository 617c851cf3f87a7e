"""Writers of a shrunk schedule: a pytest file, and a plain httpx script of its calls.

The pytest file uses the plugin's ``tokenchaos_schedule`` fixture, so it runs the
schedule through the harness (fresh users, the same checker) against whatever target the
pytest options name: with ``--tokenchaos-flaw`` on the local stack it fails, against the
correct service it passes. The script needs nothing of ours, only httpx: it creates the
users through the admin API, sends each batch's requests at once, waits between batches
where the scenario waited for webhooks, and prints every answer and the final balances,
for a developer of the target to run against their own staging. It speaks the reference
service's API (``reference.toml``); a target with another API adapts the ``send_*``
functions at its top. Both are pure text built from the schedule; ``write_reproducers``
is the only function that touches the disk.
"""

from __future__ import annotations

import pprint
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from harness.shrink.schedule_json import Recorded, recorded_to_json

__all__ = ["Reproducers", "pytest_source", "reproducer_names", "script_source",
           "write_reproducers"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Reproducers:
    """Where the shrunk schedule was written."""

    pytest_file: Path
    script_file: Path


def reproducer_names(scenario: str) -> tuple[str, str]:
    """The pytest file's and the script's names for a scenario: ``test_shrunk_<snake>.py``
    and ``shrunk_<snake>_httpx.py``."""
    snake = re.sub(r"[^0-9a-zA-Z]+", "_", scenario).strip("_").lower() or "scenario"
    return f"test_shrunk_{snake}.py", f"shrunk_{snake}_httpx.py"


def write_reproducers(recorded: Recorded, out_dir: Path, *, header: str, runs: int,
                      flaws: tuple[str, ...] = ()) -> Reproducers:
    """Write both files into ``out_dir`` and say where."""
    test_name, script_name = reproducer_names(recorded.scenario)
    pytest_file = out_dir / test_name
    script_file = out_dir / script_name
    pytest_file.write_text(pytest_source(recorded, header=header, runs=runs, flaws=flaws),
                           encoding="utf-8")
    script_file.write_text(script_source(recorded, header=header), encoding="utf-8")
    return Reproducers(pytest_file=pytest_file, script_file=script_file)


def pytest_source(recorded: Recorded, *, header: str, runs: int,
                  flaws: tuple[str, ...] = ()) -> str:
    """A pytest module that replays the schedule ``runs`` times and fails if any run breaks
    the checker. ``header`` (plain sentences) opens its docstring; ``flaws`` installed in
    the local stack make it fail there."""
    assert runs >= 1, runs
    flaw_flags = " ".join(f"--tokenchaos-flaw {flaw}" for flaw in flaws) or \
        "--tokenchaos-flaw FLAW"
    name = reproducer_names(recorded.scenario)[0].removeprefix("test_").removesuffix(".py")
    data = pprint.pformat(recorded_to_json(recorded), indent=1, width=88, sort_dicts=False)
    return f'''"""{_docstring_text(header)}

Replays the schedule with fresh users, up to RUNS times (a race does not show every time),
and fails when a run breaks {recorded.checker}. Against the local stack with the flaw:

    pytest {reproducer_names(recorded.scenario)[0]} {flaw_flags}

and against the correct local service, where it passes: leave the flaw out.
Against a target of your own: --tokenchaos-target PROFILE.toml (see tokenchaos --help).
"""

SCHEDULE = {data}

RUNS = {runs}


def test_{name}_holds(tokenchaos_schedule):
    outcome = tokenchaos_schedule(SCHEDULE, runs=RUNS)
    assert outcome.held, outcome.summary
'''


def script_source(recorded: Recorded, *, header: str) -> str:
    """A stand-alone httpx script of the schedule's HTTP calls (see the module docstring)."""
    data = pprint.pformat(recorded_to_json(recorded), indent=1, width=88, sort_dicts=False)
    return (f'"""{_docstring_text(header)}\n\n{_SCRIPT_USAGE}"""\n\n{_SCRIPT_IMPORTS}\n'
            f"SCHEDULE = {data}\n{_SCRIPT_BODY}")


def _docstring_text(text: str) -> str:
    text = text.replace("\\", "\\\\").replace('"' * 3, "'" * 3)
    return "\n".join(textwrap.wrap(text, width=88, break_on_hyphens=False))


_SCRIPT_USAGE = """\
The HTTP calls alone, for the target's own staging; only httpx is needed
(pip install httpx). Set, then run with python:

    TARGET_URL    the service's base URL, e.g. http://127.0.0.1:8000
    ADMIN_KEY     its admin bearer key (users are created with POST /v1/users)
    PROVIDER_URL  the Stripe-compatible API the service uses, for refunds, disputes and
                  3-D Secure (optional: without it those calls are skipped)
    PROVIDER_KEY  the tokenchaos provider's control key, to set its webhook delivery
                  policy as the scenario did (optional)
    SETTLE_S      seconds to wait where the scenario waited for webhooks (default 3)

Each batch's requests go out at once. It prints every answer, then each user's balance
(GET /v1/me) and the audit totals: compare them with what the header says should hold.
"""

_SCRIPT_IMPORTS = """\
import asyncio
import os
import sys

import httpx
"""

_SCRIPT_BODY = r'''

TARGET_URL = os.environ.get("TARGET_URL", "http://127.0.0.1:8000").rstrip("/")
ADMIN_KEY = os.environ.get("ADMIN_KEY", "")
PROVIDER_URL = os.environ.get("PROVIDER_URL", "").rstrip("/")
PROVIDER_KEY = os.environ.get("PROVIDER_KEY", "")
SETTLE_S = float(os.environ.get("SETTLE_S", "3"))
STRIPE_KEY = "sk_test_tokenchaos"

users = {}  # logical name -> {"id", "token"}
intents = {}  # logical purchase -> payment intent id
calls = {}  # logical call -> call id
disputes = {}  # logical dispute -> dispute id


def user_headers(name, key):
    headers = {"Authorization": f"Bearer {users[name]['token']}"}
    if key:
        headers["Idempotency-Key"] = key
    return headers


async def send(client, op):
    f, v, key = op["f"], op["value"], op["idempotency_key"]
    if f == "purchase":
        r = await client.post(f"{TARGET_URL}/v1/purchases", headers=user_headers(v["user"], key),
                              json={"tokens": v["amount_tokens"],
                                    "payment_method": v["payment_method"]})
        if r.status_code == 201:
            intents[v["purchase"]] = r.json()["intent_id"]
    elif f == "tip":
        r = await client.post(f"{TARGET_URL}/v1/tips", headers=user_headers(v["sender"], key),
                              json={"to": int(users[v["recipient"]]["id"]),
                                    "amount": v["amount_tokens"]})
    elif f == "call_open":
        r = await client.post(f"{TARGET_URL}/v1/calls", headers=user_headers(v["user"], key),
                              json={"creator": int(users[v["creator"]]["id"]),
                                    "rate_per_minute": v["rate_tokens_per_minute"]})
        if r.status_code == 201:
            calls[v["call"]] = r.json()["call_id"]
    elif f == "call_charge":
        r = await client.post(f"{TARGET_URL}/v1/calls/{calls[v['call']]}/charges",
                              headers=user_headers(v["user"], key), json={"minute": v["minute"]})
    elif f == "call_end":
        r = await client.post(f"{TARGET_URL}/v1/calls/{calls[v['call']]}/end",
                              headers=user_headers(v["user"], key))
    elif f == "read_balance":
        r = await client.get(f"{TARGET_URL}/v1/me", headers=user_headers(v["user"], None))
    elif f in ("refund", "dispute_open", "dispute_close", "authenticate") and PROVIDER_URL:
        r = await send_provider(client, f, v)
    else:
        return f"#{op['id']} {f}: skipped (not a call this script makes)"
    return f"#{op['id']} {f} {v} -> {r.status_code} {r.text[:200]}"


async def send_provider(client, f, v):
    auth = {"Authorization": f"Bearer {STRIPE_KEY}"}
    if f == "refund":
        form = {"payment_intent": intents[v["purchase"]]}
        if v.get("amount_cents") is not None:
            form["amount"] = v["amount_cents"]
        return await client.post(f"{PROVIDER_URL}/v1/refunds", headers=auth, data=form)
    if f == "dispute_open":
        r = await client.post(f"{PROVIDER_URL}/v1/test_helpers/disputes", headers=auth,
                              data={"payment_intent": intents[v["purchase"]]})
        if r.status_code < 300:
            disputes[v["dispute"]] = r.json()["id"]
        return r
    if f == "dispute_close":
        return await client.post(
            f"{PROVIDER_URL}/v1/test_helpers/disputes/{disputes[v['dispute']]}/close",
            headers=auth, data={"outcome": v["outcome"]})
    return await client.post(
        f"{PROVIDER_URL}/v1/test_helpers/payment_intents/{intents[v['purchase']]}/authenticate",
        headers=auth, data={"outcome": v.get("outcome", "succeed")})


async def main():
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(timeout=30.0) as client:
        for name, kind in SCHEDULE["users"].items():
            r = await client.post(f"{TARGET_URL}/v1/users", headers=admin, json={"kind": kind})
            r.raise_for_status()
            users[name] = r.json()
            print(f"user {name} ({kind}): id {users[name]['id']}")
        for step in SCHEDULE["steps"]:
            if "batch" in step:
                print(f"-- {len(step['batch'])} requests at once")
                for line in await asyncio.gather(*(send(client, op) for op in step["batch"])):
                    print(line)
            elif "settle" in step or "pause_ms" in step:
                await asyncio.sleep(SETTLE_S if "settle" in step else step["pause_ms"] / 1000)
            elif "policy" in step and PROVIDER_URL and PROVIDER_KEY:
                await client.put(f"{PROVIDER_URL}/_tokenchaos/policy", json=step["policy"],
                                 headers={"Authorization": f"Bearer {PROVIDER_KEY}"})
        await asyncio.sleep(SETTLE_S)
        for name in users:
            r = await client.get(f"{TARGET_URL}/v1/me", headers=user_headers(name, None))
            print(f"{name}: {r.text}")
        r = await client.get(f"{TARGET_URL}/v1/audit/totals", headers=admin)
        print(f"audit totals: {r.text}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
'''
