"""The payment-provider simulator: a Stripe-compatible API, its truth, and webhook chaos.

Modules, from the pure core outwards:

- ``policy``: how webhooks are delivered (plain data a scenario chooses);
- ``objects``, ``forms``: Stripe's object shapes, errors, ids and form encoding;
- ``state``, ``operations``: the in-memory state machine, the truth the checkers use;
- ``signing``, ``envelopes``: Stripe signatures and the forgeries a target must refuse;
- ``delivery``: the asyncio webhook dispatcher (the only module that sends webhooks);
- ``app``, ``server``: the ASGI app and how it is served; ``client``: the control API
  over HTTP; ``truth``: the control API's truth read into ``harness.model.ProviderTruth``.

Importing this package imports nothing heavy: ``harness.schedule`` needs only ``policy``.
"""

from __future__ import annotations

__all__: list[str] = []
