"""tokenchaos: a concurrency test and chaos harness for token services.

The data flows scenario → ops → runner → target → history → observer → checkers →
verdict → report; each stage is a module of this package. What is exported here is the
data every stage shares, the bounds and the errors.
"""

from harness.errors import (
    ProviderError,
    ProvisioningFailed,
    StackError,
    TargetError,
    TargetUnreachable,
    TokenchaosError,
    UsageError,
)
from harness.limits import DEFAULT_LIMITS, Limits
from harness.model import (
    AccountState,
    Anomaly,
    Delivery,
    DeliveryVariant,
    Event,
    F,
    IntentTruth,
    Kind,
    Observation,
    Op,
    Outcome,
    ProviderTruth,
    Totals,
    Validity,
    Verdict,
    merge_validity,
)
from harness.provider.policy import DeliveryPolicy
from harness.scenario import Scenario, ScenarioParams
from harness.schedule import Batch, Pause, SetPolicy, Settle, Step

__all__ = [
    "DEFAULT_LIMITS",
    "AccountState",
    "Anomaly",
    "Batch",
    "Delivery",
    "DeliveryPolicy",
    "DeliveryVariant",
    "Event",
    "F",
    "IntentTruth",
    "Kind",
    "Limits",
    "Observation",
    "Op",
    "Outcome",
    "Pause",
    "ProviderError",
    "ProviderTruth",
    "ProvisioningFailed",
    "Scenario",
    "ScenarioParams",
    "SetPolicy",
    "Settle",
    "StackError",
    "Step",
    "TargetError",
    "TargetUnreachable",
    "TokenchaosError",
    "Totals",
    "UsageError",
    "Validity",
    "Verdict",
    "merge_validity",
]
