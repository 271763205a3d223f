"""Inbound signals over real sockets: `run_watcher --http` with `[signals.breakout]`, a real
sandbox and a real SQLite store. A POST with the right secret fires the rule (an order on the
sandbox), once per signal; a wrong secret, a stale time, a replayed nonce, an unknown name and
a malformed body are refused, and every signal is an event (never with its secret)."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_watcher import until, venue

from rules_engine.dashboard import Bind
from rules_engine.dashboard._signals import SignalSpec, _Refused, read_body
from rules_engine.runtime._config import ConfigError, load_config
from rules_engine.runtime._run import run_watcher
from rules_engine.store import Store

SECRET = "s3cret-for-the-breakout-alert"
RULES = ('rule breakout_buy on BTC-USDT:\n    when signal "breakout" within 5m\n'
         "    place market buy 0.001\n    repeat every 1s max 5\n")


def now_text(offset_s: float = 0) -> str:
    at = datetime.now(UTC) + timedelta(seconds=offset_s)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_signals_fire_once_each_and_forgeries_stale_and_replays_are_refused(
    tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rules = tmp_path / "signals.rules"
    rules.write_text(RULES)
    db_path = tmp_path / "w.db"
    url = f"http://127.0.0.1:{port}/signal"
    async with venue() as v:
        config = load_config(None, {
            "exchange_url": v.url, "db": f"sqlite:///{db_path}", "view": "off",
            "log_format": "json", "signals": {"breakout": {"secret": SECRET,
                                                           "max_skew_s": 30}}})
        stop = asyncio.Event()
        task = asyncio.create_task(run_watcher(config, [rules], stop,
                                               http=Bind("127.0.0.1", port, None)))

        async def post(body: Any, *, text: bool = False) -> tuple[int, dict[str, Any]]:
            kwargs: dict[str, Any] = {"data": body} if text else {"json": body}
            async with v.http.post(url, **kwargs) as reply:
                return reply.status, await reply.json()

        def orders() -> list[Any]:
            return list(v.state.engine.orders.values())

        try:
            async def live() -> bool:
                try:
                    async with v.http.get(f"http://127.0.0.1:{port}/api/state") as reply:
                        state = await reply.json()
                except aiohttp.ClientError:
                    return False
                return bool(state.get("live")) and state["live"]["feed"] == "live"

            deadline = time.monotonic() + 10
            while not await live():
                assert time.monotonic() < deadline and not task.done()
                await asyncio.sleep(0.1)
            assert orders() == []

            good = {"signal": "breakout", "secret": SECRET, "time": now_text(), "nonce": "n-1"}
            status, reply = await post(good)
            assert status == 200 and reply["accepted"] == "breakout", reply
            await until(lambda: len(orders()) == 1, 5)
            assert orders()[0].req.side == "buy"

            # refused, each with its status, and nothing more is sent
            assert (await post(good))[0] == 409  # the same nonce again: a replay
            assert (await post({**good, "nonce": "n-2", "secret": "wrong-secret-0000"}))[0] \
                == 403
            assert (await post({**good, "nonce": "n-3", "time": now_text(-120)}))[0] == 403
            assert (await post({**good, "nonce": "n-4", "signal": "other"}))[0] == 403
            assert (await post({"signal": "breakout", "secret": SECRET}))[0] == 400
            assert (await post("not json {", text=True))[0] == 400
            await asyncio.sleep(1.6)  # the repeat's cooldown passed; the signal is still young
            assert len(orders()) == 1  # once per signal, not again while its window lasts

            # a second signal, as TradingView's plain-text body, fires the rule again
            plain = f"signal=breakout secret={SECRET} time={now_text()} nonce=n-5"
            status, reply = await post(plain, text=True)
            assert status == 200, reply
            await until(lambda: len(orders()) == 2, 5)
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
    store = Store(f"sqlite:///{db_path}")
    try:
        accepted = [e.payload for e in store.events("signal.accepted")]
        refused = [e.payload["why"] for e in store.events("signal.refused")]
    finally:
        store.close()
    assert [p["nonce"] for p in accepted] == ["n-1", "n-5"]
    assert len(refused) == 6
    assert any("replay" in why for why in refused)
    assert "wrong secret" in refused
    assert any(why.startswith("stale") for why in refused)
    assert any("not configured" in why for why in refused)
    for path in tmp_path.iterdir():  # the store (and its WAL) never holds the secret
        if path.name.startswith("w.db"):
            assert SECRET.encode() not in path.read_bytes()


async def test_signal_is_off_unless_configured(tmp_path: Path) -> None:
    from rules_engine.dashboard import serve_dashboard

    store = Store(f"sqlite:///{tmp_path / 'd.db'}")
    store.migrate()
    try:
        async with serve_dashboard(store, Bind("127.0.0.1", 0, None)) as base, \
                aiohttp.ClientSession() as http, \
                http.post(base + "/signal", json={"signal": "breakout"}) as reply:
            assert reply.status in (404, 405)
    finally:
        store.close()


def test_bodies_are_read_as_json_or_key_value_words() -> None:
    assert read_body(b'{"signal": "a", "time": 1767225600, "x": [1]}', "application/json") \
        == {"signal": "a", "time": "1767225600"}
    assert read_body(b"signal=a secret=b\nnonce=c", "text/plain") == \
        {"signal": "a", "secret": "b", "nonce": "c"}
    with pytest.raises(_Refused):
        read_body(b"[1, 2]", "application/json")


def test_the_config_validates_signals_and_never_shows_the_secret() -> None:
    config = load_config(None, {"signals": {"breakout": {"secret": SECRET}}})
    assert SECRET not in repr(config) and config.signals["breakout"].max_skew_s == 60
    assert SECRET not in repr(SignalSpec(SECRET, 60))
    with pytest.raises(ConfigError, match=r"signals\.breakout\.secret"):
        load_config(None, {"signals": {"breakout": {"secret": "short"}}})
    with pytest.raises(ConfigError, match="signal names"):
        load_config(None, {"signals": {"bad name": {"secret": SECRET}}})


def test_a_window_that_ends_steps_the_rules_that_read_the_signal() -> None:
    from rules_engine.compiler import compile_sources
    from rules_engine.dsl import SourceFile
    from rules_engine.engine import RuleIndex, initial_state, step
    from rules_engine.runtime._market import MarketState

    text = ('rule quiet on BTC-USDT:\n    when not signal "breakout" within 10s\n'
            '    notify "no breakout for 10s"\n')
    (rule,) = compile_sources([SourceFile("q.rules", text)]).rules
    index = RuleIndex([rule])
    market = MarketState(index.leaves())
    t0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    state = initial_state(rule, t0)
    changes = market.signal("breakout", t0, [10])
    assert [r.identity for c in changes for r in index.affected(c.leaf, c.old, c.new)] \
        == ["quiet"]
    state, decision = step(rule, state, market.values, t0)
    assert decision is None  # the signal is young: `not signal` is false
    assert market.lapsed(t0 + timedelta(seconds=10)) == []
    lapsed = market.lapsed(t0 + timedelta(seconds=11))
    selected = [r for c in lapsed for r in index.affected(c.leaf, c.old, c.new)]
    assert selected == [rule]
    _, decision = step(rule, state, market.values, t0 + timedelta(seconds=11))
    assert decision is not None and decision.kind == "fire"


def test_lint_checks_signal_names_against_the_config_it_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rules_engine.cli import main

    rules = tmp_path / "s.rules"
    rules.write_text('rule s on BTC-USDT:\n    when signal "braekout"\n'
                     "    place market buy 0.001\n")
    config = tmp_path / "w.toml"
    config.write_text(f'[signals.breakout]\nsecret = "{SECRET}"\n')
    main(["lint", str(rules)])
    assert "W112" not in capsys.readouterr().out  # no config: names not checked
    main(["lint", str(rules), "--config", str(config)])
    out = capsys.readouterr().out
    assert "W112" in out and "[signals.braekout]" in out and SECRET not in out


async def test_a_signal_accepted_before_a_restart_fires_once_after_it(tmp_path: Path) -> None:
    """Accepted (in the store's log) while no watcher saw it: the next start reloads it from
    the log and the rule fires on it once; a start after that does not fire it again (the
    rule's stored `signal_mark` covers it), though the signal is still inside its window."""
    from test_watcher import watch

    from rules_engine.store._signals import claim_signal

    rules = ('rule breakout_buy on BTC-USDT:\n    when signal "breakout" within 5m\n'
             "    place market buy 0.001\n")
    settings = {"signals": {"breakout": {"secret": SECRET}}}
    async with venue() as v:
        async with watch(v, tmp_path, rules, **settings) as r:
            db = r.db
            assert r.watcher.states["breakout_buy"].firings == 0
        store = Store(db)
        try:
            now = datetime.now(UTC)
            assert claim_signal(store, "breakout", "n-1", now=now,
                                forget_at=now + timedelta(seconds=60),
                                payload={"signal": "breakout", "nonce": "n-1"})
        finally:
            store.close()
        async with watch(v, tmp_path, rules, **settings) as r:
            await until(lambda: r.watcher.states["breakout_buy"].firings == 1)
            await until(lambda: len(r.orders()) == 1 and not r.watcher.pending)
        async with watch(v, tmp_path, rules, **settings) as r:
            await asyncio.sleep(0.5)
            assert r.watcher.states["breakout_buy"].firings == 1
            assert r.watcher.market.values  # the signal is back in the market state ...
            assert len(r.orders()) == 1  # ... and spent: no second order
