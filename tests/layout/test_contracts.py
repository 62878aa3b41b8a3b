"""The layer contracts of pyproject.toml hold, and they can fail (docs/CONTRACTS.md)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sim", "mock_authserver", "mock_broker", "scenarios")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.fail("lint-imports is not installed: pip install -e '.[test]'")
    return subprocess.run(
        [str(exe), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin", "COLUMNS": "400"},
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the packages and pyproject.toml, so a test may break it."""
    dest = tmp_path_factory.mktemp("tree")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_contracts_hold(tree: Path) -> None:
    proc = _lint_imports(tree)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "contract"),
    [
        # the provider side reaching up into the harness
        ("mock_broker/errors.py", "import sim.harness.stack", "Layers"),
        # the broker and the AuthServer share only the bottom's documents
        ("mock_broker/errors.py", "import mock_authserver.errors", "Layers"),
        # the SDK knowing the AppServer's insides
        ("sim/customer/client/errors.py", "import sim.customer.appserver.store", "Customer side"),
        # a pure core reading the wall clock
        ("mock_broker/decision.py", "import time", "Pure cores"),
        ("sim/customer/adapter/render.py", "import time", "Pure cores"),
        ("sim/harness/check/verdicts.py", "import asyncio", "Pure cores"),
        # the adapter (below the SDK) reaching up into it
        ("sim/customer/adapter/model.py", "import sim.customer.client.store", "Customer side"),
        # amqtt's insides reached outside the broker's one boundary module
        ("mock_broker/hardened/routing.py", "import amqtt.session", "The broker reaches amqtt"),
    ],
)
def test_a_wrong_import_breaks_a_contract(
    tree: Path, module: str, bad_import: str, contract: str
) -> None:
    path = tree / module
    original = path.read_text()
    try:
        path.write_text(original + f"\n{bad_import}  # noqa\n")
        proc = _lint_imports(tree)
    finally:
        path.write_text(original)
    assert proc.returncode != 0, proc.stdout
    broken = [line for line in proc.stdout.splitlines() if " BROKEN" in line]
    assert any(line.startswith(contract) for line in broken), proc.stdout
