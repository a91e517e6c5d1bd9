"""`pip install .` is the runtime: no Ape, no test tools, and the keeper imports neither."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_MODULES = [
    "keeper.cli",
    "keeper.runner",
    "keeper.doctor",
    "keeper.act",
    "keeper.chain.rpc",
    "keeper.store.migrations",
    "keeper.metrics",
    "keeper.monitor",
]


def test_the_runtime_dependencies_have_no_ape_and_no_test_tools() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {d.split(">")[0].split("[")[0].split("=")[0].strip() for d in project["dependencies"]}
    assert not runtime & {"eth-ape", "ape-solidity", "ape-foundry", "pytest", "ruff", "mypy"}
    assert {"prometheus-client", "alembic", "aiohttp", "SQLAlchemy"} <= runtime
    assert project["scripts"] == {"keeper": "keeper.cli:main"}


def test_the_keeper_runs_without_importing_ape() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in RUNTIME_MODULES)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ape', 'pytest', 'world'))\n"
        + "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_the_migrations_ship_as_package_data() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data = project["tool"]["setuptools"]["package-data"]["keeper"]
    assert "store/migrations/script.py.mako" in data
    assert (ROOT / "keeper/store/migrations/versions/__init__.py").exists()  # found as a package
