"""The transaction lifecycle: journal, nonces, sign, broadcast, confirm, replace, cancel,
reconcile (``Lifecycle``; the state table is in ``keeper.tx.lifecycle``)."""

from keeper.tx.confirm import ConfirmConfig, Confirmer, LifecycleReport, Receipt
from keeper.tx.lifecycle import (
    Lifecycle,
    LifecycleConfig,
    Prepared,
    Refusal,
    Refused,
    SubmitOutcome,
    Submitted,
)
from keeper.tx.stuck import Redecide, Urgent, Verdict

__all__ = [
    "ConfirmConfig",
    "Confirmer",
    "Lifecycle",
    "LifecycleConfig",
    "LifecycleReport",
    "Prepared",
    "Receipt",
    "Redecide",
    "Refusal",
    "Refused",
    "SubmitOutcome",
    "Submitted",
    "Urgent",
    "Verdict",
]
