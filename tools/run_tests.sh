#!/usr/bin/env bash
# The whole test suite: lint, pure unit tests, then the world is built and served, and the
# contract and keeper integration tests run with Ape on an anvil forked from it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PATH="$root/.venv/bin:$PATH" SOLCX_BINARY_PATH="$root/.solc"
start=$(date +%s)

echo "== lint: ruff and mypy (strict over keeper/)"
ruff check keeper tests scripts world
ruff format --check keeper tests scripts world
mypy

echo "== unit tests"
pytest -p no:ape_test -q tests/unit

echo "== building the world"
bash tools/world.sh build

port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bash tools/world.sh serve "$port" &
world_pid=$!
trap 'kill $world_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -sf -X POST -H 'content-type: application/json' \
    --data '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}' \
    "http://127.0.0.1:$port" >/dev/null && break
  sleep 0.2
done
export OPTKEEPER_WORLD_RPC="http://127.0.0.1:$port" OPTKEEPER_MANIFEST="$root/deployments/world.json"

echo "== contract and integration tests on a fork of the world ($OPTKEEPER_WORLD_RPC)"
ape test tests/contracts tests/integration --network ethereum:optworld-fork:foundry -q "$@"

echo "== all tests passed in $(( $(date +%s) - start ))s"
