"""Write anvil's state to a file that another anvil can start from (`anvil --load-state`)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

GZIP_MAGIC = b"\x1f\x8b"


def decode_dump(result: str) -> dict[str, Any]:
    """anvil_dumpState answers hex of (usually gzipped) JSON; return the JSON object."""
    raw = bytes.fromhex(result.removeprefix("0x"))
    if raw.startswith(GZIP_MAGIC):
        raw = gzip.decompress(raw)
    state = json.loads(raw)
    if not isinstance(state, dict) or "accounts" not in state:
        raise ValueError("anvil_dumpState did not return a state object")
    return state


def strip_step_traces(state: dict[str, Any]) -> dict[str, Any]:
    """Drop the opcode-level steps from the stored call traces, in place.

    Ape starts anvil with step tracing, which makes a world dump about 130 MB; without the
    steps it is well under 1 MB. Transactions, receipts, logs and call trees are kept.
    """
    for tx in state.get("transactions") or []:
        for node in (tx.get("info") or {}).get("traces") or []:
            trace = node.get("trace") or {}
            trace["steps"] = []
            node["ordering"] = [item for item in node.get("ordering", []) if "Step" not in item]
    return state


def dump_anvil_state(provider: Any, path: Path) -> Path:
    """Ask the provider for ``anvil_dumpState`` and write the JSON state to ``path``."""
    state = strip_step_traces(decode_dump(provider.make_request("anvil_dumpState", [])))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)
    return path
