"""Synchronous helpers to drive the service's test hooks (``/_control``, ``/_stats``)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


def set_mode(
    base_url: str, mode: str, latency_seconds: float = 0.0, stall_seconds: float | None = None
) -> dict[str, Any]:
    """Switch the fault mode (and reset the service's counters)."""
    payload: dict[str, Any] = {"mode": mode, "latency_seconds": latency_seconds}
    if stall_seconds is not None:
        payload["stall_seconds"] = stall_seconds
    request = urllib.request.Request(
        base_url.rstrip("/") + "/_control",
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


def stats(base_url: str) -> dict[str, Any]:
    """The service's counters: requests, in_flight, max_in_flight, by_status, mode."""
    with urllib.request.urlopen(base_url.rstrip("/") + "/_stats", timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result
