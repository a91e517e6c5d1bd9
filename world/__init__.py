"""The local world: deploy the contracts and real Uniswap V3, write and read the manifest.

``world.manifest`` and ``world.blackscholes`` (over keeper.core.greeks) are pure;
``deploy_world`` needs Ape and is imported lazily so that reading a manifest does not
import Ape.
"""

from __future__ import annotations

from typing import Any

from world.manifest import Deployed, DeployedVault, Manifest, load_manifest, manifest_path

__all__ = [
    "Deployed",
    "DeployedVault",
    "Manifest",
    "deploy_world",
    "load_manifest",
    "manifest_path",
]


def deploy_world(*args: Any, **kwargs: Any) -> Manifest:
    """See ``world.deploy.deploy_world``."""
    from world.deploy import deploy_world as _deploy_world

    return _deploy_world(*args, **kwargs)
