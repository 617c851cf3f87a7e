"""A second token service, written for the tests, shaped unlike the reference service.

Starlette alone (no FastAPI), psycopg's blocking API in a thread pool, its own schema
(``schema.sql``), its own prices, an API key without a scheme, client keys in the body,
no idempotency on tips, string balances, and staging-token provisioning. Its profile is
``foreign.toml``; ``flaws.FLAWS`` are bugs written into it, each one replacement of one
operation; ``stack.foreign_stack`` runs it for a test.
"""
