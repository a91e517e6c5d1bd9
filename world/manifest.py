"""The deployment manifest (docs/interfaces.md): what was deployed where, as JSON.

Pure: no Ape, no provider. ``Manifest.to_json`` / ``load_manifest`` round-trip exactly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_ENV = "OPTKEEPER_MANIFEST"
DEPLOYMENTS_DIR = Path(__file__).resolve().parent.parent / "deployments"

CONTRACT_NAMES = (
    "Multicall3",
    "VaultRegistry",
    "BookSettlement",
    "WETH",
    "USDC",
    "PriceFeed",
    "UniswapV3Factory",
    "SwapRouter",
    "QuoterV2",
    "NonfungiblePositionManager",
    "PoolFee500",
    "PoolFee3000",
)


class ManifestFormatError(ValueError):
    """The manifest file is not in the documented shape."""


@dataclass(frozen=True)
class Deployed:
    """One deployed contract: its address and the keccak of its runtime code."""

    address: str
    codehash: str


@dataclass(frozen=True)
class DeployedVault:
    name: str
    address: str
    codehash: str


@dataclass(frozen=True)
class Manifest:
    chain_id: int
    block_number: int
    block_hash: str
    deployer: str
    governance: str
    keeper: str
    contracts: dict[str, Deployed] = field(default_factory=dict)
    vaults: tuple[DeployedVault, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "block_number": self.block_number,
            "block_hash": self.block_hash,
            "deployer": self.deployer,
            "governance": self.governance,
            "keeper": self.keeper,
            "contracts": {
                name: {"address": c.address, "codehash": c.codehash}
                for name, c in self.contracts.items()
            },
            "vaults": [
                {"name": v.name, "address": v.address, "codehash": v.codehash} for v in self.vaults
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def vault(self, name: str) -> DeployedVault:
        """The vault called ``name``; KeyError if there is none."""
        for vault in self.vaults:
            if vault.name == name:
                return vault
        raise KeyError(name)


def manifest_path(name: str = "world") -> Path:
    """Where the manifest goes: ``$OPTKEEPER_MANIFEST`` if set, else deployments/<name>.json."""
    override = os.environ.get(MANIFEST_ENV)
    return Path(override) if override else DEPLOYMENTS_DIR / f"{name}.json"


def write_manifest(manifest: Manifest, path: Path) -> Path:
    """Write atomically (temp file + rename) so a reader never sees half a manifest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(manifest.to_json())
    tmp.replace(path)
    return path


def manifest_from_dict(data: dict[str, Any]) -> Manifest:
    """Parse the documented JSON shape; ManifestFormatError names what is missing."""
    try:
        contracts = {
            str(name): Deployed(address=str(c["address"]), codehash=str(c["codehash"]))
            for name, c in data["contracts"].items()
        }
        vaults = tuple(
            DeployedVault(
                name=str(v["name"]), address=str(v["address"]), codehash=str(v["codehash"])
            )
            for v in data["vaults"]
        )
        return Manifest(
            chain_id=int(data["chain_id"]),
            block_number=int(data["block_number"]),
            block_hash=str(data["block_hash"]),
            deployer=str(data["deployer"]),
            governance=str(data["governance"]),
            keeper=str(data["keeper"]),
            contracts=contracts,
            vaults=vaults,
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ManifestFormatError(f"malformed manifest: {exc!r}") from exc


def load_manifest(path: str | os.PathLike[str] | None = None) -> Manifest:
    """Read a manifest; with no path, the one ``manifest_path()`` names."""
    source = Path(path) if path is not None else manifest_path()
    try:
        data = json.loads(source.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestFormatError(f"{source}: not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestFormatError(f"{source}: top level is not an object")
    return manifest_from_dict(data)
