"""`notify` templates and webhook formats: the compiler's checks (E608, E609), the payload
of each format, the config's `[[webhooks]]`, and a chain against the sandbox whose
notifications reach three local servers that each accept only their service's documented
shape (Discord `content` of at most 2000 characters; Slack incoming webhook `text`; Telegram
Bot API `sendMessage` `chat_id` and `text`, the bot token in the path)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from test_watcher import rig, until

from rules_engine.compiler import compile_sources
from rules_engine.compiler._templates import parse, render
from rules_engine.dsl import SourceFile
from rules_engine.runtime._actions import webhook_payload
from rules_engine.runtime._config import ConfigError, Webhook, load_config

TOKEN = "123456:SECRET-bot-token"


def codes(text: str) -> list[tuple[str, int, int]]:
    program = compile_sources([SourceFile.from_bytes("t.rules", text.encode())])
    return [(d.code, d.span.line, d.span.column) for d in program.diagnostics]


def messages(text: str) -> list[str]:
    program = compile_sources([SourceFile.from_bytes("t.rules", text.encode())])
    return [d.message for d in program.diagnostics]


ENTRY = "rule entry on BTC-USDT:\n    when bid < 60000\n    place market buy 0.002\n"
EXIT = ("rule exit on BTC-USDT:\n    after entry filled\n"
        "    place limit sell filled_size at fill_price + 1%\n"
        '    notify "{rule} bought {size} at {fill_price}"\n')
TOLD = ('rule told on BTC-USDT:\n    after exit filled\n'
        '    notify "{parent} #{firing} closed {filled_size} at {fill_price}: pnl {pnl} USDT"\n')


def test_every_placeholder_in_its_scope_compiles_clean() -> None:
    rules = (ENTRY + '    notify "{rule} {firing} {time} {symbol} {side} {type} {size} '
             '{price} {{literal}}"\n' + EXIT + TOLD)
    assert codes(rules) == []


def test_an_unknown_placeholder_is_an_error_at_its_column_with_did_you_mean() -> None:
    rules = 'when BTC-USDT last < 50000 notify "{rule} at {fill_prise}"\n'
    assert codes(rules) == [("E608", 1, 46)]  # the `{` of {fill_prise}
    [message] = messages(rules)
    assert "did you mean 'fill_price'?" in message


@pytest.mark.parametrize("text", ['"{rule"', '"rule}"', '"{}"'])
def test_a_malformed_brace_is_an_error(text: str) -> None:
    assert [c for c, _, _ in codes(f"when BTC-USDT last < 50000 notify {text}\n")] == ["E608"]


@pytest.mark.parametrize(("rules", "name"), [
    ('when BTC-USDT last < 50000 notify "{size}"\n', "size"),
    (ENTRY + '    notify "{fill_price}"\n', "fill_price"),
    (ENTRY + '    notify "{parent}"\n', "parent"),
    (ENTRY + 'rule told on BTC-USDT:\n    after entry filled\n    notify "{pnl}"\n', "pnl"),
])
def test_a_placeholder_without_a_value_in_its_rule_is_an_error(rules: str, name: str) -> None:
    found = codes(rules)
    assert [c for c, _, _ in found] == ["E609"], found
    assert f"{{{name}}}" in messages(rules)[0]


def test_pnl_needs_an_entry_and_an_exit_on_opposite_sides() -> None:
    same_side = EXIT.replace("limit sell", "limit buy").replace("+ 1%", "- 1%")
    assert [c for c, _, _ in codes(ENTRY + same_side + TOLD)] == ["E609"]


def test_render_fills_placeholders_and_keeps_escaped_braces() -> None:
    parts, errors = parse("{rule} {{x}} {size} {missing}")
    assert errors == []
    assert render(parts, {"rule": "dip", "size": "0.01"}) == "dip {x} 0.01 ?"


NOW = datetime(2026, 1, 1, 9, tzinfo=UTC)


def test_each_format_has_its_services_shape() -> None:
    def body(fmt: str, text: str = "hi", **extra: Any) -> dict[str, Any]:
        hook = Webhook(url=f"https://h/bot{TOKEN}/sendMessage", format=fmt, **extra)
        return webhook_payload(hook, "dip", 3, text, NOW)

    assert body("json") == {"rule": "dip", "firing": 3, "text": "hi",
                            "at": "2026-01-01T09:00:00+00:00"}
    assert body("slack") == {"text": "hi"}
    assert body("telegram", chat_id=42) == {"chat_id": 42, "text": "hi"}
    discord = body("discord", "x" * 2500)
    assert len(discord["content"]) == 2000 and discord["content"].endswith("\u2026")
    assert discord["allowed_mentions"] == {"parse": []}


def test_webhooks_take_plain_urls_and_tables_and_name_a_bad_one_without_its_token() -> None:
    config = load_config(None, {"webhooks": [
        "http://127.0.0.1/x", {"url": "https://discord.com/api/webhooks/1/t", "format": "discord"}
    ]})
    assert [(w.url, w.format) for w in config.webhooks] == [
        ("http://127.0.0.1/x", "json"), ("https://discord.com/api/webhooks/1/t", "discord")]
    bad: list[dict[str, Any]] = [
        {"url": f"https://api.telegram.org/bot{TOKEN}/sendMessage", "format": "telegram"},
        {"url": f"https://api.telegram.org/bot{TOKEN}/getMe", "format": "telegram",
         "chat_id": 1},
        {"url": "https://hooks.slack.com/services/x", "format": "teams"},
        {"url": "https://hooks.slack.com/services/x", "format": "slack", "chat_id": 1},
    ]
    for hook in bad:
        with pytest.raises(ConfigError, match=r"webhooks\.0") as err:
            load_config(None, {"webhooks": [hook]})
        assert "SECRET" not in str(err.value)


def test_webhook_tables_load_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text('[[webhooks]]\nurl = "https://hooks.slack.com/services/T/B/X"\n'
                    'format = "slack"\n\n[[webhooks]]\n'
                    f'url = "https://api.telegram.org/bot{TOKEN}/sendMessage"\n'
                    'format = "telegram"\nchat_id = -100123\n')
    config = load_config(path, {})
    assert [(w.format, w.chat_id) for w in config.webhooks] == [("slack", None),
                                                                ("telegram", -100123)]


# ------------------------------------------------------------------ the services, locally


def _strict(fmt: str, payload: Any) -> str | None:
    """What the service would refuse in this body (None: accepted)."""
    if not isinstance(payload, dict):
        return "not a JSON object"
    if fmt == "discord":
        content = payload.get("content")
        if not isinstance(content, str) or not 0 < len(content) <= 2000:
            return "content must be 1..2000 characters"
        if set(payload) - {"content", "allowed_mentions", "username", "avatar_url"}:
            return "unknown keys"
    elif fmt == "slack":
        if not isinstance(payload.get("text"), str) or not payload["text"]:
            return "missing text"
    elif fmt == "telegram":
        text = payload.get("text")
        if not isinstance(payload.get("chat_id"), int | str) or not (
                isinstance(text, str) and 0 < len(text) <= 4096):
            return "chat_id and text (1..4096) are required"
    return None


@asynccontextmanager
async def service(fmt: str, path: str, got: list[dict[str, Any]]) -> AsyncIterator[str]:
    async def handle(request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return web.Response(status=415)
        payload = await request.json()
        problem = _strict(fmt, payload)
        if problem is not None:
            return web.json_response({"error": problem}, status=400)
        got.append(payload)
        if fmt == "discord":
            return web.Response(status=204)
        if fmt == "telegram":
            return web.json_response({"ok": True, "result": {"message_id": len(got)}})
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post(path, handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}{path}"
    finally:
        await runner.cleanup()


async def test_a_chains_templates_reach_discord_slack_and_telegram_in_their_shapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    discord: list[dict[str, Any]] = []
    slack: list[dict[str, Any]] = []
    telegram: list[dict[str, Any]] = []
    async with service("discord", "/api/webhooks/1/dtoken", discord) as d_url, \
            service("slack", "/services/T0/B0/stoken", slack) as s_url, \
            service("telegram", f"/bot{TOKEN}/sendMessage", telegram) as t_url:
        hooks = [{"url": d_url, "format": "discord"}, {"url": s_url, "format": "slack"},
                 {"url": t_url, "format": "telegram", "chat_id": -1001}]
        async with rig(tmp_path, ENTRY + EXIT + TOLD, webhooks=hooks) as r:
            # The entry buys 0.002 at the ask (59010); the exit rests at 59010 + 1%.
            await until(lambda: len(discord) == 1 and len(slack) == 1 and len(telegram) == 1)
            bought = "exit bought 0.002 at 59010"
            assert discord[0]["content"] == bought and slack[0] == {"text": bought}
            assert telegram[0] == {"chat_id": -1001, "text": bought}
            [tp] = [o for o in r.orders() if o.req.side == "sell"]
            r.push("59700", "59710", trade="59705")  # the bids reach the take-profit
            await until(lambda: len(telegram) == 2, 5)
            fill = tp.deal_funds / tp.deal_size
            pnl = (fill - Decimal(59010)) * Decimal("0.002")
            closed = (f"exit #1 closed 0.002 at {fill.normalize():f}: pnl "
                      f"+{pnl.normalize():f} USDT")
            await until(lambda: len(discord) == 2 and len(slack) == 2)
            assert [discord[1]["content"], slack[1]["text"], telegram[1]["text"]] == [closed] * 3
            store = r.store()
            sent = [e.payload for e in store.events() if e.kind == "notify.sent"]
            notes = [e.payload["text"] for e in store.events() if e.kind == "notify"]
            store.close()
            assert notes == [bought, closed]
            assert sorted(p["format"] for p in sent) == ["discord"] * 2 + ["slack"] * 2 + [
                "telegram"] * 2
            assert TOKEN not in str(sent)
    out = capsys.readouterr()
    assert "SECRET" not in out.out + out.err
