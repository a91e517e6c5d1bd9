"""Acting on decisions: size, gate on fees, route, simulate, batch, submit, verify."""

from keeper.act.actor import ActConfig, RebalanceActor
from keeper.act.redecide import batch_check, redecide_from
from keeper.act.wiring import build_actor

__all__ = ["ActConfig", "RebalanceActor", "batch_check", "build_actor", "redecide_from"]
