"""A token service written for the tests, shaped like the seed's Express API.

The paths, bodies, answers, tables and PaymentIntent metadata of the seed's hardened API
(``harness/targets/seed.toml`` is its profile): Bearer tokens of existing users, a
``clientIdempotencyKey`` in the body of purchases and none on tips or call deductions,
BIGINT balances answered as JSON strings (as node-postgres reads them), credits only by the
``payment_intent.succeeded`` webhook, once per intent, and refunds clawed back into debt.
Users are created in its database directly (``stack.seedlike_stack``), as the seed has no
API for them, and listed in a users file.
"""
