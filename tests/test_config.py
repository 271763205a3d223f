"""The watcher's configuration: every key is in the example file, which itself loads."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from rules_engine.runtime._config import ConfigError, RiskLimits, WatcherConfig, load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "watcher.toml"


def test_every_key_is_documented_in_the_example_file() -> None:
    text = EXAMPLE.read_text()
    for name in WatcherConfig.model_fields:
        assert re.search(rf"^#? ?{name}\b|^\[{name}\]|^# \[{name}", text, re.M), name
    for name in RiskLimits.model_fields:
        assert re.search(rf"^#? ?{name} =", text, re.M), f"risk.{name}"


def test_the_example_file_loads_as_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RULES_ENGINE_"):
            monkeypatch.delenv(name)  # a developer's own settings are not the defaults
    assert load_config(EXAMPLE, {}) == WatcherConfig()


def test_the_environment_overrides_the_file_key_by_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('mode = "sandbox"\n[risk]\nmax_open_orders = 3\nmax_order_notional = "100"\n')
    monkeypatch.setenv("RULES_ENGINE_RISK__MAX_OPEN_ORDERS", "5")
    config = load_config(path, {})
    assert config.risk.max_open_orders == 5 and str(config.risk.max_order_notional) == "100"
    assert load_config(path, {"db": "sqlite:///x"}).db == "sqlite:///x"  # the command line wins


def test_a_bad_webhook_or_age_limit_is_named() -> None:
    with pytest.raises(ConfigError, match="webhooks"):
        load_config(None, {"webhooks": ["ftp://x"]})
    with pytest.raises(ConfigError, match="max_age"):
        load_config(None, {"max_age": {"price": 3}})
