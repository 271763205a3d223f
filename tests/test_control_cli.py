"""The kill switch, `resolve` and `unblock`, against a real watcher on a real sandbox."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from test_watcher import book, moved_clock, rig, settle, until, venue, watch

from rules_engine.cli import control, main
from rules_engine.store import Store

ONE_LINER = "when BTC-USDT bid < 60000 place limit buy 0.01\n"
SECOND = "rule later on BTC-USDT:\n    when ask < 58000\n    place limit buy 0.001 at 50000\n"


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_halt_stops_firing_cancels_open_orders_and_holds_until_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with rig(tmp_path, ONE_LINER + SECOND) as r:
        await until(lambda: len(r.orders()) == 1 and not r.watcher.pending)
        assert await cli("halt", "--db", r.db) == 0
        assert "halted" in capsys.readouterr().out
        await until(lambda: r.orders()[0].status == "done")  # cancelled on the exchange
        assert r.orders()[0].deal_size == 0
        await until(lambda: not r.watcher.tracked)  # and the store knows it
        r.push("57900", "57910")  # `later` would fire now
        await settle(0.6)
        assert len(r.orders()) == 1
        assert await cli("resume", "--db", r.db) == 0
        await until(lambda: len(r.orders()) == 2)  # it looks at the market again at once
        store = Store(r.db)
        kinds = [e.kind for e in store.events()]
        cancelled = [o for o in store.orders() if o.status == "canceled"]
        store.close()
        assert len(cancelled) == 1
        assert kinds.index("halt.requested") < kinds.index("halt.acknowledged") < kinds.index(
            "halt.lifted") < kinds.index("resumed")


async def test_a_halt_without_a_watcher_fails_loudly_and_holds_for_the_next_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "ACK_TIMEOUT", 0.5)
    async with venue() as v:
        async with watch(v, tmp_path, SECOND) as r:
            db = r.db
        assert await cli("halt", "--db", db) == 2
        assert "no watcher is running on" in capsys.readouterr().err
        bids, asks = book("57900", "57910")
        v.feed.push("BTC-USDT", bids, asks)
        async with watch(v, tmp_path, SECOND) as r:
            assert r.watcher.ctx.halted is not None  # it started halted
            await settle(0.8)
            assert r.orders() == []
            store = Store(db)
            assert store.halt_acknowledged() is not None
            store.close()


async def test_resolve_settles_an_order_no_lookup_can_prove(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Legacy orders carry no deadline: an unknown one is never proven absent by lookups.
    clock = moved_clock()
    async with rig(tmp_path, SECOND, order_family="legacy", clock=clock) as r:
        await r.admin("faults", {"http_5xx": True})
        r.push("57900", "57910")
        await until(lambda: any(p.unknown for p in r.watcher.pending.values()))
        await r.admin("faults", {"http_5xx": False})
        clock.advance(3_600_000)  # an hour of lookups that find nothing...
        await settle(0.5)
        assert r.orders() == [] and r.watcher.pending  # ...prove nothing: still frozen
        [pending] = r.watcher.pending.values()
        assert await cli("resolve", "--db", r.db, "nope", "placed") == 1
        assert await cli("resolve", "--db", r.db, pending.oid, "not-placed") == 0
        await until(lambda: len(r.orders()) == 1)  # the same firing, the same clientOid
        assert r.orders()[0].req.client_oid == pending.oid
    assert "settled as not-placed by the running watcher" in capsys.readouterr().out


TOO_BIG = "rule too_big on BTC-USDT:\n    when bid < 60000\n    place limit buy 20 at 50000\n"


async def test_unblock_lets_a_rule_refused_for_its_balance_fire_again_after_a_deposit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with rig(tmp_path, TOO_BIG + SECOND) as r:
        await until(lambda: r.watcher.states["too_big"].status == "blocked")
        assert "200004" in r.watcher.rules.reasons["too_big"]  # 1,000,000 USDT needed
        assert await cli("unblock", "--db", r.db, "later") == 1  # not blocked: armed
        assert await cli("unblock", "--db", r.db, "nope") == 1
        assert "not blocked" in capsys.readouterr().err
        r.state.engine.account.totals["USDT"] = Decimal("2000000")  # the deposit
        assert await cli("unblock", "--db", r.db, "too_big") == 0
        assert "unblocked by the running watcher (now done" in capsys.readouterr().out
        await until(lambda: len(r.orders()) == 1 and not r.watcher.pending)
        store = Store(r.db)
        firings = store.firings()
        kinds = [e.kind for e in store.events() if e.identity == "too_big"]
        store.close()
        assert [(f.number, f.status) for f in firings] == [(1, "refused"), (2, "acknowledged")]
        assert r.orders()[0].req.client_oid == firings[1].client_oid  # a new clientOid
        assert kinds.index("unblock.requested") < kinds.index("rule.unblocked")


async def test_unblock_without_a_watcher_holds_for_the_next_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with venue() as v:
        async with watch(v, tmp_path, TOO_BIG) as r:
            await until(lambda: r.watcher.states["too_big"].status == "blocked")
            db = r.db
        capsys.readouterr()
        assert await cli("status", "--db", db) == 0
        assert "then `rules-engine unblock too_big`" in capsys.readouterr().out
        assert await cli("unblock", "--db", db, "too_big") == 0
        assert "the next start applies it" in capsys.readouterr().out
        v.state.engine.account.totals["USDT"] = Decimal("2000000")
        async with watch(v, tmp_path, TOO_BIG) as r:
            await until(lambda: len(r.orders()) == 1 and not r.watcher.pending)
            assert r.watcher.states["too_big"].firings == 2
            store = Store(db)
            assert store.unblocks() == []
            store.close()


async def test_unblock_says_so_when_the_cause_is_still_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with rig(tmp_path, SECOND.replace("ask < 58000", "ask > 1"),
                   risk={"max_order_notional": 10}) as r:
        await until(lambda: r.watcher.states["later"].status == "blocked")
        assert await cli("unblock", "--db", r.db, "later") == 1
        assert ("blocked again: order value 50 is above risk.max_order_notional 10"
                in capsys.readouterr().err)
        assert r.orders() == [] and r.watcher.states["later"].firings == 2
