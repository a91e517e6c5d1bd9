# optkeeper: every target runs the offline set-up first when it is needed.
SHELL := /bin/bash
ROOT := $(abspath .)
export PATH := $(ROOT)/.venv/bin:$(PATH)
export SOLCX_BINARY_PATH := $(ROOT)/.solc

.PHONY: abi setup demo test test-unit test-contracts test-integration world lint bench clean

setup:
	@bash tools/setup.sh

# The keeper at work on a local world (see scripts/demo.py; DEMO_ARGS="--dry-run --steps 10").
# The world is rebuilt when it is missing, older than the contracts or deploy code, or more
# than 5 days old (its shortest options expire after 7 days of wall-clock time).
WORLD_SOURCES := $(wildcard contracts/*.sol contracts/*/*.sol) world/deploy.py world/books.py world/uniswap.py
demo: setup
	@if [ ! -s .world/state.json ] || [ ! -s deployments/world.json ] \
	    || [ -n "$$(find $(WORLD_SOURCES) -newer .world/state.json 2>/dev/null)" ] \
	    || [ -n "$$(find .world/state.json -mtime +5)" ]; then \
	  echo "building the world (.world/state.json; log in .world/build.log)"; mkdir -p .world; \
	  bash tools/world.sh build > .world/build.log 2>&1 || { tail -n 30 .world/build.log; exit 1; }; fi
	@python scripts/demo.py $(DEMO_ARGS)

lint: setup
	ruff check keeper tests scripts world
	ruff format --check keeper tests scripts world
	mypy

clean:
	rm -rf .build .world .solc .pytest_cache

test: setup
	@bash tools/run_tests.sh

# After a contract change: export the ABIs the keeper ships (keeper/contracts/abi) and commit them.
abi: setup
	python tools/export_abi.py

test-unit: setup
	pytest -p no:ape_test -q tests/unit

world: setup
	@bash tools/world.sh build
