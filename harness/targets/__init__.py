"""How to talk to one deployment: profiles, transports, observers and provisioning.

``profile`` loads a TOML target profile (``reference.toml`` and ``seed.toml`` ship here);
``http_async`` runs the sans-IO flows of ``harness.protocol`` over ``http_pool`` (the
ops: keep-alive HTTP/1.1, bytes from ``http_wire``) or httpx (the control plane); ``observers``
read the end state (admin HTTP or read-only SQL); ``provisioning`` creates or looks up
the scenario's users; ``session`` bundles all of it for the runner. Nothing in this
package judges what a target answers: that is the checkers' work.
"""

__all__: list[str] = []
