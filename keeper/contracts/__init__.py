"""The compiled ABIs the keeper speaks, shipped as package data (``abi/*.json``).

They are written by ``tools/export_abi.py`` from ``ape compile``'s build and the Uniswap V3
npm artifacts; a unit test fails when they differ from a fresh build. A runtime install
without Ape reads them from here. Nothing in the keeper spells a signature by hand: see
:mod:`keeper.core.abi` for the selectors, topics, errors and layouts derived from them.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from keeper.errors import FatalError

ABI_DIR = Path(str(resources.files(__package__) / "abi"))

Abi = list[dict[str, Any]]


def render_abi(abi: Abi) -> str:
    """The canonical text of an ABI file (sorted keys, one entry per line, trailing newline)."""
    entries = sorted(abi, key=lambda e: (e.get("type", ""), e.get("name", "")))
    body = ",\n".join(json.dumps(e, sort_keys=True, separators=(",", ":")) for e in entries)
    return f"[\n{body}\n]\n"


@cache
def load_abi(name: str) -> tuple[dict[str, Any], ...]:
    """The shipped ABI of contract ``name`` (``FatalError`` if it is not shipped)."""
    path = ABI_DIR / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise FatalError(f"no shipped ABI for {name} (run tools/export_abi.py)") from exc
    if not isinstance(data, list):
        raise FatalError(f"{path} is not an ABI list")
    return tuple(data)


def shipped() -> tuple[str, ...]:
    """Names of every shipped ABI."""
    return tuple(sorted(p.stem for p in ABI_DIR.glob("*.json")))
