"""A local DEX aggregator: the 0x Swap API v2 (AllowanceHolder) over the world's Uniswap pools.

Quotes come from QuoterV2, calldata targets the SwapRouter (single tier or a split across
tiers as one ``multicall``), and faults can be injected for tests and the demo. Run it with
``python -m keeper.aggsvc --rpc-url URL --manifest PATH --host 127.0.0.1 --port N`` or
in-process with ``create_app`` / ``start_in_background``.
"""

from keeper.aggsvc.app import MODES, create_app
from keeper.aggsvc.background import BackgroundService, start_in_background
from keeper.aggsvc.config import ServiceConfig, config_from_manifest

__all__ = [
    "MODES",
    "BackgroundService",
    "ServiceConfig",
    "config_from_manifest",
    "create_app",
    "start_in_background",
]
