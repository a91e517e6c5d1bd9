"""The long soak (issue 10): the live keeper on the local world for 5,000+ blocks with random
faults; prints blocks, faults by kind and violations (see ``world/soak.py``).

    python scripts/soak.py --blocks 5000 --seed 7 [--db-url postgresql+psycopg://...]

Starts an anvil that loads the saved world (``tools/world.sh build`` makes it), runs the soak
and stops the anvil. Exits 1 when a violation was found.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from world.manifest import load_manifest, manifest_path  # noqa: E402
from world.node import free_port, running_anvil  # noqa: E402
from world.soak import Soak, SoakConfig  # noqa: E402

# anvil's default mnemonic: account 1 is the world's keeper, account 3 a trader (test keys).
KEEPER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
TRADER = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fault-rate", type=float, default=0.08)
    parser.add_argument("--db-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    manifest = load_manifest(manifest_path())
    state = ROOT / ".world" / "state.json"
    with tempfile.TemporaryDirectory() as tmp:
        db_url = args.db_url or f"sqlite:///{Path(tmp) / 'soak.sqlite'}"
        port = free_port()
        with running_anvil(state, port):
            config = SoakConfig(
                rpc_url=f"http://127.0.0.1:{port}",
                manifest_file=manifest_path(),
                db_url=db_url,
                keeper_key=KEEPER_KEY,
                owner=manifest.governance,
                trader=TRADER,
                blocks=args.blocks,
                seed=args.seed,
                fault_rate=args.fault_rate,
            )
            started = time.monotonic()
            report = Soak(config, manifest).run()
    print(f"soak seed {args.seed}, fault rate {args.fault_rate}, db {db_url.split(':')[0]}")
    print("\n".join(report.lines()))
    print(f"wall time: {time.monotonic() - started:.0f} s")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
