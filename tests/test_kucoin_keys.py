"""Keys: environment and owner-only key files, the permission check against the sandbox, and
secrets absent from every message, log line and exception."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from rules_engine.adapters.kucoin._errors import Action
from rules_engine.adapters.kucoin._keys import KeyError_, check_key, load_credentials
from rules_engine.adapters.kucoin._rest import KucoinOrders, KucoinRest
from rules_engine.adapters.kucoin._signing import Credentials, Secret
from rules_engine.sandbox.config import KeyConfig, SandboxConfig
from rules_engine.sandbox.testing import serve

SECRET, PHRASE = "s3cret-value-never-shown", "phrase-never-shown"


def test_keys_come_from_the_environment() -> None:
    creds = load_credentials(
        {
            "RULES_ENGINE_API_KEY": "k",
            "RULES_ENGINE_API_SECRET": SECRET,
            "RULES_ENGINE_API_PASSPHRASE": PHRASE,
        }
    )
    assert creds.api_key == "k" and creds.secret.reveal() == SECRET
    with pytest.raises(KeyError_, match="RULES_ENGINE_API_PASSPHRASE") as err:
        load_credentials({"RULES_ENGINE_API_KEY": "k", "RULES_ENGINE_API_SECRET": SECRET})
    assert SECRET not in str(err.value)


def test_a_key_file_must_be_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    path.write_text(json.dumps({"api_key": "k", "api_secret": SECRET, "api_passphrase": PHRASE}))
    path.chmod(0o644)
    with pytest.raises(KeyError_, match="chmod 600") as err:
        load_credentials({}, path)
    assert SECRET not in str(err.value)
    path.chmod(0o600)
    assert load_credentials({}, path).passphrase.reveal() == PHRASE


def key(permissions: tuple[str, ...], whitelist: tuple[str, ...] = ()) -> KeyConfig:
    return KeyConfig(
        api_key="owned-key",
        api_secret=SecretStr(SECRET),
        api_passphrase=SecretStr(PHRASE),
        permissions=permissions,
        ip_whitelist=whitelist,
    )


CREDS = Credentials("owned-key", Secret(SECRET), Secret(PHRASE), "2")


async def test_a_key_that_can_move_funds_out_is_refused_unless_allowed() -> None:
    config = SandboxConfig(keys=(key(("General", "Spot", "Transfer")),))
    async with serve(config) as box, KucoinRest(box.url, CREDS) as rest:
        with pytest.raises(KeyError_, match="Transfer permission"):
            await check_key(rest)
        checked = await check_key(rest, allow_funds_out=True)
        assert "Transfer" in checked.permissions


async def test_a_key_without_ip_whitelist_is_warned_about() -> None:
    async with (
        serve(SandboxConfig(keys=(key(("General", "Spot")),))) as box,
        KucoinRest(box.url, CREDS) as rest,
    ):
        checked = await check_key(rest)
        assert any("IP whitelist" in w for w in checked.warnings)


async def test_secrets_appear_in_no_log_line_and_no_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = Credentials("owned-key", Secret(SECRET + "x"), Secret(PHRASE), "2")
    config = SandboxConfig(keys=(key(("General", "Spot")),))
    async with serve(config) as box, KucoinRest(box.url, wrong) as rest:
        refused = await KucoinOrders(rest, "hf").place(
            {
                "clientOid": "k1",
                "symbol": "BTC-USDT",
                "side": "buy",
                "type": "limit",
                "price": "1000",
                "size": "0.001",
            }
        )
        assert refused.action is Action.STOP
        texts = [str(refused), repr(rest.__dict__), repr(wrong)]
        with pytest.raises(KeyError_) as err:
            await check_key(rest)
        texts.append(str(err.value))
    texts += [record.getMessage() for record in caplog.records]
    for text in texts:
        assert SECRET not in text and PHRASE not in text
