"""CI: the built wheel carries the grammar and the symbols snapshot, and lints from them alone.

Usage: python .ci/check_wheel.py WHEEL. Unpacks the wheel into a temporary folder and runs the
linter from there with the source tree out of sys.path, so only packaged files can be found.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REQUIRED = ("rules_engine/grammar/rules.lark", "rules_engine/data/symbols_snapshot.json",
            "rules_engine/store/migrations/versions/0001_first_tables.py",
            "rules_engine/py.typed")


def main(wheel: str) -> int:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        print(f"wheel {wheel} lacks {missing}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        zipfile.ZipFile(wheel).extractall(tmp)
        rules = Path(tmp) / "check.rules"
        rules.write_text("when BTC-USDT bid < 60000 place limit buy 0.01 at 59000\n")
        code = (
            "import sys; sys.path = [p for p in sys.path if p.rstrip('/') != %r];"
            "sys.path.insert(0, %r);"
            "import rules_engine.dsl._parser as p;"
            "assert str(p.grammar_path()).startswith(%r), p.grammar_path();"
            "from rules_engine.cli import main; raise SystemExit(main(['lint', %r]))"
        ) % (str(Path.cwd()), tmp, tmp, str(rules))
        result = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp, check=False)
        if result.returncode != 0:
            print("linting from the unpacked wheel failed", file=sys.stderr)
            return 1
    print(f"wheel ok: {Path(wheel).name} carries {', '.join(REQUIRED)} and lints from them")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
