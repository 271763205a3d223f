"""mypy --strict and ruff run inside the test command, so CI cannot skip them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_mypy_strict_is_clean() -> None:
    result = _run("mypy", "--strict", "rules_engine")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    result = _run("ruff", "check", "rules_engine", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def _imports(path: Path) -> list[str]:
    import ast

    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_the_runtime_and_the_engine_import_no_private_module_of_an_adapter() -> None:
    """They see the ports and the adapter's public names only (docs/architecture.md)."""
    found = []
    for folder in ("runtime", "engine"):
        for path in sorted((ROOT / "rules_engine" / folder).glob("*.py")):
            for name in _imports(path):
                parts = name.split(".")
                if parts[:2] == ["rules_engine", "adapters"] and any(
                        part.startswith("_") for part in parts[2:]):
                    found.append(f"{path.relative_to(ROOT)} imports {name}")
    assert found == []


def test_no_module_of_the_runtime_is_over_600_lines() -> None:
    """The watcher is small parts, each with one job (docs/architecture.md)."""
    long = {path.name: n for path in (ROOT / "rules_engine" / "runtime").glob("*.py")
            if (n := len(path.read_text().splitlines())) > 600}
    assert long == {}


def test_no_module_of_the_store_or_the_sandbox_is_over_800_lines() -> None:
    """The store and the sandbox are split by responsibility, not grown into one long module."""
    long = {f"{folder}/{path.name}": n for folder in ("store", "sandbox")
            for path in (ROOT / "rules_engine" / folder).glob("*.py")
            if (n := len(path.read_text().splitlines())) > 800}
    assert long == {}
