"""The sandbox never imports the client adapter, so the two cannot share a bug (style rule 7)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_sandbox_modules_never_import_the_client_adapter() -> None:
    files = [*sorted((ROOT / "rules_engine" / "sandbox").glob("*.py")),
             ROOT / "rules_engine" / "cli" / "sandbox.py"]
    assert len(files) > 5
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith("rules_engine.adapters"), f"{path.name} imports {name}"
