"""A local anvil for scripts: started (from the saved world, if given), waited for, stopped.

Plain Python, no Ape: the benchmarks and the demo use it. The anvil is the project's own
(``.venv/bin/anvil``, installed by ``make setup``), else the first on ``PATH``.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL_ANVIL = ROOT / ".venv" / "bin" / "anvil"
POLL_SECONDS = 0.1
STOP_SECONDS = 10.0


class AnvilStartError(RuntimeError):
    """anvil could not be started, or did not answer JSON-RPC in time; the message says why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def anvil_binary() -> str:
    """The project's anvil, else the one on ``PATH``."""
    if LOCAL_ANVIL.exists():
        return str(LOCAL_ANVIL)
    found = shutil.which("anvil")
    if found is None:
        raise AnvilStartError(f"no anvil at {LOCAL_ANVIL} nor on PATH: run `make setup`")
    return found


def start_anvil(
    state: Path | None, port: int, *extra_args: str, ready_timeout: float = 20
) -> subprocess.Popen[bytes]:
    """Start a silent anvil on 127.0.0.1:``port`` (``--load-state state`` when given, then
    ``extra_args``) and return once it answers ``eth_blockNumber``.

    It runs in its own session, so a Ctrl-C in the terminal reaches only the caller, which
    decides when to stop it (``stop_anvil``). If it exits or stays silent for
    ``ready_timeout`` seconds it is killed and ``AnvilStartError`` is raised.
    """
    if state is not None and not state.is_file():
        raise AnvilStartError(f"no saved world at {state}")
    cmd = [anvil_binary(), "--port", str(port), "--silent"]
    if state is not None:
        cmd += ["--load-state", str(state)]
    cmd += list(extra_args)
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        _wait_until_ready(proc, f"http://127.0.0.1:{port}", ready_timeout)
    except BaseException:
        stop_anvil(proc)
        raise
    return proc


def _wait_until_ready(proc: subprocess.Popen[bytes], url: str, timeout: float) -> None:
    until = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AnvilStartError(f"anvil exited with code {proc.returncode} before answering")
        if _answers_block_number(url) and proc.poll() is None:  # not another node on the port
            return
        if time.monotonic() > until:
            raise AnvilStartError(f"anvil did not answer eth_blockNumber at {url} in {timeout}s")
        time.sleep(POLL_SECONDS)


def _answers_block_number(url: str) -> bool:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as reply:
            answer = json.loads(reply.read())
    except (OSError, ValueError):  # refused while starting (URLError is an OSError), bad JSON
        return False
    return isinstance(answer, dict) and "result" in answer


def stop_anvil(proc: subprocess.Popen[bytes]) -> None:
    """Terminate, wait, and kill it if it is still there."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def running_anvil(
    state: Path | None, port: int, *extra_args: str, ready_timeout: float = 20
) -> Iterator[subprocess.Popen[bytes]]:
    """``start_anvil`` for a ``with`` block: the node is stopped however the block ends."""
    proc = start_anvil(state, port, *extra_args, ready_timeout=ready_timeout)
    try:
        yield proc
    finally:
        stop_anvil(proc)
