"""The README's "Your own service" chapter, rendered from the code's own tables.

Every profile key (``profile_keys.PROFILE_KEYS``), every template variable of every op
(``profile.TEMPLATE_VARIABLES``), every result key (``profile.RESULT_KEYS``), every
observer field and the checkers that need it (``profile_keys.OBSERVER_FIELDS``), what an
op kind left out means, what ``unknown`` means for a profile, and the doctor: so the
chapter cannot say something the code does not do. The block sits between
``<!-- profile:begin -->`` and ``<!-- profile:end -->``; a unit test fails when the README
differs from what this renders. Regenerate it with ``python -m harness.profile_docs``.

Pure, except ``update_readme`` (and ``main``), which rewrite the README file.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from harness.errors import UsageError
from harness.model import F
from harness.protocol import ACTOR_KEY
from harness.targets.profile import PROVISIONING_VARIABLES, RESULT_KEYS, TEMPLATE_VARIABLES
from harness.targets.profile_keys import (
    OBSERVER_FIELDS,
    OP_LEFT_OUT,
    PROFILE_KEYS,
    RESULT_KEY_MEANINGS,
    TEMPLATE_VARIABLE_MEANINGS,
    TOTALS_FIELDS,
    ObserverField,
    ProfileKey,
)

__all__ = ["README_BEGIN", "README_END", "readme_block", "render_chapter", "replace_block",
           "update_readme"]

README_BEGIN = "<!-- profile:begin -->"
README_END = "<!-- profile:end -->"

_INTRO = """\
## Your own service

A newcomer's path is: this chapter, then an example profile, then `tokenchaos doctor`,
then `tokenchaos run`. Copy `harness/targets/seed.toml` (an API shaped unlike ours: users
from a file, a SQL observer) or `harness/targets/reference.toml` (HTTP provisioning, an
admin observer), change what differs, and ask the doctor:

```sh
tokenchaos provider --webhook-url http://127.0.0.1:3000/api/payments/webhook
#   prints provider_url, provider_key, webhook_secret: give the secret to your service,
#   and point its Stripe API base at provider_url
TOKENCHAOS_PROVIDER_KEY=tck_... tokenchaos doctor --target my-service.toml \\
    --provider-url http://127.0.0.1:PORT [--target-url URL] [--database-url URL]
TOKENCHAOS_PROVIDER_KEY=tck_... tokenchaos run --target my-service.toml --provider-url ...
```

The doctor takes the same flags as `run`, and a remote address needs the same opt-in.
With two users (a fan and a creator) it provisions, reads a balance, buys the smallest
package and waits for the webhook's credit (and checks the intent's metadata against
`[metadata]`), tips, retries the tip with the same key, opens, charges and ends a call,
buys again and refunds that purchase through the provider, and reads the end state with
the observer; with an SQL observer it checks the schema first. For each step it prints
what was sent (secrets masked), what came back, how the profile read it (OK, FAIL, INFO)
and, marked MISSING, what the profile lacks, naming the key to change:
`result balance_tokens: path 'new_balance' is not in the answer {...}; the answer has keys
balance, charge_id; fix result.balance_tokens in [ops.call_charge]`. It exits 0 when the
profile can run the suite and 2 when it cannot; never 1, because it judges the profile,
not your service (what it notices about the service, such as an unexpected balance or a
schema defect, is printed as a note for `tokenchaos run` to judge).
"""

_SHAPES = """\
### Fees, late webhooks, named bundles

A correct service must pass clean however it was written; three common shapes need the
profile to say so (all of them are in `tests/foreign/foreign.toml`, whose service has each):

