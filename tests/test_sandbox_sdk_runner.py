"""benchmarks/sdk_e2e.py (the official SDK's end-to-end tests against the sandbox) needs a
checkout of that repository, which the suite does not have; here only its refusal of a path that
is not one is checked, and that it names the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_path_that_is_not_a_checkout_is_refused_with_the_fix(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sdk_e2e.py"), str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode != 0
    assert "not a checkout of Kucoin/kucoin-universal-sdk" in done.stderr
    assert "sdk/python/test" in done.stderr and "Traceback" not in done.stderr
