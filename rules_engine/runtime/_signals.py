"""Inbound signals across a restart: the accepted ones (`signal.accepted` in the store's
event log) still inside some rule's window go back into the market state at start, so a
signal accepted just before a restart is seen after it. A rule that already fired on one
does not fire again: its stored `signal_mark` covers that arrival (`engine/_evaluate.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from rules_engine.engine._values import signal_atoms
from rules_engine.runtime._market import Change, MarketState
from rules_engine.runtime._rules import RuleSet

__all__ = ["reload_signals", "signal_windows"]


def signal_windows(rules: RuleSet, name: str | None = None) -> dict[str, list[int]]:
    """Each signal name the rules read -> the windows (seconds) of the rules that read it."""
    windows: dict[str, list[int]] = {}
    for rule in rules.rules.values():
        for atom in signal_atoms(rule.condition):
            if name is None or atom.signal.name == name:
                windows.setdefault(atom.signal.name, []).append(atom.window_seconds)
    return windows


def reload_signals(store: Any, rules: RuleSet, market: MarketState,
                   now: datetime) -> list[Change]:
    """The accepted signals still inside a window of a rule that reads them, into `market`
    (oldest first: the newest of each name is its value); the changes to step the rules on."""
    from rules_engine.store._schema import Event

    windows = signal_windows(rules)
    if not windows:
        return []
    since = now - timedelta(seconds=max(max(w) for w in windows.values()))
    with store.session() as session:
        events = list(session.scalars(
            select(Event).where(Event.kind == "signal.accepted", Event.at >= since)
            .order_by(Event.id)))
    changes: dict[str, Change] = {}
    for event in events:
        name = (event.payload or {}).get("signal")
        at = event.at if event.at.tzinfo is not None else event.at.replace(tzinfo=UTC)
        if name not in windows or at > now:
            continue
        if now - at > timedelta(seconds=max(windows[name])):
            continue  # past every window of the rules that read it
        change = market.signal(name, at, windows[name])[0]
        first = changes.get(name)
        changes[name] = change if first is None else change._replace(old=first.old)
    return list(changes.values())
