"""Shrinking a failing scenario to the fewest concurrent requests that still break it.

``ddmin`` is the pure delta debugging over a schedule of batches; ``replay`` rebuilds a
failing scenario's schedule from its run and asks a target whether each candidate still
fails; ``writers`` turns the result into a pytest file and a plain httpx script.
"""

from harness.shrink.ddmin import Candidate, ShrinkResult, ops_count, shrink_flow, shrink_sync

__all__ = ["Candidate", "ShrinkResult", "ops_count", "shrink_flow", "shrink_sync"]
