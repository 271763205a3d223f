"""Golden tests: what each rule of an example file compiles to, pinned in tests/data/golden.

Each golden file holds, per rule, its identity and its canonical text (the `repr` of its
compiled meaning, which is also what its fingerprint hashes). A change to the language that
changes what an example means, or a rule's identity, shows here as a diff. After a deliberate
change, regenerate with `RULES_ENGINE_UPDATE_GOLDEN=1 pytest tests/test_golden.py` and read
the diff before committing it.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from rules_engine.compiler import compile_sources
from rules_engine.dsl import SourceFile

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "golden"
FILES = ["indicators", "orders", "schedules", "signals"]


def rendered(stem: str) -> str:
    program = compile_sources([SourceFile.read(ROOT / "examples" / f"{stem}.rules")])
    assert program.errors == ()
    return "".join(f"{r.identity}\n    {r.canonical}\n" for r in program.rules)


@pytest.mark.parametrize("stem", FILES)
def test_the_example_compiles_to_its_golden_text(stem: str) -> None:
    path = GOLDEN / f"{stem}.golden"
    text = rendered(stem)
    if os.environ.get("RULES_ENGINE_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    diff = "".join(difflib.unified_diff(
        expected.splitlines(keepends=True), text.splitlines(keepends=True),
        str(path), "compiled now"))
    assert text == expected, diff
