"""The watcher's configuration: a TOML file (`--config FILE`) and `RULES_ENGINE_*` environment
variables (nested keys with `__`: `RULES_ENGINE_RISK__MAX_OPEN_ORDERS=5`), validated by
pydantic so that a bad value is named with its place and the fix. Precedence, highest first:
command-line options, environment variables, the config file, the defaults below.
`examples/watcher.toml` shows every key.

The API key is never in this file: it comes from `RULES_ENGINE_API_KEY`,
`RULES_ENGINE_API_SECRET`, `RULES_ENGINE_API_PASSPHRASE`, or the owner-only `key_file`.
"""

from __future__ import annotations

import ipaddress
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from rules_engine.engine._risk import Limits

__all__ = [
    "BracketsConfig",
    "ConfigError",
    "RiskLimits",
    "SignalConfig",
    "WatcherConfig",
    "Webhook",
    "is_loopback",
    "load_config",
]

class ConfigError(Exception):
    """A configuration that cannot run: the message names the key and the fix."""


class Webhook(BaseModel):
    """One `[[webhooks]]` entry: where each `notify` is POSTed, in which service's shape
    (docs/operations.md, Notifications). A bare URL string is the `json` format. Error
    messages never repeat the URL: its path often holds a token."""

    model_config = ConfigDict(extra="forbid")

    url: str
    format: Literal["json", "discord", "slack", "telegram"] = Field(
        default="json",
        description='json: {"rule","text","at",...}; discord: {"content"}; slack: {"text"}; '
                    'telegram: Bot API sendMessage {"chat_id","text"}',
    )
    chat_id: str | int | None = Field(
        default=None, description="telegram only: the chat the bot writes to"
    )

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("webhooks are http:// or https:// URLs")
        return value

    def model_post_init(self, context: Any, /) -> None:
        if self.format == "telegram":
            if self.chat_id is None or str(self.chat_id).strip() == "":
                raise ValueError("a telegram webhook needs chat_id (the chat the bot writes "
                                 "to; docs/operations.md says how to find it)")
            if not urlsplit(self.url).path.endswith("/sendMessage"):
                raise ValueError("a telegram webhook's url is "
                                 "https://api.telegram.org/bot<TOKEN>/sendMessage")
        elif self.chat_id is not None:
            raise ValueError(f"chat_id is for telegram webhooks only, not {self.format}")


class RiskLimits(BaseModel):
    """Limits no order may break. `live` mode refuses to start without the first two."""

    model_config = ConfigDict(extra="forbid")

    max_order_notional: Decimal | None = Field(
        default=None, gt=0, description="largest quote value of one order (e.g. 500 for 500 USDT)"
    )
    max_open_orders: int | None = Field(
        default=None, gt=0, description="open orders at any moment"
    )
    allowed_symbols: list[str] | None = Field(
        default=None, description="symbols the watcher may trade; empty or absent: any"
    )
    max_rule_notional: Decimal | None = Field(
        default=None, gt=0, description="quote value of all the orders one rule ever placed"
    )
    max_daily_notional: Decimal | None = Field(
        default=None, gt=0, description="quote value of all orders placed on one UTC day"
    )
    max_firings_per_minute: int | None = Field(
        default=None, gt=0, description="orders sent in any 60 seconds, all rules together"
    )
    max_slippage: Decimal | None = Field(
        default=None, gt=0, lt=1,
        description="a market order walking the book may move the price this fraction at most",
    )

    def limits(self) -> Limits:
        return Limits(
            max_order_notional=self.max_order_notional,
            max_rule_notional=self.max_rule_notional,
            max_daily_notional=self.max_daily_notional,
            max_open_orders=self.max_open_orders,
            max_firings_per_minute=self.max_firings_per_minute,
            allowed_symbols=frozenset(self.allowed_symbols) if self.allowed_symbols else None,
            max_slippage=self.max_slippage,
        )


class BracketsConfig(BaseModel):
    """`[brackets]`: where a bracket written `on exchange` lives (docs/operations.md, "Where
    protection lives")."""

    model_config = ConfigDict(extra="forbid")

    on_exchange: bool = Field(
        default=True,
        description="true: a bracket written `on exchange` is one KuCoin OCO order; false: "
                    "every bracket is engine-held (KuCoin's SDK marks OCO deprecated as "
                    "accounts move to the unified trading account)",
    )


class SignalConfig(BaseModel):
    """`[signals.NAME]`: an inbound signal `POST /signal` may deliver (docs/operations.md,
    "Inbound signals"). The secret is a `SecretStr`: its repr and any error show `**********`."""

    model_config = ConfigDict(extra="forbid")

    secret: SecretStr = Field(
        min_length=16, description="the shared secret the alert's body carries (16+ characters)"
    )
    max_skew_s: float = Field(
        default=60.0, gt=0, le=3600,
        description="an alert whose time is further than this from the watcher's is refused",
    )


class WatcherConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RULES_ENGINE_", env_nested_delimiter="__", extra="forbid"
    )

    mode: Literal["sandbox", "paper", "live"] = "sandbox"
    exchange_url: str | None = Field(
        default=None, description="REST base URL; none: in-process sandbox, or KuCoin (live)"
    )
    db: str | None = Field(default=None, description="SQLAlchemy URL of the store")
    market_url: str = Field(
        default="https://api.kucoin.com", description="paper mode: where market data comes from"
    )
    paper_balances: dict[str, Decimal] | None = Field(
        default=None, description="paper mode: the simulated account's balances"
    )
    key_file: Path | None = None
    order_family: Literal["auto", "hf", "legacy"] = "auto"
    order_window_ms: int = Field(default=10_000, ge=1_000, le=60_000)
    request_timeout_s: float = Field(default=10.0, gt=0, le=60)
    poll_interval_s: float = Field(default=5.0, gt=0)
    resolve_interval_s: float = Field(default=1.0, gt=0)
    clock_interval_s: float = Field(default=0.1, gt=0, le=5)
    heartbeat_s: float = Field(default=2.0, gt=0)
    time_sync_s: float = Field(
        default=300.0, gt=0, description="how often the server-time offset is measured again"
    )
    reconcile_interval_s: float = Field(
        default=60.0, gt=0, description="open orders looked up over REST even while pushed"
    )
    reload_interval_s: float = Field(
        default=1.0, ge=0, description="how often rule files are checked for edits (0: never)"
    )
    on_removed_rule: Literal["keep", "cancel"] = Field(
        default="keep", description="a rule removed by a reload: its open orders kept or cancelled"
    )
    lease_stale_s: float = Field(default=15.0, gt=0)
    start_patience_s: float = Field(
        default=120.0, ge=0,
        description="how long a start waits for an exchange that is down or rate-limiting",
    )
    webhooks: list[Webhook] = Field(
        default_factory=list,
        description="where each `notify` is POSTed: URLs (JSON), or [[webhooks]] tables "
                    "with url and format (json, discord, slack, telegram)",
    )
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    webhook_attempts: int = Field(default=4, ge=1, le=20)
    log_format: Literal["auto", "json", "text"] = "auto"
    view: Literal["auto", "rich", "off"] = "auto"
    max_age: dict[str, float] = Field(
        default_factory=dict, description="seconds, per field (last, bid, volume, change)"
    )
    fee_rate: Decimal = Field(
        default=Decimal("0.001"), ge=0, lt=Decimal("0.1"),
        description="the trading fee rate counted by risk sizing, and by pnl for fills whose "
                    "fee is not recorded (KuCoin's base spot rate: 0.1%)",
    )
    risk: RiskLimits = Field(default_factory=RiskLimits)
    risk_files: dict[str, RiskLimits] = Field(
        default_factory=dict,
        description="per rule file (the path as given to run): limits that tighten `risk`",
    )
    brackets: BracketsConfig = Field(default_factory=BracketsConfig)
    signals: dict[str, SignalConfig] = Field(
        default_factory=dict,
        description="inbound signals by name; none: `POST /signal` is off",
    )
    sandbox_feed: Literal["synthetic", "candles", "recorded"] = "synthetic"
    sandbox_seed: int = 1
    sandbox_speed: float = Field(default=1.0, gt=0)

    @field_validator("webhooks", mode="before")
    @classmethod
    def _plain_urls(cls, value: Any) -> Any:
        """`webhooks = ["https://..."]` as before: each URL is a `json` webhook."""
        if isinstance(value, list):
            return [{"url": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("signals")
    @classmethod
    def _signal_names(cls, value: dict[str, SignalConfig]) -> dict[str, SignalConfig]:
        from rules_engine.compiler._base import SIGNAL_NAME

        bad = sorted(name for name in value if not SIGNAL_NAME.fullmatch(name))
        if bad:
            raise ValueError(f"signal names are 1 to 40 letters, digits, _ or -; not {bad}")
        return value

    @field_validator("max_age")
    @classmethod
    def _known_fields(cls, value: dict[str, float]) -> dict[str, float]:
        known = {"last", "bid", "volume", "change"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(
                f"max_age knows {', '.join(sorted(known))} (bid covers the ticker's bid and "
                f"ask); not {', '.join(unknown)}"
            )
        if any(v <= 0 for v in value.values()):
            raise ValueError("max_age values are seconds above zero")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _FileSource(settings_cls, _FILE_DATA.get("data", {})))


_FILE_DATA: dict[str, dict[str, Any]] = {}


class _FileSource(PydanticBaseSettingsSource):
    """The TOML file's values, below the environment's."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def load_config(path: Path | None, overrides: dict[str, Any]) -> WatcherConfig:
    """The file (if any), then the environment, then `overrides` (command-line options)."""
    data: dict[str, Any] = {}
    where = "the environment"
    if path is not None:
        where = f"{path} or the environment"
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"cannot read the config file {path}: {err.strerror}") from None
        except ValueError as err:  # TOMLDecodeError, UnicodeDecodeError, a 5000-digit int
            raise ConfigError(f"{path}: not valid TOML: {err}") from None
        except RecursionError:
            raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    _FILE_DATA["data"] = data
    try:
        return WatcherConfig(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as err:
        problems = []
        for error in err.errors():
            place = ".".join(str(p) for p in error["loc"]) or "(top level)"
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown key: see examples/watcher.toml for the keys there are"
            problems.append(f"{place}: {message}")
        raise ConfigError(f"bad configuration in {where}: " + "; ".join(problems)) from None
    finally:
        _FILE_DATA.clear()


def is_loopback(url: str) -> bool:
    """True when `url`'s host is this machine (127.0.0.0/8, ::1 or localhost)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