```toml
[observer]
# ... its queries, and the accounts outside the scenario's users that it must read too
system_accounts = { platform = "platform" }      # logical name = the account's id
statuses = { ok = "active", owing = "debt" }     # the service's status words in ours

[fees.tip]            # gifts carry a 20% fee: the recipient gets floor(0.8 n)
percent = 20
rounding = "up"       # of the fee; down, up, half_up or half_even
account = "platform"  # where the fee goes: one of system_accounts

[settle]              # webhooks answered 202 and applied later by a worker
mode = "pending"
path = "/admin/inbox"
pending = "inbox.pending"
headers = { "X-Staging-Token" = "{env:FOREIGN_STAGING_TOKEN}" }

[pricing]             # purchases by the service's own bundle names: send "{package}"
packages = [{ tokens = 1000, cents = 1000, name = "plus" }]
```

- **Fees.** The payer pays the whole amount, the payee receives it less the fee, and the
  system account the fee; every checker models the three legs, so a fee is never "tokens
  destroyed". The system account is read before and after every scenario and its change
  is judged: nothing but the run may pay into it meanwhile. A fee rule that rounds the
  wrong way (the recipient gets round(0.8 n) while the platform still takes its ceil)
  creates a token on every odd-sized tip, and conservation names it.
- **Late effects.** `[settle]` is asked before every observation (start, each `Settle`
  step, the end): `pending` polls a count until it is 0, `stable` reads the end state until
  it stops changing. A service that stays unsettled past `timeout_s` is not judged on its
  end state (unknown, exit 2), never a false alarm; the wait is in each scenario's stats.
  A count that says 0 too early shows as webhooks that never landed.
- **Bundles.** `{package}` in the purchase body sends the package's `name`; a profile that
  sends it must name every package.
"""

_UNKNOWN = """\
### What `unknown` means for a profile

A checker is `unknown` when the run gave it nothing to judge, and the run then exits 2,
never 0: the harness does not call untested code correct. For a profile that usually means
something is missing, not that your service is wrong: no observer (nearly every checker
needs the end state), no provider (`exactly_once_credit` and `refunds` need its truth), an
observer without `credited_tokens` (`exactly_once_credit` cannot judge an account that
also tipped or paid for calls), without `ledger_sum_tokens` (`ledger_drift`), or a
scenario whose ops were all skipped because an op kind is left out or an id path is
wrong (`coverage`: the outcome it exists to provoke never happened). What a profile
*declares* unsupported (an op kind left out, `idempotency = "none"`) is "not run for this
target" instead: listed in the console, run.json and the report, and not `unknown`. Run
`tokenchaos doctor` first: it names most of these before a run.
"""

_SCHEMA = """\
### The schema check (SQL observer)

With `[observer] kind = "sql"` and the four schema keys, every `tokenchaos run` (right
after the target answers its health check, before the first scenario) and `tokenchaos
doctor` check what a deployment guide asks operators to verify by hand: the balance
column is `BIGINT` (not `numeric`, a float or `integer`: the type found is named),
`CHECK (balance >= 0)` guards it, one row per payment intent is enforced by a unique
constraint or unique index on the intent column alone, and that constraint is not
`DEFERRABLE` (PostgreSQL refuses a deferrable one as an `ON CONFLICT` arbiter, so an
upsert on it fails on every call). Findings print first, in plain words. In a run they
join the verdicts as the run-level `schema` verdict (in the console summary, `run.json`,
the HTML report and a `schema` test case in `junit.xml`): a defect of the target's
storage breaks the run (exit 1); a table or column the profile names that is not there,
or a catalog that cannot be read, leaves it unknown (exit 2). The doctor reports a
defect as a note for you to fix and a missing table or column as a problem of the
profile (exit 2). Without the four keys the schema is not checked.
"""


_FAULTS = """\
### Faults by your own commands

The harness kills, pauses and restarts the local stack itself. For a service it does not
manage, `[faults]` names the commands that do it, as Jepsen's nemesis does; without them
`kill_service` and `pause_service` are "not run for this target", with the keys to add:

```toml
[target]
health_path = "/healthz"    # waited on after restart and resume

[faults]
kill = ["kubectl", "delete", "pod", "-l", "app=tokens", "--wait=false"]
restart = ["kubectl", "wait", "--for=condition=Ready", "pod", "-l", "app=tokens",
           "--timeout=120s"]
pause = ["docker", "pause", "tokens"]
resume = ["docker", "unpause", "tokens"]
command_timeout_s = 60
recover_timeout_s = 120
```

