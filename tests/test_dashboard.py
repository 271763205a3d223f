"""The dashboard over a real watcher's store: the page in headless Chromium, the event
stream, halt and resume with and without the token, and /metrics through prometheus-client's
own parser."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_watcher import Rig, rig, until

from rules_engine.dashboard import Bind, BindError, parse_bind, serve_dashboard
from rules_engine.store import Store

RULES = (
    "rule entry on BTC-USDT:\n    when bid < 60000\n    place limit buy 0.01 at 50000\n"
    "rule later on BTC-USDT:\n    when ask < 58000\n    place limit buy 0.001 at 50000\n"
)
# the page's test: a market buy fills too, for the chart and the positions
PAGE_RULES = RULES + "rule scalp on BTC-USDT:\n    when bid < 60000\n    place market buy 0.002\n"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@asynccontextmanager
async def dashboard(r: Rig, token: str | None = None) -> AsyncIterator[tuple[str, Store]]:
    store = Store(r.db)
    try:
        async with serve_dashboard(store, Bind("127.0.0.1", 0, token),
                                   snapshot=r.watcher.snapshot, poll_s=0.2) as url:
            yield url, store
    finally:
        store.close()


async def test_metrics_parse_with_prometheus_clients_own_parser(tmp_path: Path) -> None:
    async with rig(tmp_path, RULES) as r, dashboard(r) as (url, _):
        await until(lambda: len(r.orders()) == 1 and not r.watcher.pending)
        async with r.http.get(url + "/metrics") as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"].startswith("text/plain")
            text = await reply.text()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("rules_engine_up", ())] == 1
    assert samples[("rules_engine_halted", ())] == 0
    assert samples[("rules_engine_lease_alive", ())] == 1
    assert samples[("rules_engine_firings_total", (("outcome", "acknowledged"),))] == 1
    assert samples[("rules_engine_orders_total", (("status", "open"),))] == 1
    assert samples[("rules_engine_open_orders", (("symbol", "BTC-USDT"),))] == 1
    assert samples[("rules_engine_rules", (("status", "armed"),))] == 1
    assert samples[("rules_engine_feed_live", (("feed", "market"),))] == 1
    assert samples[("rules_engine_book_live", (("symbol", "BTC-USDT"),))] == 1
    # The lease: held at epoch 1, never taken over; the feed's lag and quiet time per
    # symbol; KuCoin's rate-limit budget left in the pools the watcher used.
    assert samples[("rules_engine_lease_epoch", ())] == 1
    assert samples[("rules_engine_lease_takeovers_total", ())] == 0
    assert samples[("rules_engine_lease_held", ())] == 1
    assert 0 <= samples[("rules_engine_feed_lag_seconds", (("symbol", "BTC-USDT"),))] < 5
    assert 0 <= samples[("rules_engine_feed_quiet_seconds", (("symbol", "BTC-USDT"),))] < 5
    pools = {dict(k)["pool"]: v for (name, k), v in samples.items()
             if name == "rules_engine_rate_limit_remaining" and dict(k)["client"] == "exchange"}
    limits = {dict(k)["pool"]: v for (name, k), v in samples.items()
              if name == "rules_engine_rate_limit_limit" and dict(k)["client"] == "exchange"}
    assert pools and set(pools) == set(limits)
    assert all(0 <= pools[p] <= limits[p] for p in pools) and any(
        pools[p] < limits[p] for p in pools)  # the watcher's requests spent some


async def test_a_start_that_takes_the_lease_over_is_counted(tmp_path: Path) -> None:
    """A store whose lease a crashed watcher still holds (alive, fresh heartbeat, its
    process gone): the next start takes it over, says so, and /metrics counts it."""
    import socket
    import subprocess
    import sys
    from datetime import timedelta

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    db = f"sqlite:///{tmp_path / 'taken.sqlite'}"
    crashed = Store(db)
    crashed.migrate()
    owner = f"{socket.gethostname()}:{dead.pid}:deadbeef"
    assert crashed.acquire_lease(owner, datetime.now(UTC), timedelta(seconds=15)) == 1
    crashed.close()  # never released: as a crash leaves it
    async with rig(tmp_path, RULES, db=db) as r, dashboard(r) as (url, store):
        async with r.http.get(url + "/metrics") as reply:
            text = await reply.text()
        [event] = store.events("lease.taken_over")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("rules_engine_lease_epoch", ())] == 2
    assert samples[("rules_engine_lease_takeovers_total", ())] == 1
    assert event.payload["from"] == owner and event.payload["epoch"] == 2


async def test_halt_and_resume_need_the_header_and_the_token_and_are_audited(
    tmp_path: Path
) -> None:
    async with rig(tmp_path, RULES) as r, dashboard(r, token="s3cret-token") as (url, store):
        post = r.http.post
        async with post(url + "/api/halt", headers={"Authorization": "Bearer s3cret-token"}
                        ) as reply:
            assert reply.status == 403  # no X-Rules-Engine header: a cross-site form
        async with post(url + "/api/halt", headers={"X-Rules-Engine": "1",
                                                    "Authorization": "Bearer wrong"}) as reply:
            assert reply.status == 403 and "no valid token" in (await reply.json())["error"]
        assert store.halt() is None
        good = {"X-Rules-Engine": "1", "Authorization": "Bearer s3cret-token"}
        async with post(url + "/api/halt", headers=good) as reply:
            assert reply.status == 200
        await until(lambda: r.watcher.ctx.halted is not None)
        halt = store.halt()
        assert halt is not None and halt["by"] == "dashboard from 127.0.0.1"
        async with post(url + "/api/resume", headers=good) as reply:
            assert reply.status == 200 and (await reply.json())["resumed"] is True
        await until(lambda: r.watcher.ctx.halted is None)
        kinds = [(e.kind, e.payload.get("by")) for e in store.events()
                 if e.kind.startswith(("halt.", "dashboard."))]
        assert ("halt.requested", "dashboard from 127.0.0.1") in kinds
        assert ("halt.lifted", "dashboard from 127.0.0.1") in kinds
        assert [k for k, _ in kinds if k == "dashboard.refused"] == ["dashboard.refused"] * 2
        assert all("s3cret" not in str(e.payload) for e in store.events())


async def test_the_event_stream_sends_the_log_and_resumes_after_the_last_id(
    tmp_path: Path
) -> None:
    async with rig(tmp_path, RULES) as r, dashboard(r) as (url, store):
        await until(lambda: len(r.orders()) == 1 and not r.watcher.pending)
        last = store.events()[-1].id
        store.log("test.marker", datetime.now(UTC), {"n": 1})
        async with r.http.get(url + "/events", headers={"Last-Event-ID": str(last)}) as reply:
            assert reply.headers["Content-Type"] == "text/event-stream"
            seen = b""
            while b"test.marker" not in seen:
                seen += await asyncio.wait_for(reply.content.readany(), 5)
        assert f"id: {last + 1}\nevent: log\n".encode() in seen
        assert f"id: {last}\n".encode() not in seen


def test_an_address_that_is_not_loopback_needs_a_token() -> None:
    with pytest.raises(BindError, match="give --http-token"):
        parse_bind("0.0.0.0:8765", None)
    assert parse_bind("0.0.0.0:8765", "t").token == "t"
    assert parse_bind("[::1]:9000", None).loopback
    with pytest.raises(BindError, match="HOST:PORT"):
        parse_bind("8765x", None)


def test_run_refuses_a_public_http_address_without_a_token(
    capsys: pytest.CaptureFixture[str]
) -> None:
    from rules_engine.cli import main

    assert main(["run", "examples/quickstart.rules", "--http", "0.0.0.0:8765"]) == 2
    assert "not a loopback address" in capsys.readouterr().err


# ---------------------------------------------------------------- the page in Chromium


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(f"no browser: {CHROMIUM} and {CHROMEDRIVER} are Debian's chromium and "
                    "chromium-driver packages (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="re-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1280,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: Any, condition: Any, timeout: float = 10.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


async def test_the_page_shows_a_firing_within_seconds_and_halts_from_its_button(
    tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    def text_of(element_id: str) -> str:
        return str(browser.find_element(By.ID, element_id).text)

    async with rig(tmp_path, PAGE_RULES) as r, dashboard(r) as (url, store):
        await until(lambda: len(r.orders()) == 2 and not r.watcher.pending
                    and len(r.watcher.tracked) == 1)
        await asyncio.to_thread(browser.get, url + "/")
        await asyncio.to_thread(wait_for, browser, lambda d: "later" in text_of("rules"))
        assert "entry" in text_of("rules") and "50000" in text_of("orders")
        assert "buy" in text_of("orders") and "limit" in text_of("orders")
        await asyncio.to_thread(wait_for, browser, lambda d: d.find_elements(
            By.CSS_SELECTOR, "svg.chart[data-symbol='BTC-USDT'] circle"))
        assert "scalp" in text_of("positions") and "0.002" in text_of("positions")
        # the rules' thresholds, from the live snapshot: a labelled line per rule
        line = await asyncio.to_thread(wait_for, browser, lambda d: d.find_elements(
            By.CSS_SELECTOR, "svg.chart[data-symbol='BTC-USDT'] g.threshold[data-rule='later']"))
        assert "later: ask 58000" in line[0].text
        assert line[0].find_elements(By.TAG_NAME, "line")
        assert not browser.find_elements(By.ID, "thresholds-note")
        r.push("57900", "57910")  # `later` fires now
        start = time.monotonic()
        await until(lambda: r.watcher.states["later"].firings == 1)
        await asyncio.to_thread(wait_for, browser, lambda d: d.find_elements(
            By.XPATH, "//li[@data-kind='fired'][contains(., 'later')]"))
        assert time.monotonic() - start < 5.0
        await asyncio.to_thread(lambda: browser.find_element(By.ID, "halt").click())
        await until(lambda: store.halt() is not None and r.watcher.ctx.halted is not None)
        await asyncio.to_thread(wait_for, browser, lambda d: "ON since" in text_of(
            "halt-state") and "acknowledged by the watcher" in text_of("halt-state"))
        assert "trading: halted" in text_of("trading")
        halt = store.halt()
        assert halt is not None and halt["by"] == "dashboard from 127.0.0.1"
        shot = os.environ.get("RULES_ENGINE_SCREENSHOT")
        if shot:  # docs/dashboard.png is made this way
            await asyncio.to_thread(browser.save_screenshot, shot)
        # `rules-engine dashboard --db`: no live watcher, so the chart says where thresholds
        # come from instead of drawing them
        async with serve_dashboard(store, Bind("127.0.0.1", 0, None), poll_s=0.2) as bare:
            await asyncio.to_thread(browser.get, bare + "/")
            note = await asyncio.to_thread(wait_for, browser, lambda d: d.find_elements(
                By.ID, "thresholds-note"))
            assert "need a running watcher" in note[0].text
            assert browser.find_elements(By.CSS_SELECTOR, "svg.chart circle")
            assert not browser.find_elements(By.CSS_SELECTOR, "g.threshold")


async def test_run_http_serves_the_dashboard_with_the_watchers_live_state(
    tmp_path: Path
) -> None:
    import socket

    from test_watcher import venue

    from rules_engine.runtime._config import load_config
    from rules_engine.runtime._run import run_watcher

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rules = tmp_path / "a.rules"
    rules.write_text(RULES)
    async with venue() as v:
        config = load_config(None, {"exchange_url": v.url, "db": f"sqlite:///{tmp_path / 'w.db'}",
                                    "view": "off", "log_format": "json"})
        stop = asyncio.Event()
        task = asyncio.create_task(run_watcher(config, [rules], stop,
                                               http=Bind("127.0.0.1", port, None)))
        try:
            state: dict[str, Any] = {}

            async def live() -> bool:
                try:
                    async with v.http.get(f"http://127.0.0.1:{port}/api/state") as reply:
                        state.update(await reply.json())
                except aiohttp.ClientError:
                    return False
                return bool(state.get("live")) and state["live"]["feed"] == "live"

            deadline = time.monotonic() + 10
            while not await live():
                assert time.monotonic() < deadline and not task.done()
                await asyncio.sleep(0.1)
            assert {r["rule"] for r in state["live"]["rules"]} == {"entry", "later"}
            assert state["live"]["balances"]["USDT"]  # the account, live from the watcher
            # The watcher's own counters reach /metrics: it stepped its rules.
            deadline = time.monotonic() + 10
            while True:
                async with v.http.get(f"http://127.0.0.1:{port}/metrics") as reply:
                    samples = {s.name: s.value for f in text_string_to_metric_families(
                        await reply.text()) for s in f.samples}
                if samples.get("rules_engine_evaluations_total", 0) > 0:
                    break
                assert time.monotonic() < deadline, samples
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


def test_the_watchers_own_metrics_are_exposed_and_parse() -> None:
    from rules_engine.runtime import _metrics

    before = {s.name: s.value for f in text_string_to_metric_families(
        _metrics.exposition().decode()) for s in f.samples}
    _metrics.evaluated(3)
    _metrics.decided("fire")
    _metrics.committed(0.004)
    after = {(s.name, tuple(s.labels.items())): s.value for f in text_string_to_metric_families(
        _metrics.exposition().decode()) for s in f.samples}
    assert after[("rules_engine_evaluations_total", ())] == before.get(
        "rules_engine_evaluations_total", 0) + 3
    assert after[("rules_engine_decisions_total", (("kind", "fire"),))] >= 1
    assert after[("rules_engine_store_commit_seconds_bucket", (("le", "0.005"),))] >= 1


def test_the_snapshot_lists_each_symbols_price_thresholds_with_their_rules() -> None:
    from rules_engine.compiler import compile_sources
    from rules_engine.dsl import SourceFile
    from rules_engine.engine import RuleIndex

    text = PAGE_RULES + (
        "rule eth on ETH-USDT:\n    when last crosses above 3500 and bid_size > 2\n"
        "    place market buy 0.01\n"
        "rule mixed on BTC-USDT:\n    when bid < 1 or ask > 2\n    place market buy 0.01\n")
    index = RuleIndex(compile_sources([SourceFile("t.rules", text)]).rules)
    assert index.price_levels() == {
        "BTC-USDT": [{"rule": "later", "field": "ask", "value": "58000"},
                     {"rule": "entry", "field": "bid", "value": "60000"},
                     {"rule": "scalp", "field": "bid", "value": "60000"}],
        # a size is not a price; an `or` is not a threshold rule: neither is drawn
        "ETH-USDT": [{"rule": "eth", "field": "last", "value": "3500"}],
    }
