"""Hot reload: a watcher notices edited rule files, rejects a broken file whole, and applies
the change rule by rule (real files, a real watcher, a real sandbox)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from test_watcher import rig, settle, until

from rules_engine.store import Store

KEEP = "rule keep on BTC-USDT:\n    when bid < 60000\n    place limit buy 0.001 at 50000\n"
EDIT = "rule edit on BTC-USDT:\n    when bid < 58000\n    place limit buy 0.001 at 51000\n"


def rewrite(path: Path, text: str) -> None:
    path.write_text(text)
    stamp = time.time_ns() + 1_000_000_000  # a new modification time, even on coarse clocks
    os.utime(path, ns=(stamp, stamp))


def events(db: str, kind: str) -> list[dict[str, object]]:
    store = Store(db)
    try:
        return [dict(e.payload, rule=e.identity) for e in store.events(kind)]
    finally:
        store.close()


async def test_an_edited_rule_gets_a_new_version_and_the_others_keep_their_state(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, KEEP + EDIT) as r:
        await until(lambda: len(r.orders()) == 1)  # `keep` fired; `edit` waits for 58000
        rewrite(tmp_path / "test.rules", KEEP + EDIT.replace("58000", "59500"))
        await until(lambda: len(r.orders()) == 2, 5)  # the new version fires at once
        assert r.watcher.states["keep"].firings == 1 and r.watcher.rules.versions["keep"] == 1
        assert r.watcher.rules.versions["edit"] == 2
        assert [o.req.price for o in r.orders()] == [50000, 51000]
        [changed] = events(r.db, "rule.changed")
        assert changed["rule"] == "edit" and changed["version"] == 2


async def test_a_file_with_errors_is_rejected_whole_and_the_running_version_stays(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, EDIT) as r:
        rewrite(tmp_path / "test.rules",
                EDIT.replace("58000", "59500") + "when BTC-USDT bidd < 1 place limit buy 1\n")
        await until(lambda: bool(events(r.db, "reload.rejected")), 5)
        await settle(0.5)
        assert r.orders() == []  # still the old version: bid 59000 is not under 58000
        assert r.watcher.rules.versions["edit"] == 1
        [rejected] = events(r.db, "reload.rejected")
        assert "E104" in str(rejected["diagnostics"])


async def test_a_removed_rule_is_disarmed_and_its_order_kept_or_cancelled(
    tmp_path: Path,
) -> None:
    for policy, final in (("keep", "open"), ("cancel", "canceled")):
        folder = tmp_path / policy
        folder.mkdir()
        async with rig(folder, KEEP, on_removed_rule=policy) as r:
            await until(lambda: len(r.orders()) == 1 and not r.watcher.pending)
            rewrite(folder / "test.rules", "# nothing here any more\n")
            await until(lambda: r.watcher.states["keep"].status == "disarmed", 5)
            if policy == "cancel":
                await until(lambda: not r.watcher.tracked, 5)
            else:
                await settle(0.5)
            store = r.store()
            assert [o.status for o in store.orders()] == [final]
            store.close()


async def test_a_rule_on_a_new_symbol_is_followed_after_a_reload(tmp_path: Path) -> None:
    eth = "rule eth on ETH-USDT:\n    when ask < 4000\n    place limit buy 0.01 at 2000\n"
    async with rig(tmp_path, EDIT) as r:
        rewrite(tmp_path / "test.rules", EDIT + eth)
        await until(lambda: len(r.orders()) == 1, 10)  # ETH's ask is 3001
        assert r.orders()[0].req.symbol == "ETH-USDT"
        assert "ETH-USDT" in r.watcher.books


async def test_a_reload_during_an_in_flight_order_sends_nothing_twice(tmp_path: Path) -> None:
    async with rig(tmp_path, EDIT) as r:
        await r.admin("faults", {"timeout_after_accept": True})
        r.push("57900", "57910")
        await until(lambda: len(r.orders()) == 1)
        rewrite(tmp_path / "test.rules", EDIT.replace("51000", "52000"))  # while in flight
        await until(lambda: r.watcher.rules.versions["edit"] == 2, 5)
        await r.admin("faults", {"timeout_after_accept": False})
        await r.admin("release")
        await until(lambda: not r.watcher.pending, 10)
        await settle(0.5)
        assert len(r.orders()) == 1  # the in-flight firing was adopted, not sent again
        store = r.store()
        [firing] = store.firings()
        assert firing.status == "acknowledged" and firing.version == 1
        store.close()
        assert r.watcher.states["edit"].firings == 1  # the new version goes on from firing 1


async def test_editing_a_rule_that_is_done_never_makes_it_fire_again(tmp_path: Path) -> None:
    async with rig(tmp_path, KEEP) as r:
        await until(lambda: len(r.orders()) == 1 and not r.watcher.pending)
        rewrite(tmp_path / "test.rules", KEEP.replace("50000", "50500"))
        await until(lambda: r.watcher.rules.versions["keep"] == 2, 5)
        r.push("58000", "58010")
        await settle(0.5)
        assert len(r.orders()) == 1  # done stays done: a new name runs it again
        assert r.watcher.states["keep"].status == "done"


async def test_a_rule_file_new_in_a_watched_folder_runs_and_a_deleted_one_keeps_running(
    tmp_path: Path,
) -> None:
    """`run FOLDER`: a file that appears in the folder (or under it) is linted and its rules
    start; one with an error is rejected whole; a deleted file's rules keep running (it is
    unreadable, like an edit caught half-written), and say so."""
    import asyncio

    from test_watcher import venue

    from rules_engine.runtime._config import load_config
    from rules_engine.runtime._reload import rule_files_in
    from rules_engine.runtime._run import run_watcher
    from rules_engine.runtime._watcher import Watcher

    folder = tmp_path / "rules"
    (folder / "more").mkdir(parents=True)
    (folder / "keep.rules").write_text(KEEP.replace("60000", "1"))  # waits: bid is 59000
    db = f"sqlite:///{tmp_path / 'folder.sqlite'}"
    async with venue() as v:
        config = load_config(None, {"exchange_url": v.url, "db": db, "view": "off",
                                    "log_format": "json"})
        stop = asyncio.Event()
        holder: list[Watcher] = []
        task = asyncio.create_task(run_watcher(
            config, rule_files_in(folder), stop, holder.append, folders=[folder]))
        await until(lambda: (bool(holder) and holder[0]._ready.is_set()) or task.done(), 10)
        assert not task.done()
        watcher = holder[0]
        try:
            (folder / "more" / "broken.rules").write_text("when BTC-USDT bidd < 1 place\n")
            await until(lambda: bool(events(db, "reload.rejected")), 5)
            (folder / "more" / "edit.rules").write_text(EDIT.replace("58000", "59500"))
            await until(lambda: len(v.state.engine.orders) == 1, 10)  # the new file's rule
            [order] = v.state.engine.orders.values()
            assert order.req.price == 51000 and set(watcher.rules.rules) == {"keep", "edit"}
            (folder / "keep.rules").unlink()
            await until(lambda: bool(events(db, "reload.unreadable")), 5)
            assert "keep" in watcher.rules.rules and watcher.states["keep"].status != "disarmed"
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
    rejected = events(db, "reload.rejected")  # at each reload while the file is broken
    assert rejected and all(str(e["path"]).endswith("broken.rules") for e in rejected)
    assert "E003" in str(rejected[0]["diagnostics"])


async def test_paper_mode_refuses_a_reloaded_rule_on_a_symbol_its_venue_does_not_carry(
    tmp_path: Path,
) -> None:
    """The local paper venue carries the symbols of the rules it started with: a rule added
    on another is rejected with that reason (and the fix), not as an unknown symbol."""
    import asyncio

    from rules_engine.runtime._config import load_config
    from rules_engine.runtime._run import run_watcher
    from rules_engine.runtime._watcher import Watcher
    from rules_engine.sandbox.config import SandboxConfig
    from rules_engine.sandbox.testing import serve

    rules = tmp_path / "paper.rules"
    rules.write_text("rule btc on BTC-USDT:\n    when bid > 1\n    place limit buy 0.001 at 1000\n")
    db = f"sqlite:///{tmp_path / 'paper.sqlite'}"
    async with serve(SandboxConfig().model_copy(update={"feed_interval_ms": 50}),
                     run_feed=True) as market:
        config = load_config(None, {"mode": "paper", "market_url": market.url, "db": db,
                                    "view": "off", "log_format": "json"})
        stop = asyncio.Event()
        holder: list[Watcher] = []
        task = asyncio.create_task(run_watcher(config, [rules], stop, holder.append))
        await until(lambda: (bool(holder) and holder[0]._ready.is_set()) or task.done(), 15)
        assert not task.done()
        try:
            rewrite(rules, rules.read_text()
                    + "rule eth on ETH-USDT:\n    when bid > 1\n    place limit buy 0.01 at 100\n")
            await until(lambda: bool(events(db, "reload.rejected")), 5)
            assert set(holder[0].rules.rules) == {"btc"}
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
    why = str(events(db, "reload.rejected")[0]["diagnostics"])
    assert "rule eth needs ETH-USDT, which the paper venue does not carry" in why
    assert "restart the watcher" in why and "unknown symbol" not in why
