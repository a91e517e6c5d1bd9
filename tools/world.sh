#!/usr/bin/env bash
# Build the local world (deploy everything onto a fresh anvil, dump its state) and/or
# serve it from an anvil that loads that state: the "upstream" node that tests and the
# demo fork from, the way operators fork mainnet.
#   tools/world.sh build            -> .world/state.json + deployments/world.json
#   tools/world.sh serve PORT       -> runs anvil --load-state in the foreground
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$(pwd)/.venv/bin:$PATH" SOLCX_BINARY_PATH="$(pwd)/.solc"
mkdir -p .world deployments

case "${1:-}" in
  build)
    # Up to three tries: on a loaded machine ape-foundry's 20 s wait for a fresh anvil has
    # been seen to run out once; a deploy that fails for any other reason fails every try.
    for try in 1 2 3; do
      rm -f .world/state.json
      if OPTKEEPER_WORLD_DUMP="$(pwd)/.world/state.json" \
         OPTKEEPER_MANIFEST="$(pwd)/deployments/world.json" \
           ape run deploy --network ethereum:local:foundry && test -s .world/state.json; then
        # The world's addresses are deterministic: what Ape cached about them (contract types,
        # creations) describes the previous build, and a forked test would decode with it.
        rm -rf "${APE_DATA_FOLDER:-$HOME/.ape}/ethereum/optworld"
        exit 0
      fi
      echo "world build try $try failed" >&2
    done
    echo "world build did not write .world/state.json" >&2
    exit 1
    ;;
  serve)
    port=${2:?usage: tools/world.sh serve PORT}
    exec anvil --port "$port" --load-state .world/state.json --silent
    ;;
  *)
    echo "usage: tools/world.sh build | serve PORT" >&2; exit 2 ;;
esac
