"""Sandbox configuration (`--config FILE`, JSON): keys, balances, fees, quotas, faults.

Example::

    {
      "keys": [{"api_key": "demo-key", "api_secret": "demo-secret", "api_passphrase": "demo",
                "permissions": ["General", "Spot"], "ip_whitelist": [], "demo": true}],
      "balances": {"USDT": "100000", "BTC": "1", "ETH": "10"},
      "maker_fee_rate": "0.001", "taker_fee_rate": "0.001",
      "quotas": {"spot": 4000, "public": 2000, "management": 2000, "window_ms": 30000},
      "faults": {"delay_ms": 0}
    }

Secrets of keys that are not marked `demo` are never logged or printed.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = [
    "DEMO_KEY",
    "DEMO_PASSPHRASE",
    "DEMO_SECRET",
    "FaultConfig",
    "KeyConfig",
    "QuotaConfig",
    "SandboxConfig",
    "load_config",
]

DEMO_KEY = "sandbox-demo-key"
DEMO_SECRET = "sandbox-demo-secret-not-a-real-secret"
DEMO_PASSPHRASE = "sandbox-demo"

PERMISSIONS = frozenset(
    {"General", "Spot", "Margin", "Futures", "Earn", "InnerTransfer", "Transfer", "Unified"}
)


class KeyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: str = Field(min_length=1)
    api_secret: SecretStr
    api_passphrase: SecretStr
    permissions: tuple[str, ...] = ("General", "Spot")
    ip_whitelist: tuple[str, ...] = ()
    remark: str = "sandbox"
    demo: bool = False
    created_at_ms: int = 1_767_225_600_000

    @field_validator("permissions")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - PERMISSIONS)
        if unknown:
            raise ValueError(f"unknown permissions {unknown}; known: {sorted(PERMISSIONS)}")
        return value


class QuotaConfig(BaseModel):
    """Weight per window for each pool (KuCoin VIP0 values by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spot: int = Field(default=4000, gt=0)
    public: int = Field(default=2000, gt=0)
    management: int = Field(default=2000, gt=0)
    window_ms: int = Field(default=30_000, gt=0)


class FaultConfig(BaseModel):
    """Faults active from the start; the admin endpoint changes them at run time."""

    model_config = ConfigDict(extra="forbid")

    delay_ms: int = Field(default=0, ge=0)
    http_5xx: bool = False
    http_429: bool = False  # a rate-limit storm: every REST request refused with 429000
    html_errors: bool = False
    timeout_after_accept: bool = False
    stall_feed: bool = False
    skip_level2: int = Field(default=0, ge=0)
    duplicate_level2: int = Field(default=0, ge=0)
    ws_silent: bool = False  # connections stay open but nothing is sent: no data, no pongs
    clock_skew_ms: int = Field(default=0, ge=-3_600_000, le=3_600_000)


def _demo_key() -> KeyConfig:
    return KeyConfig(
        api_key=DEMO_KEY,
        api_secret=SecretStr(DEMO_SECRET),
        api_passphrase=SecretStr(DEMO_PASSPHRASE),
        permissions=("General", "Spot"),
        remark="demo",
        demo=True,
    )


def _default_balances() -> dict[str, Decimal]:
    return {"USDT": Decimal("100000"), "BTC": Decimal("1"), "ETH": Decimal("10")}


class SandboxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: tuple[KeyConfig, ...] = Field(default_factory=lambda: (_demo_key(),))
    balances: dict[str, Decimal] = Field(default_factory=_default_balances)
    maker_fee_rate: Decimal = Decimal("0.001")
    taker_fee_rate: Decimal = Decimal("0.001")
    quotas: QuotaConfig = Field(default_factory=QuotaConfig)
    faults: FaultConfig = Field(default_factory=FaultConfig)
    uid: int = 165111215
    timestamp_window_ms: int = 5000
    done_order_retention_ms: int = 7 * 24 * 3600 * 1000
    level_count: int = Field(default=50, ge=5, le=500)
    synthetic_symbols: tuple[str, ...] = ("BTC-USDT", "ETH-USDT")
    max_open_orders_per_symbol: int = Field(default=200, gt=0)
    feed_interval_ms: int = Field(default=200, gt=0)
    ping_interval_ms: int = 18_000
    ping_timeout_ms: int = 10_000
    # Keep what the market showed after each book change (sequence, time, best bid and ask)
    # and the peak of open orders, for `GET /sandbox/admin/history` (soak audits).
    record_history: bool = False

    @field_validator("balances")
    @classmethod
    def _non_negative(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for currency, amount in value.items():
            if not amount.is_finite() or amount < 0:
                raise ValueError(f"balance of {currency} must be a finite number >= 0")
        return value

    @field_validator("keys")
    @classmethod
    def _unique_keys(cls, value: tuple[KeyConfig, ...]) -> tuple[KeyConfig, ...]:
        if not value:
            raise ValueError("at least one key is needed")
        names = [key.api_key for key in value]
        if len(set(names)) != len(names):
            raise ValueError("api_key values must be unique")
        return value

    def first_key(self) -> KeyConfig:
        for key in self.keys:
            if key.demo:
                return key
        return self.keys[0]


def load_config(path: Path | None) -> SandboxConfig:
    """Read a JSON config file; `None` gives the defaults (one demo key, demo balances)."""
    if path is None:
        return SandboxConfig()
    return SandboxConfig.model_validate(json.loads(path.read_text(encoding="utf-8")))
