"""``python -m keeper.aggsvc --rpc-url URL --manifest PATH [--host H] [--port N] [--api-key K]``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from aiohttp import web

from keeper.aggsvc.app import create_app
from keeper.aggsvc.config import config_from_manifest
from keeper.errors import KeeperError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keeper.aggsvc", description=__doc__)
    parser.add_argument("--rpc-url", required=True, help="JSON-RPC URL of the node with the pools")
    parser.add_argument("--manifest", required=True, help="deployment manifest (JSON)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument(
        "--api-key",
        default=os.environ.get("AGGSVC_API_KEY"),
        help="require this 0x-api-key (default: $AGGSVC_API_KEY, else none)",
    )
    parser.add_argument("--deadline-seconds", type=int, default=600)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = config_from_manifest(
            args.manifest, args.rpc_url, args.api_key, deadline_seconds=args.deadline_seconds
        )
    except KeeperError as exc:
        print(f"aggsvc: {exc}", file=sys.stderr)
        return 2
    web.run_app(
        create_app(config), host=args.host, port=args.port, print=None, shutdown_timeout=1.0
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
