"""The terminal view: the event log scrolls, a live table stays below it.

    14:41:55.571 fired                  rule=rule_entry firing=1 ...
    14:41:55.586 acknowledged           rule=rule_entry client_oid=... order_id=...
    ┌ feeds ─────────────── rules ───────────────────── open orders ───────────────┐
      (the table, redrawn twice a second from `Watcher.snapshot()`)

Every line the watcher prints while the table is drawn goes through the table's own console
(`TerminalView.take`), which writes it above the table and draws the table again below it:
a line written straight to the terminal would be drawn over at the next redraw. `Output` in
`_run.py` hands its lines here while the view runs (`Output.sink`).

Rules and orders are named as `rules-engine status` names them (a rule's name, or an unnamed
rule's identity; the full clientOid). A terminal narrower than `MIN_WIDTH` gets no table:
the event lines stay as they are, and a one-line summary of the state is printed when it
changes (at most every `PLAIN_EVERY_S`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

__all__ = ["MIN_WIDTH", "PLAIN_EVERY_S", "TerminalView", "render", "summary"]

MIN_WIDTH = 80  # narrower: plain lines, no table
PLAIN_EVERY_S = 2.0
_RULES_SHOWN = 30
_ORDERS_SHOWN = 15

Snapshot = Callable[[], dict[str, Any]]


def _state_line(snap: dict[str, Any]) -> str:
    trading = "trading" if snap.get("trading") else (
        "HALTED" if snap.get("halted") else f"STOPPED: {snap.get('stop_reason') or '?'}")
    return f"market feed: {snap.get('feed')}   orders feed: {snap.get('orders_feed')}   {trading}"


def _why(row: dict[str, Any], why: dict[str, dict[str, Any]]) -> str:
    """The rule's reason (blocked, frozen ...) or, for one that waits, why not yet."""
    if row.get("reason"):
        return str(row["reason"])
    explained = why.get(row["rule"])
    if explained is None:
        return ""
    return str(explained.get("short") or "")


def render(snap: dict[str, Any], width: int) -> RenderableType:
    """The table under the event lines: feeds, rules, open orders. Below `MIN_WIDTH` plain
    text lines, so that nothing wraps into a broken box."""
    why = {w["rule"]: w for w in snap.get("not_yet") or []}
    if width < MIN_WIDTH:
        return Text(summary(snap))
    feeds = Table(title="feeds", title_justify="left")
    for column in ("feed", "state", "lag"):
        feeds.add_column(column)
    feeds.add_row("market", str(snap.get("feed")), "")
    feeds.add_row("orders", str(snap.get("orders_feed")), "")
    lags = snap.get("lag_s") or {}
    for symbol, state in (snap.get("books") or {}).items():
        lag = lags.get(symbol)
        feeds.add_row(f"{symbol} book", str(state), "" if lag is None else f"{lag:.1f} s")
    rules = Table(title=f"rules ({len(snap.get('rules') or [])})", expand=True,
                  title_justify="left")
    rules.add_column("rule", overflow="fold")
    rules.add_column("status")
    rules.add_column("firings", justify="right")
    rules.add_column("why not yet / reason", overflow="fold", ratio=2)
    for row in (snap.get("rules") or [])[:_RULES_SHOWN]:
        rules.add_row(row["rule"], row["status"], str(row["firings"]), _why(row, why))
    hidden = len(snap.get("rules") or []) - _RULES_SHOWN
    if hidden > 0:
        rules.add_row(f"... {hidden} more (rules-engine status)", "", "", "")
    opened = snap.get("open_orders") or []
    orders = Table(title=f"open orders ({len(opened)})", expand=True, title_justify="left")
    for column in ("client_oid", "symbol", "side", "type", "price", "size", "filled", "rule"):
        orders.add_column(column, overflow="fold")
    for row in opened[:_ORDERS_SHOWN]:
        orders.add_row(row["client_oid"], row["symbol"], row.get("side") or "",
                       row.get("type") or "", row.get("price") or "",
                       row.get("size") or (f"{row['funds']} funds" if row.get("funds") else ""),
                       row.get("filled") or "0",
                       str(row.get("rule") or "(adopted)")
                       + (" (cancelling)" if row.get("cancelling") else ""))
    if len(opened) > _ORDERS_SHOWN:
        orders.add_row(f"... {len(opened) - _ORDERS_SHOWN} more", "", "", "", "", "", "", "")
    return Group(Text(_state_line(snap)), feeds, rules, orders)


def summary(snap: dict[str, Any]) -> str:
    """The state in one plain line (a narrow terminal)."""
    rules = snap.get("rules") or []
    shown = ", ".join(f"{r['rule']} {r['status']}" for r in rules[:6])
    more = f" and {len(rules) - 6} more" if len(rules) > 6 else ""
    return (f"state: {_state_line(snap)} | rules: {shown or 'none'}{more} | open orders: "
            f"{len(snap.get('open_orders') or [])}")


class _ToView(logging.Handler):
    """Log records (warnings, errors) printed through the view, above its table."""

    def __init__(self, view: TerminalView) -> None:
        super().__init__(logging.WARNING)
        self.view = view
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.view.print(self.format(record))


class TerminalView:
    """Draws `snapshot()` as a live table on `console` until `stop` is set."""

    def __init__(self, snapshot: Snapshot, console: Console | None = None,
                 refresh_s: float = 0.5) -> None:
        self.snapshot = snapshot
        self.console = console or Console()
        self.refresh_s = refresh_s
        self._live: Live | None = None

    def print(self, line: str) -> None:
        """A line above the table (or a plain line when no table is drawn)."""
        live = self._live
        if live is not None:
            live.console.print(Text(line), soft_wrap=True)
        else:
            self.console.file.write(line + "\n")
            self.console.file.flush()

    def take(self, line: str) -> bool:
        """Print `line` above the table if one is drawn (True); else leave it (False)."""
        if self._live is None:
            return False
        self.print(line)
        return True

    def _render(self) -> RenderableType:
        try:
            snap = self.snapshot()
        except Exception as err:  # the view must never be what stops the watcher
            return Text(f"(the view cannot read the watcher's state: {err})")
        return render(snap, self.console.width)

    async def run(self, stop: asyncio.Event) -> None:
        if self.console.width < MIN_WIDTH:
            await self._plain(stop)
            return
        with self._drawing():
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.refresh_s)
                assert self._live is not None
                self._live.update(self._render(), refresh=True)

    @contextlib.contextmanager
    def _drawing(self) -> Iterator[None]:
        live = Live(self._render(), console=self.console, auto_refresh=False,
                    transient=False, redirect_stdout=True, redirect_stderr=True)
        root = logging.getLogger()
        handler = _ToView(self)
        streams = [h for h in root.handlers if isinstance(h, logging.StreamHandler)]
        with live:
            self._live = live
            for h in streams:
                root.removeHandler(h)
            root.addHandler(handler)
            try:
                yield
            finally:
                root.removeHandler(handler)
                for h in streams:
                    root.addHandler(h)
                self._live = None

    async def _plain(self, stop: asyncio.Event) -> None:
        last, shown_at = "", 0.0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.refresh_s)
            try:
                line = summary(self.snapshot())
            except Exception:  # as above: never stop the watcher
                continue
            if line != last and time.monotonic() - shown_at >= PLAIN_EVERY_S:
                self.print(line)
                last, shown_at = line, time.monotonic()
