"""Lifecycle and time: cancel after, expiry, repeat, schedules, windows, zones. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from rules_engine.compiler import _model as M
from rules_engine.compiler._base import MAX_FIRINGS, _CompilerBase, _did_you_mean, _zones
from rules_engine.compiler._vocab import (
    DAYS,
)
from rules_engine.dsl import ast as A


class _Timing(_CompilerBase):
    """Compiles a rule's lifecycle clauses, schedules and trading windows."""

    def _lifecycle(
        self, slots: Mapping[str, A.Clause], place: A.Place | None
    ) -> tuple[int | None, int | None, int | None, int | None, datetime | None, M.Window | None]:
        max_firings: int | None = 1
        repeat_s: int | None = None
        life = slots.get("lifecycle")
        if isinstance(life, A.Repeat | A.Every):
            if isinstance(life, A.Repeat):
                repeat_s = self._positive_duration(life.every)
            max_firings = None
            if life.max_count is not None:
                text = life.max_count.text
                if "." in text or len(text) > 15 or not 1 <= int(text) <= MAX_FIRINGS:
                    self._report(
                        life.max_count.span,
                        "E409",
                        f"`max` takes a whole number of firings, from 1 to {MAX_FIRINGS}",
                    )
                else:
                    max_firings = int(text)
        cancel_s: int | None = None
        cancel = slots.get("cancel_after")
        if isinstance(cancel, A.CancelAfter):
            cancel_s = self._positive_duration(cancel.duration)
            if place is None:
                self._report(
                    cancel.span,
                    "E410",
                    "`cancel after` cancels what the rule placed, but it places nothing",
                )
        exp_in: int | None = None
        exp_at: datetime | None = None
        expires = slots.get("expires")
        if isinstance(expires, A.ExpiresIn):
            exp_in = self._positive_duration(expires.duration)
        elif isinstance(expires, A.ExpiresAt):
            try:
                exp_at = datetime.fromisoformat(expires.timestamp.text.replace("Z", "+00:00"))
            except ValueError:
                self._report(
                    expires.timestamp.span,
                    "E205",
                    f"{expires.timestamp.text} is not a valid date and time",
                )
            else:
                exp_at = exp_at.astimezone(UTC)
        window: M.Window | None = None
        during = slots.get("during")
        if isinstance(during, A.During):
            window = self._window(during)
        return max_firings, repeat_s, cancel_s, exp_in, exp_at, window

    def _schedule(
        self, node: A.Every, when: A.When | None, after: A.After | None
    ) -> M.Schedule | None:
        clash = False
        for other in (when, after):
            if other is not None:
                clash = True
                self._report(
                    other.span,
                    "E412",
                    "a schedule (`every ...`) fires on the clock, without a condition or a "
                    "parent: remove this clause, or check a condition at most every D with "
                    "`when ... repeat every D`",
                )
        if node.interval is not None:
            seconds = self._positive_duration(node.interval)
            return None if clash else M.Schedule(seconds, None, None, "UTC")
        assert node.time is not None and node.first_day is not None
        minute = self._minute(node.time)
        zone = self._zone(node.zone)
        days: frozenset[int] | None = None
        if node.first_day.text != "day" or node.last_day is not None:
            days = self._days(node.first_day, node.last_day)
            if days is None:
                return None
        if minute is None or zone is None or clash:
            return None
        return M.Schedule(None, minute, days, zone)

    def _minute(self, word: A.Word) -> int | None:
        hours, mins = (int(x) for x in word.text.split(":"))
        if hours > 23 or mins > 59:
            self._report(word.span, "E205", f"{word.text} is not a time of day (00:00-23:59)")
            return None
        return hours * 60 + mins

    def _zone(self, word: A.Word | None) -> str | None:
        """An IANA time zone by name (`UTC` when none is given), or None after E207."""
        if word is None or word.text == "UTC":
            return "UTC"
        if word.text in _zones():
            return word.text
        hint = _did_you_mean(word.text, _zones())
        self._report(
            word.span,
            "E207",
            f"unknown time zone {word.text!r}{hint}: use an IANA name such as Europe/Berlin, "
            "America/New_York or UTC",
        )
        return None

    def _days(self, first_word: A.Word, last_word: A.Word | None) -> frozenset[int] | None:
        first = self._day(first_word)
        last = self._day(last_word) if last_word is not None else first
        if first is None or last is None:
            return None
        if last >= first:
            return frozenset(range(first, last + 1))
        return frozenset(list(range(first, 8)) + list(range(1, last + 1)))  # sat-mon wraps

    def _window(self, node: A.During) -> M.Window | None:
        minutes = []
        for word in (node.start, node.end):
            hours, mins = (int(x) for x in word.text.split(":"))
            if hours > 23 or mins > 59:
                self._report(word.span, "E205", f"{word.text} is not a time of day (00:00-23:59)")
            minutes.append(hours * 60 + mins)
        zone = self._zone(node.zone)
        days: frozenset[int] | None = None
        if node.first_day is not None:
            days = self._days(node.first_day, node.last_day)
            if days is None:
                return None
        if zone is None:
            return None
        return M.Window(minutes[0], minutes[1], days, zone)

    def _day(self, word: A.Word) -> int | None:
        if word.text in DAYS:
            return DAYS[word.text]
        hint = _did_you_mean(word.text, DAYS)
        self._report(word.span, "E107", f"unknown day {word.text!r}{hint}: use mon..sun")
        return None
