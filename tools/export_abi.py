"""Export the compiled ABIs the keeper reads into ``keeper/contracts/abi/`` (package data).

Run after ``ape compile`` (tools/setup.sh does): the project's contract types come from Ape's
build manifest (``.build/__local__.json``), Uniswap V3's and OpenZeppelin's IERC20Metadata
from their npm artifacts (the ones the world deploys and the contracts import). ``--check`` writes nothing and exits 1 when
a shipped ABI differs from the build (the unit test does the same comparison).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keeper.contracts import ABI_DIR, render_abi  # noqa: E402
from keeper.contracts.export import PROJECT_CONTRACTS, NPM_ARTIFACTS, collect  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, default=ROOT / ".build" / "__local__.json")
    parser.add_argument("--node-modules", type=Path, default=ROOT / "node_modules")
    parser.add_argument("--out", type=Path, default=ABI_DIR)
    parser.add_argument("--check", action="store_true", help="compare only, exit 1 on a difference")
    args = parser.parse_args(argv)
    abis = collect(args.build, args.node_modules)
    differ = []
    for name, abi in sorted(abis.items()):
        path = args.out / f"{name}.json"
        text = render_abi(abi)
        if path.exists() and path.read_text() == text:
            continue
        differ.append(name)
        if not args.check:
            path.write_text(text)
    stale = sorted(p.stem for p in args.out.glob("*.json") if p.stem not in abis)
    for name in stale:
        differ.append(name)
        if not args.check:
            (args.out / f"{name}.json").unlink()
    verb = "differ" if args.check else "written"
    print(
        f"ABIs {verb}: {', '.join(differ) or 'none'} ({len(abis)} from "
        f"{len(PROJECT_CONTRACTS)} project contracts, {len(NPM_ARTIFACTS)} npm artifacts)"
    )
    return 1 if args.check and differ else 0


if __name__ == "__main__":
    sys.exit(main())