A fault's inject runs `kill` (or `pause`); its heal runs `restart` (or `resume`), then
waits until the health path answers 2xx. Each command is an argv list run without a
shell (`["sh", "-c", "..."]` if you need one), in the profile's folder, with the
harness's environment; one that exits non-zero or outlives `command_timeout_s` (it is
then killed with its process group) fails the fault, naming the exit code and the end of
its stderr. Database faults (terminated sessions, restart, crash) run only on the local
stack's own PostgreSQL.

### Faults through your own Toxiproxy

Link faults (latency, resets, a partition of the webhooks...) need a proxy on the link.
Run a [Toxiproxy](https://github.com/Shopify/toxiproxy) 2.x next to your staging service
and put a proxy on each link you want faulted: the harness's calls to the service, the
provider's webhook deliveries to it, and the service's connection to its database. For
example `toxiproxy-cli create -l 0.0.0.0:18080 -u service:8080 service`; then point the
profile's `base_url` at port 18080, the provider's webhook URL at a `webhooks` proxy, and
your service's database host at a `database` proxy. Name them in the profile:

```toml
[faults.toxiproxy]
url = "http://toxiproxy.staging:8474"   # or url_env = "TOXIPROXY_URL"
service = "service"
webhooks = "webhooks"
database = "database"
```

The same fault schedule that drives our own proxy on the local stack then drives yours.
The harness only adds and removes toxics and enables or disables the proxies it is told
of; it never creates or deletes them and never resets the whole server, so a Toxiproxy
shared with other tests is safe. A link with no proxy named has its faults "not run for
this target". Keep Toxiproxy's API port off the public network: it has no authentication.
"""


def render_chapter() -> str:
    """The whole chapter, as markdown. Pure."""
    parts = [_INTRO, _SHAPES, _keys_section(), _variables_section(), _results_section(),
             _observer_section(), _left_out_section(), _SCHEMA, _FAULTS, _UNKNOWN]
    return "\n".join(part.rstrip() + "\n" for part in parts).rstrip() + "\n"


def _keys_section() -> str:
    lines = ["### Every profile key", "",
             "Keys are grouped by table; \"required\" has no default. `ops.<op>` is one "
             "table per op kind: " + ", ".join(f"`{f.value}`" for f in TEMPLATE_VARIABLES)
             + ". A key the parser does not know is an error naming the known ones."]
    for section in _sections(PROFILE_KEYS):
        lines += ["", f"`[{section}]`", "", "| key | meaning | default |", "|---|---|---|"]
        for key in (k for k in PROFILE_KEYS if k.section == section):
            lines.append(f"| `{key.key}` | {_when(key)}{_cell(key.meaning)} | "
                         f"{_cell(key.default) if key.default is not None else 'required'} |")
    return "\n".join(lines)


def _variables_section() -> str:
    lines = ["### Template variables, per op", "",
             "A path, header or body template of an op may use these, and no others (a "
             "profile using another is refused when it loads). The token an op carries is "
             "the one of the user named in the last column.", "",
             "| op | variables | token of |", "|---|---|---|"]
    for f, names in TEMPLATE_VARIABLES.items():
        shown = ", ".join(f"`{{{name}}}`" for name in sorted(names)) or "(none: the "\
            "provider's envelope is posted as it is)"
        lines.append(f"| `{f.value}` | {shown} | {ACTOR_KEY.get(f, '-')} |")
    provisioning = ", ".join(f"`{{{name}}}`" for name in sorted(PROVISIONING_VARIABLES))
    lines.append(f"| provisioning | {provisioning} | the admin key |")
    lines += ["", "| variable | meaning |", "|---|---|"]
    used = set().union(*TEMPLATE_VARIABLES.values()) | PROVISIONING_VARIABLES
    lines += [f"| `{{{name}}}` | {_cell(TEMPLATE_VARIABLE_MEANINGS[name])} |"
              for name in sorted(used)]
    return "\n".join(lines)


def _results_section() -> str:
    lines = ["### Result keys, per op", "",
             "`result = { key = \"dotted.path\" }` says where an OK answer holds each "
             "result (`paymentIntent.id`, `items.0.id`). Counts of tokens may come as "
             "strings (`\"1200\"`).", "", "| op | result keys |", "|---|---|"]
    for f, keys in RESULT_KEYS.items():
        if keys:
            lines.append(f"| `{f.value}` | {', '.join(f'`{k}`' for k in sorted(keys))} |")
    lines += ["", "| result key | meaning |", "|---|---|"]
    every = sorted(set().union(*RESULT_KEYS.values()))
    lines += [f"| `{key}` | {_cell(RESULT_KEY_MEANINGS[key])} |" for key in every]
    return "\n".join(lines)


def _observer_section() -> str:
    lines = ["### Observer fields, and which checker needs each", "",
             "Per account (`[observer.account]` paths, or the columns of `accounts_query`):",
             *_field_table(OBSERVER_FIELDS), "",
             "The service's own totals (`[observer.totals]`, or one row of `totals_query`), "
             "optional, all five together:", *_field_table(TOTALS_FIELDS)]
    return "\n".join(lines)


def _field_table(fields: Sequence[ObserverField]) -> list[str]:
    lines = ["", "| field | meaning | needed by | without it |", "|---|---|---|---|"]
    for item in fields:
        needed = ", ".join(name if name == "every checker" else f"`{name}`"
                           for name in item.needed_by)
        lines.append(f"| `{item.name}` | {_cell(item.meaning)} | {needed} | "
                     f"{_cell(item.without)} |")
    return lines


def _left_out_section() -> str:
    lines = ["### An op kind left out", "",
             "An op kind the profile leaves out is never guessed: its ops are skipped and "
             "counted (`ops_skipped_count` in run.json and on the console), and what cannot "
             "run without it is reported as not run for this target.", "",
             "| left out | means |", "|---|---|"]
    lines += [f"| `[ops.{f.value}]` | {_cell(OP_LEFT_OUT[f.value])} |" for f in F
              if f.value in OP_LEFT_OUT]
    return "\n".join(lines)


def _sections(keys: Iterable[ProfileKey]) -> list[str]:
    seen: list[str] = []
    for key in keys:
        if key.section not in seen:
            seen.append(key.section)
    return seen


def _when(key: ProfileKey) -> str:
    return f"(with `{key.when}`) " if key.when else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------------------------------
# The README block.


def replace_block(text: str, markdown: str) -> str:
    """``text`` with the block between the profile markers replaced by ``markdown``.

    Raises:
        UsageError: the markers are missing, doubled, or out of order.
    """
    begin_count, end_count = text.count(README_BEGIN), text.count(README_END)
    if begin_count != 1 or end_count != 1:
        raise UsageError(f"the README must hold {README_BEGIN} and {README_END} once each "
                         f"(found {begin_count} and {end_count})")
    head, rest = text.split(README_BEGIN)
    if README_END not in rest:
        raise UsageError(f"the README has {README_END} before {README_BEGIN}; swap them")
    _, tail = rest.split(README_END)
    return f"{head}{README_BEGIN}\n{markdown.strip()}\n{README_END}{tail}"


def readme_block(text: str) -> str:
    """The text between the profile markers, without the newlines next to them."""
    replace_block(text, "")  # raises on missing or misplaced markers
    return text.split(README_BEGIN)[1].split(README_END)[0].strip("\n")


def update_readme(path: Path) -> bool:
    """Rewrite the profile chapter of the README at ``path``; whether its text changed."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file; run from the repository root")
    text = path.read_text(encoding="utf-8")
    updated = replace_block(text, render_chapter())
    if updated == text:
        return False
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(updated, encoding="utf-8")
    temporary.replace(path)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness.profile_docs [README.md]``: regenerate the chapter."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = Path(args[0] if args else "README.md")
    changed = update_readme(path)
    print(f"{path}: {'updated' if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
