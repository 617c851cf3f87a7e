"""What every key of a target profile means: the tables the README's profile chapter is made of.

``PROFILE_KEYS`` lists every key a profile may hold, by section, with its meaning and its
default (``None``: required). ``TEMPLATE_VARIABLE_MEANINGS`` and ``RESULT_KEY_MEANINGS``
explain the names of ``profile.TEMPLATE_VARIABLES`` and ``profile.RESULT_KEYS``;
``OBSERVER_FIELDS`` says what each observed column is and which checkers need it. A key
the parser accepts must have a row here (a unit test probes the parser for its keys), so
whoever adds a key to ``profile.py`` adds its row here too, and ``harness.profile_docs``
renders the chapter from it.

Data only: nothing here parses, validates or does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "OBSERVER_FIELDS",
    "OP_LEFT_OUT",
    "PROFILE_KEYS",
    "RESULT_KEY_MEANINGS",
    "TEMPLATE_VARIABLE_MEANINGS",
    "TOTALS_FIELDS",
    "ObserverField",
    "ProfileKey",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileKey:
    """One key of a profile section."""

    section: str  # as written in TOML: "target", "ops.<op>", "observer.account", ...
    key: str
    meaning: str
    default: str | None = None  # how the default reads in the docs; None: required
    when: str | None = None  # only in this variant of the section: 'mode = "http"'


@dataclass(frozen=True, slots=True, kw_only=True)
class ObserverField:
    """One column (SQL) or field (admin HTTP) the observer reads per account, or in totals."""

    name: str
    meaning: str
    needed_by: tuple[str, ...]  # checkers that need it
    without: str  # what happens when the observer does not give it


_OPS = "ops.<op>"
_HTTP = 'mode = "http"'
_FILE = 'mode = "file"'
_SQL = 'kind = "sql"'
_ADMIN = 'kind = "admin_http"'

PROFILE_KEYS: tuple[ProfileKey, ...] = (
    # [target]
    ProfileKey(section="target", key="name", meaning="The profile's name, in reports."),
    ProfileKey(section="target", key="base_url", default="(base_url_env must then be set)",
               meaning="Where the service answers, e.g. `http://127.0.0.1:8000`."),
    ProfileKey(section="target", key="base_url_env", default="none",
               meaning="An environment variable that overrides `base_url` when set."),
    ProfileKey(section="target", key="admin_key", default="none",
               meaning="The key of admin calls (HTTP provisioning, the admin observer), sent "
                       "as `[auth]` says. Prefer `admin_key_env`."),
    ProfileKey(section="target", key="admin_key_env", default="none",
               meaning="An environment variable holding the admin key."),
    ProfileKey(section="target", key="health_path", default="none (no health check)",
               meaning="A GET path that answers 2xx when the service is up; checked before "
                       "anything else."),
    ProfileKey(section="target", key="environment", default="none (loopback only)",
               meaning='`local`, `staging` or `production`. Only `staging` lets a run load '
                       "an address that is not loopback; `production` is always refused."),
    # [auth]
    ProfileKey(section="auth", key="header", default='"Authorization"',
               meaning="The header carrying a user's token."),
    ProfileKey(section="auth", key="scheme", meaning=(
        'The word before the token (`"Bearer"`, `"Token"`, ...), or `"none"` to send the '
        "bare token (`X-Api-Key: <token>`). Required: leaving it out is an error that says "
        "which to write.")),
    # [metadata]
    ProfileKey(section="metadata", key="user_key",
               meaning="The PaymentIntent metadata key your service sets to the user's id."),
    ProfileKey(section="metadata", key="tokens_keys",
               meaning="The metadata keys whose values add up to the tokens an intent mints "
                       '(e.g. `["tokenAmount", "bonusTokens"]`).'),
    # [responses]
    ProfileKey(section="responses", key="error_code_path", default="none",
               meaning="Dotted path of the error code in an error body (`error.code`); used "
                       "by `fail_by_code` and kept with 5xx answers."),
    # [ops.<op>]
    ProfileKey(section=_OPS, key="method", default='"POST"', meaning="The HTTP method."),
    ProfileKey(section=_OPS, key="path", meaning=(
        "The path template, from the base URL: `/v1/calls/{call_id}/charges`. Variables are "
        "URL-quoted.")),
    ProfileKey(section=_OPS, key="body", default="none (no body)", meaning=(
        'The JSON body template. A string that is exactly `"{name}"` keeps the variable\'s '
        'type; `"{name:int}"` and `"{name:str}"` convert it.')),
    ProfileKey(section=_OPS, key="headers", default="{}",
               meaning="Extra headers, name to text template."),
    ProfileKey(section=_OPS, key="idempotency", default="none (no key is sent)", meaning=(
        'How the op carries its idempotency key: `{ header = "Idempotency-Key" }`, '
        '`{ body = "clientKey" }` (a top-level body field) or `"none"`. With `"none"` the '
        'op is sent once, without a key, and its retries are "not run for this target".')),
    ProfileKey(section=_OPS, key="idempotency_header", default="none", meaning=(
        'The older spelling of `idempotency = { header = "..." }`; still accepted.')),
    ProfileKey(section=_OPS, key="replay", default="none", meaning=(
        "How an OK answer says it was a replay or a no-op, so it is not counted as applied "
        'again: `{ header = "Idempotent-Replayed", equals = "true" }` or '
        "`{ body = \"billed\", equals = false }` (a dotted path and its JSON value).")),
    ProfileKey(section=_OPS, key="status_ok", default="any 2xx for `webhook`; else required",
               meaning="The statuses that mean the op happened, e.g. `[200, 201]`."),
    ProfileKey(section=_OPS, key="status_fail", default="any 4xx for `webhook`; else {}",
               meaning='The statuses that mean it surely did not, each with an error code: '
                       '`{ 402 = "insufficient_funds", 409 = "idempotency_conflict" }`. Any '
                       "status in neither list, and every 5xx, is indeterminate (INFO)."),
    ProfileKey(section=_OPS, key="fail_by_code", default="{}", meaning=(
        "Refines a FAIL by the body's error code (at `error_code_path`): "
        '`{ idempotency_key_reused = "idempotency_conflict" }`.')),
    ProfileKey(section=_OPS, key="result", default="{} (some ops require keys)", meaning=(
        "Where each result sits in an OK body, result key to dotted path "
        '(`{ intent_id = "paymentIntent.id" }`); see the result keys below.')),
    # [provisioning]
    ProfileKey(section="provisioning", key="mode",
               meaning='`"http"`: one admin call creates each user; `"file"`: existing users '
                       "from a JSON file."),
    ProfileKey(section="provisioning", key="method", default='"POST"', when=_HTTP,
               meaning="The method of the creation call."),
    ProfileKey(section="provisioning", key="path", when=_HTTP,
               meaning="The path of the creation call."),
    ProfileKey(section="provisioning", key="body", default="none", when=_HTTP, meaning=(
        "The body template of the creation call; variables `{kind}` (`fan` or `creator`) "
        "and `{name}` (the logical name).")),
    ProfileKey(section="provisioning", key="headers", default="{}", when=_HTTP, meaning=(
        'Extra headers of the creation call; `"{env:NAME}"` is the value of the environment '
        "variable NAME, read when the profile loads (missing: an error naming it).")),
    ProfileKey(section="provisioning", key="kinds", default="none", when=_HTTP, meaning=(
        "A table per user kind merged into the body: "
        "`{ fan = { isCreator = false }, creator = { isCreator = true } }`.")),
    ProfileKey(section="provisioning", key="status_ok", default="[200, 201]", when=_HTTP,
               meaning="The statuses of a successful creation."),
    ProfileKey(section="provisioning", key="id", when=_HTTP,
               meaning="Dotted path of the new user's id in the answer."),
    ProfileKey(section="provisioning", key="token", when=_HTTP,
               meaning="Dotted path of the new user's token in the answer."),
    ProfileKey(section="provisioning", key="users_file", when=_FILE,
               default="(users_file_env must then be set)", meaning=(
                   'A JSON file `{"users": [{"id", "token", "kind"}, ...]}`, relative to '
                   "the profile. Each scenario takes users of its own; a file with too few "
                   "is an error that says how many of each kind the run needs.")),
    ProfileKey(section="provisioning", key="users_file_env", default="none", when=_FILE,
               meaning="An environment variable naming the users file (overrides it)."),
    # [pricing]
    ProfileKey(section="pricing", key="cents_per_token", default="5", meaning=(
        "The list price of one token in cents, for the tokens' share of a partial refund.")),
    ProfileKey(section="pricing", key="packages", default="the reference service's", meaning=(
        "The packages the service sells: `[{ tokens = 100, cents = 500 }, { tokens = 5000, "
        "cents = 25000, bonus_tokens = 250, name = \"mega\" }]`. Every scenario draws its "
        "amounts from them; `bonus_tokens` (default 0) are minted on top, `name` is the "
        "service's own name of the bundle.")),
    # [faults]
    ProfileKey(section="faults", key="kill", default="none (kill_service is not run)", meaning=(
        "The command that kills the service, as an argv list run without a shell "
        '(`["kubectl", "delete", "pod", "-l", "app=tokens", "--wait=false"]`; write '
        '`["sh", "-c", "..."]` for a shell line), in the profile\'s folder. The '
        "`kill_service` fault runs it; its heal runs `restart`, so the two come together.")),
    ProfileKey(section="faults", key="restart", default="none", meaning=(
        "The command that starts the killed service again (an argv list); then the harness "
        "waits until `[target] health_path` answers 2xx, so that key is required.")),
    ProfileKey(section="faults", key="pause", default="none (pause_service is not run)",
               meaning=(
        "The command that stalls the service without killing it (`[\"docker\", \"pause\", "
        "\"tokens\"]`, or `kill -STOP`); `pause_service` runs it, its heal runs `resume`, "
        "so the two come together.")),
    ProfileKey(section="faults", key="resume", default="none", meaning=(
        "The command that lets the stalled service go on; then the harness waits for "
        "`[target] health_path` as after `restart`.")),
    ProfileKey(section="faults", key="command_timeout_s", default="60 (at most 600)", meaning=(
        "How long one command may run; one that takes longer is killed (with its process "
        "group), and a command that exits non-zero or times out fails the fault with its "
        "exit code and the end of its stderr. Only with a command.")),
    ProfileKey(section="faults", key="recover_timeout_s", default="60 (at most 600)", meaning=(
        "How long to wait for the health check after `restart` or `resume`; only with one "
        "of them.")),
    ProfileKey(section="faults", key="toxiproxy", default="none (no link faults)", meaning=(
        "Table `[faults.toxiproxy]`: a running Toxiproxy that sits on your service's links, "
        "for link faults (latency, reset_peer, down, ...).")),
    ProfileKey(section="faults.toxiproxy", key="url", default="(url_env must then be set)",
               meaning="Toxiproxy's API, e.g. `http://127.0.0.1:8474`."),
    ProfileKey(section="faults.toxiproxy", key="url_env", default="none",
               meaning="An environment variable that overrides `url` when set."),
    ProfileKey(section="faults.toxiproxy", key="service", default="none", meaning=(
        "The proxy's name between the harness and the service (the API calls).")),
    ProfileKey(section="faults.toxiproxy", key="webhooks", default="none", meaning=(
        "The proxy's name between the payment provider and the service (webhook "
        "deliveries).")),
    ProfileKey(section="faults.toxiproxy", key="database", default="none", meaning=(
        "The proxy's name between the service and its database. At least one of the three "
        "names is required; a link without one is not faulted.")),
    # [observer]
    ProfileKey(section="observer", key="kind",
               meaning='`"admin_http"` (admin endpoints) or `"sql"` (read-only SQL).'),
    ProfileKey(section="observer", key="accounts_path", when=_ADMIN,
               meaning="GET path listing accounts."),
    ProfileKey(section="observer", key="accounts_list", default='"" (the body is the list)',
               when=_ADMIN, meaning="Dotted path of the list in that answer."),
    ProfileKey(section="observer", key="account", when=_ADMIN, meaning=(
        "Table `[observer.account]`: observer field to dotted path in one item; `user_id` "
        "and `balance_tokens` are required (fields below).")),
    ProfileKey(section="observer", key="totals_path", default="none", when=_ADMIN,
               meaning="GET path of the service's own totals."),
    ProfileKey(section="observer", key="totals", default="{}", when=_ADMIN, meaning=(
        "Table `[observer.totals]`: total to dotted path; all five when `totals_path` is "
        "given.")),
    ProfileKey(section="observer", key="statuses", default="{} (statuses taken as written)",
               meaning=(
                   'The service\'s status words in the harness\'s: `{ OWING = "debt", OK = '
                   '"active" }`; a word it does not name is not judged. Needs a word for '
                   "`debt`.")),
    ProfileKey(section="observer", key="system_accounts", default="{}", meaning=(
        'Accounts outside the scenario\'s users that are read too, where fees go: `{ '
        'platform = "acct_platform" }` (logical name to the account\'s id; `{env:NAME}` '
        "parts read from the environment). Their change during a scenario is judged, so "
        "nothing else may pay into them during a run.")),
    ProfileKey(section="observer", key="headers", default="{}", when=_ADMIN,
               meaning="Extra headers of the admin GETs, beside the admin key; `{env:NAME}` "
                       "parts are read from the environment."),
    ProfileKey(section="observer", key="database_url", default="none", when=_SQL,
               meaning="A read-only connection string. Prefer `database_url_env`."),
    ProfileKey(section="observer", key="database_url_env", default="none", when=_SQL,
               meaning="An environment variable holding it (`--database-url` overrides)."),
    ProfileKey(section="observer", key="accounts_query", when=_SQL, meaning=(
        "One row per account, columns named as the observer fields below; "
        "`%(user_ids)s` is the list of the ids of the scenario's users and of the system "
        "accounts, as text. Runs in a READ "
        "ONLY transaction.")),
    ProfileKey(section="observer", key="totals_query", default="none", when=_SQL,
               meaning="One row with the five totals columns."),
    ProfileKey(section="observer", key="balances_table", default="none (schema not checked)",
               when=_SQL, meaning=(
                   "The table holding balances (`schema.table` allowed), for the schema "
                   "check. The four schema keys come together or not at all.")),
    ProfileKey(section="observer", key="balance_column", default="none", when=_SQL,
               meaning="Its balance column: must be BIGINT with CHECK (balance >= 0)."),
    ProfileKey(section="observer", key="intents_table", default="none", when=_SQL,
               meaning="The table holding one row per payment intent."),
    ProfileKey(section="observer", key="intent_column", default="none", when=_SQL, meaning=(
        "Its intent id column: must be UNIQUE by a constraint or index that is not "
        "DEFERRABLE (PostgreSQL refuses a deferrable one as an ON CONFLICT arbiter).")),
    # [settle]
    ProfileKey(section="settle", key="mode", default="no [settle]: observed once delivered",
               meaning=(
                   '`"pending"`: GET `path` until the count at `pending` is 0; `"stable"`: '
                   "read the end state until it stops changing. For a service that applies "
                   "webhooks or other work later: asked before every observation, and a "
                   "service still unsettled at `timeout_s` is not judged on its end state.")),
    ProfileKey(section="settle", key="path", when='mode = "pending"',
               meaning="GET path (admin key and `headers` sent) of the pending count."),
    ProfileKey(section="settle", key="pending", when='mode = "pending"',
               meaning='Dotted path of the count in its JSON answer, e.g. "inbox.pending".'),
    ProfileKey(section="settle", key="headers", default="{}", when='mode = "pending"',
               meaning="Extra headers; `{env:NAME}` parts are read from the environment."),
    ProfileKey(section="settle", key="stable_ms", default="1000", when='mode = "stable"',
               meaning="How long the end state must stay unchanged (10 to 60000)."),
    ProfileKey(section="settle", key="interval_ms", default="100",
               meaning="Time between polls (10 to 10000)."),
    ProfileKey(section="settle", key="timeout_s", default="30",
               meaning="The longest wait (0.1 to 600); the wait is in each scenario's stats "
                       "(`settle_wait_ms`, `settle_polls_count`, `settle_timeouts_count`)."),
    # [fees.tip], [fees.call_charge]
    ProfileKey(section="fees.<op>", key="account", meaning=(
        "The system account that receives the fee: one of `[observer] system_accounts`. "
        "The payer pays the whole amount; the payee receives it less the fee.")),
    ProfileKey(section="fees.<op>", key="percent", when='percent = ...', meaning=(
        'The fee as a percentage of the amount, more than 0 and less than 100 (`20`, `2.5` '
        'or `"2.5"`).')),
    ProfileKey(section="fees.<op>", key="rounding", default='"down"', when='percent = ...',
               meaning=(
        'How a fractional fee becomes whole tokens: `"down"`, `"up"`, `"half_up"`, '
        '`"half_even"`. A recipient who gets floor(80%) pays a 20% fee rounded `"up"`.')),
    ProfileKey(section="fees.<op>", key="fixed_tokens", when='fixed_tokens = ...', meaning=(
        "Instead of `percent`: the same fee on every op, never more than its amount.")),
)

TEMPLATE_VARIABLE_MEANINGS: Mapping[str, str] = {
    "user": "the acting user's logical name (`fan_0`)",
    "user_id": "the acting user's id on the target",
    "sender": "the tipping user's logical name",
    "sender_id": "the tipping user's id",
    "recipient": "the tipped user's logical name",
    "recipient_id": "the tipped user's id",
    "creator": "the creator's logical name",
    "creator_id": "the creator's id",
    "purchase": "the purchase's logical name (`p_3`)",
    "amount_tokens": "the tokens of the op (a package size for a purchase)",
    "package": "the service's own name of the package a purchase buys (its `[pricing]` "
               "package's `name`, which every package then needs): for a service that sells "
               "named bundles",
    "payment_method": "the provider's test payment method (`pm_card_visa`, ...)",
    "idempotency_key": "the op's idempotency key (a retry sends the same one)",
    "call": "the call's logical name (`c_1`)",
    "call_id": "the id the target gave the call in `call_open`'s answer (so a profile "
               "using it needs `[ops.call_open]` with `result.call_id`)",
    "rate_tokens_per_minute": "the call's price per minute",
    "minute": "the call minute charged, from 1",
    "kind": "`fan` or `creator` (provisioning)",
    "name": "the user's logical name (provisioning)",
}

RESULT_KEY_MEANINGS: Mapping[str, str] = {
    "intent_id": "the provider's PaymentIntent id (`pi_...`); required for `purchase`",
    "purchase_status": "the intent's status as the service saw it (`requires_action`: 3-D "
                       "Secure is tested)",
    "tip_id": "the service's id of the tip",
    "balance_tokens": "the acting user's balance after the op (read back, checked by "
                      "`non_negative` and `reconciliation`); required for `read_balance`",
    "debt_tokens": "what the user owes after a clawback",
    "status": "the account's status (`debt` when it owes)",
    "call_id": "the call's id, used by `{call_id}` later; required for `call_open`",
    "charge_id": "the service's id of the minute's charge",
}

OBSERVER_FIELDS: tuple[ObserverField, ...] = (
    ObserverField(name="user_id", meaning="the account's id, as provisioning gave it "
                  "(compared as text); required", needed_by=("every checker",),
                  without="the observer is refused when the profile loads"),
    ObserverField(name="balance_tokens", meaning="the balance at the end; required",
                  needed_by=("non_negative", "conservation", "reconciliation",
                             "exactly_once_credit", "refunds"),
                  without="the observer is refused when the profile loads"),
    ObserverField(name="debt_tokens", meaning="what the account owes after clawbacks "
                  "(default 0)", needed_by=("non_negative", "conservation", "reconciliation",
                                            "refunds", "debt"),
                  without="read as 0: a service that records debt elsewhere looks like it "
                          "lost the shortfall"),
    ObserverField(name="status", meaning="the account's status (`debt` when it owes, else "
                  "`active`; `[observer] statuses` maps the service's own words)",
                  needed_by=("debt",),
                  without="`debt` judges balances and debts only, not the status"),
    ObserverField(name="ledger_sum_tokens", meaning="the sum of the account's ledger entries",
                  needed_by=("ledger_drift",), without="`ledger_drift` is unknown"),
    ObserverField(name="credited_tokens", meaning="tokens credited by purchases, all time "
                  "(gross: before clawbacks)", needed_by=("exactly_once_credit", "refunds"),
                  without="`exactly_once_credit` judges only accounts that made no tip or "
                          "call charge, and is unknown for the others"),
    ObserverField(name="clawed_back_tokens", meaning="tokens taken back by refunds and "
                  "disputes, all time", needed_by=("refunds",),
                  without="`refunds` infers clawbacks from credited minus the net change, "
                          "only for accounts without transfers"),
)

TOTALS_FIELDS: tuple[ObserverField, ...] = (
    ObserverField(name="minted_tokens", meaning="tokens ever credited by payments",
                  needed_by=("conservation",), without="(all five come together)"),
    ObserverField(name="clawed_back_tokens", meaning="tokens ever taken back",
                  needed_by=("conservation",), without="(all five come together)"),
    ObserverField(name="balances_tokens", meaning="the sum of all balances",
                  needed_by=("conservation",), without="(all five come together)"),
    ObserverField(name="debts_tokens", meaning="the sum of all debts",
                  needed_by=("conservation",), without="(all five come together)"),
    ObserverField(name="drift_accounts_count", meaning="accounts whose balance differs from "
                  "their ledger, by the service's own audit", needed_by=("ledger_drift",),
                  without="(all five come together)"),
)

# What leaving an op kind out of ``[ops]`` means. Every op of a kind the profile lacks is
# skipped (never sent, counted as skipped in run.json); the scenarios that need it say so.
OP_LEFT_OUT: Mapping[str, str] = {
    "purchase": "nothing can be funded; every scenario buys tokens first, so leave it out "
                "only for a service that sells none",
    "tip": "tips are not sent; scenarios built on tips are not run for this target",
    "call_open": "calls have no id of their own: `call_charge` may not use `{call_id}`",
    "call_charge": "call minutes are not charged; call scenarios are not run",
    "call_end": "calls are not ended",
    "read_balance": "balances are never read back during the run: checkers judge from the "
                    "end state alone, and reads that would catch a transient negative "
                    "balance are not made",
    "webhook": "the harness sends no webhook itself: forged and replayed webhooks are not "
               "tested (the provider's own deliveries still are)",
}
