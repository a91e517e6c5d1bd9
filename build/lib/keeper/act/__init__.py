"""Acting on decisions: size, gate on fees, route, simulate, batch, send, confirm, verify."""

from keeper.act.actor import ActConfig, RebalanceActor
from keeper.act.stuck import batch_check, still_needed_for
from keeper.act.wiring import build_actor

__all__ = ["ActConfig", "RebalanceActor", "batch_check", "build_actor", "still_needed_for"]
