"""API keys: loaded from the environment or an owner-only key file, checked against the key's
own permissions before any trading. Secrets never appear in messages, logs or exceptions.

Environment: RULES_ENGINE_API_KEY, RULES_ENGINE_API_SECRET, RULES_ENGINE_API_PASSPHRASE
(and optionally RULES_ENGINE_API_KEY_VERSION, default 2). Key file: JSON with `api_key`,
`api_secret`, `api_passphrase` (and optionally `key_version`), readable by its owner only.

The key check reads `GET /api/v1/user/api-key`: a key whose comma-separated `permission` holds
`Transfer` (withdrawals) or `InnerTransfer` (moves between accounts) can move funds out, and
is refused unless explicitly allowed; a key without an IP whitelist gets a warning.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from rules_engine.adapters.kucoin._errors import Action
from rules_engine.adapters.kucoin._rest import KucoinRest
from rules_engine.adapters.kucoin._signing import Credentials, Secret

__all__ = ["FUNDS_OUT", "KeyCheck", "KeyError_", "check_key", "load_credentials"]

FUNDS_OUT = frozenset({"Transfer", "InnerTransfer"})
ENV = ("RULES_ENGINE_API_KEY", "RULES_ENGINE_API_SECRET", "RULES_ENGINE_API_PASSPHRASE")


class KeyError_(Exception):  # noqa: N801 - KeyError is a builtin with another meaning
    """A key that cannot be used: the message names the place and the fix, never a secret."""


def load_credentials(
    env: Mapping[str, str] | None = None, key_file: Path | None = None
) -> Credentials:
    env = os.environ if env is None else env
    if key_file is not None:
        return _from_file(key_file)
    present = [name for name in ENV if env.get(name)]
    if len(present) != len(ENV):
        missing = ", ".join(name for name in ENV if not env.get(name))
        raise KeyError_(f"API key incomplete: set {missing} (or give a key file)")
    version = env.get("RULES_ENGINE_API_KEY_VERSION", "2")
    if version not in ("1", "2", "3"):
        raise KeyError_("RULES_ENGINE_API_KEY_VERSION must be 1, 2 or 3")
    return Credentials(env[ENV[0]], Secret(env[ENV[1]]), Secret(env[ENV[2]]), version)


def _from_file(path: Path) -> Credentials:
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise KeyError_(f"cannot read the key file {path}: {err.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyError_(f"the key file {path} can be read by others: run `chmod 600 {path}`")
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        raise KeyError_(f"the key file {path} is not valid JSON") from None
    if not isinstance(document, dict):
        raise KeyError_(f"the key file {path} must hold a JSON object")
    missing = [
        k
        for k in ("api_key", "api_secret", "api_passphrase")
        if not isinstance(document.get(k), str) or not document.get(k)
    ]
    if missing:
        raise KeyError_(f"the key file {path} lacks {', '.join(missing)}")
    version = str(document.get("key_version", "2"))
    if version not in ("1", "2", "3"):
        raise KeyError_(f"the key file {path}: key_version must be 1, 2 or 3")
    return Credentials(
        document["api_key"],
        Secret(document["api_secret"]),
        Secret(document["api_passphrase"]),
        version,
    )


class KeyCheck(NamedTuple):
    permissions: frozenset[str]
    ip_whitelist: tuple[str, ...]
    warnings: tuple[str, ...]


async def check_key(rest: KucoinRest, *, allow_funds_out: bool = False) -> KeyCheck:
    """Read the key's own permissions; refuse one that can move funds out unless allowed."""
    outcome = await rest.call("GET", "/api/v1/user/api-key", signed=True)
    if outcome.action is not Action.OK or not isinstance(outcome.data, dict):
        raise KeyError_(
            f"cannot read the API key's permissions: {outcome.message} ({outcome.action.value})"
        )
    permissions = frozenset(p for p in str(outcome.data.get("permission", "")).split(",") if p)
    whitelist = tuple(ip for ip in str(outcome.data.get("ipWhitelist") or "").split(",") if ip)
    risky = sorted(permissions & FUNDS_OUT)
    if risky and not allow_funds_out:
        raise KeyError_(
            f"the API key has the {', '.join(risky)} permission and can move funds out of the "
            "account: create a key with only General and Spot, or allow it explicitly"
        )
    warnings = []
    if not whitelist:
        warnings.append(
            "the API key has no IP whitelist: restrict it to this machine's "
            "address in KuCoin's API settings"
        )
    if "Spot" not in permissions:
        warnings.append("the API key lacks the Spot permission: orders will be refused")
    return KeyCheck(permissions, whitelist, tuple(warnings))
