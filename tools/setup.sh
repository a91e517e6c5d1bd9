#!/usr/bin/env bash
# Idempotent, offline set-up of everything the project needs on a fresh machine:
# the Python venv, the npm toolchain (anvil, solcjs, Uniswap V3 artifacts), the solc
# wrapper that ape-solidity finds through SOLCX_BINARY_PATH, and the compiled contracts.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { printf '[setup] %s\n' "$*"; }

python_bin=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $python_bin"
  "$python_bin" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ] || [ constraints.txt -nt .venv/.installed ]; then
  log "installing Python packages"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
  touch .venv/.installed
fi

# promtool (Debian package prometheus) checks ops/alerts.yml in the tests. Installed when it is
# missing and we are root (CI); otherwise the alert tests say how to get it.
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing promtool (Debian package prometheus)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    log "promtool missing: as root, apt-get install prometheus (the alert-rule tests need it)"
  fi
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm packages (npm ci)"
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
fi

anvil_bin="$root/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
[ -f "$anvil_bin" ] || { echo "anvil binary missing: $anvil_bin (only linux-amd64 is packaged here)" >&2; exit 1; }
chmod +x "$anvil_bin"
ln -sf "$root/tools/anvil" .venv/bin/anvil  # the binary with the project's history bound

solc_version=$(node -p "require('solc/package.json').version")
mkdir -p .solc
wrapper=".solc/solc-v$solc_version"
cat > "$wrapper" <<SH
#!/usr/bin/env bash
exec node "$root/tools/solc.js" "\$@"
SH
chmod +x "$wrapper"

export PATH="$root/.venv/bin:$PATH" SOLCX_BINARY_PATH="$root/.solc"
log "compiling contracts"
ape compile >/dev/null
# The shipped ABIs (keeper/contracts/abi) are committed, not rewritten here: a unit test
# compares them with this build, so a contract change without `make abi` fails the tests.
log "ready: $(anvil --version | head -1), solc $solc_version, $(ape --version 2>/dev/null | tail -1)"
