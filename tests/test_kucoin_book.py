"""The level2 book on the real recorded KuCoin session (2021-04-25, cryptofeed sample data):
equal at every step to a plain rebuild, never crossed, and gaps, reorders and duplicates handled."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from rules_engine.adapters.kucoin._book import BookState, Delta, Level2Book, Step

DATA = Path(__file__).parent / "data" / "kucoin"
NOW = datetime(2021, 4, 25, 19, 18, 45, tzinfo=UTC)


def snapshots() -> dict[str, tuple[float, dict[str, object]]]:
    out = {}
    for line in (
        (DATA / "cryptofeed_kucoin_rest_orderbook_level2_snapshots_2021-04-25.ndjson")
        .read_text()
        .splitlines()
    ):
        record = json.loads(line)
        out[record["url"].split("symbol=")[1]] = (record["ts"], record["response"]["data"])
    return out


def deltas() -> Iterator[tuple[float, str, Delta]]:
    for line in (DATA / "cryptofeed_kucoin_ws_2021-04-25.ndjson").read_text().splitlines():
        record = json.loads(line)
        msg = record.get("msg") or {}
        if record["dir"] == "in" and msg.get("subject") == "trade.l2update":
            data = msg["data"]
            yield (
                record["ts"],
                data["symbol"],
                Delta(
                    int(data["sequenceStart"]),
                    int(data["sequenceEnd"]),
                    data["changes"]["bids"],
                    data["changes"]["asks"],
                ),
            )


SNAPSHOTS = snapshots()
DELTAS = list(deltas())


class Reference:
    """The plain rebuild: the snapshot, then every change newer than the book, in order."""

    def __init__(self, snapshot: dict[str, object]) -> None:
        self.seq = int(str(snapshot["sequence"]))
        self.sides: dict[str, dict[Decimal, Decimal]] = {
            side: {Decimal(p): Decimal(s) for p, s in snapshot[side]}  # type: ignore[attr-defined]
            for side in ("bids", "asks")
        }

    def apply(self, delta: Delta) -> None:
        if delta.end <= self.seq:
            return
        for side, changes in (("bids", delta.bids), ("asks", delta.asks)):
            for price, size, seq in changes:
                if int(seq) > self.seq and price != "0":
                    if Decimal(size) == 0:
                        self.sides[side].pop(Decimal(price), None)
                    else:
                        self.sides[side][Decimal(price)] = Decimal(size)
        self.seq = delta.end

    def snapshot(self) -> tuple[int, list[list[str]], list[list[str]]]:
        def rows(side: str) -> list[list[str]]:
            return [[str(p), str(s)] for p, s in self.sides[side].items()]

        return self.seq, rows("bids"), rows("asks")


def same(book: Level2Book, ref: Reference) -> bool:
    return dict(book.bids) == ref.sides["bids"] and dict(book.asks) == ref.sides["asks"]


def replay(symbol: str, delivered: list[Delta]) -> tuple[Level2Book, Reference, int]:
    """Feed `delivered` (the real stream, perhaps with messages dropped, swapped or doubled)
    to a book, with the real snapshot at its real moment. The reference is the exchange's true
    book: the snapshot plus every real delta up to the newest one delivered so far. After a
    resync, the new snapshot is that true book (what REST would answer at that moment).
    Returns the book, the reference, and how many steps were compared."""
    snap_ts, snap = SNAPSHOTS[symbol]
    real = [(ts, d) for ts, sym, d in DELTAS if sym == symbol]
    first_after = next(i for i, (ts, _) in enumerate(real) if ts >= snap_ts)
    book = Level2Book(symbol, NOW)
    ref = Reference(snap)
    applied = 0  # real deltas folded into the reference
    compared = 0
    for index, delta in enumerate(delivered):
        if index == first_after:
            assert (
                book.on_snapshot(
                    int(str(snap["sequence"])),
                    snap["bids"],
                    snap["asks"],  # type: ignore[arg-type]
                    NOW,
                )
                is Step.APPLIED
            )
        step = book.on_delta(delta, NOW)
        if index < first_after:
            assert step is Step.BUFFERED
            continue
        while applied < len(real) and real[applied][1].end <= max(delta.end, ref.seq):
            ref.apply(real[applied][1])
            applied += 1
        if step is Step.RESYNC:
            seq, bids, asks = ref.snapshot()
            assert book.on_snapshot(seq, bids, asks, NOW) is Step.APPLIED
        assert book.state is BookState.LIVE
        if book.sequence == ref.seq:
            assert same(book, ref)
            compared += 1
        best_bid, best_ask = book.best_bid(), book.best_ask()
        assert best_bid is None or best_ask is None or best_bid[0] < best_ask[0]
    return book, ref, compared


ACTIVE = sorted({sym for _, sym, _ in DELTAS} & set(SNAPSHOTS))


@pytest.mark.parametrize("symbol", ACTIVE)
def test_the_recorded_session_builds_a_book_equal_to_a_plain_rebuild(symbol: str) -> None:
    stream = [d for _, sym, d in DELTAS if sym == symbol]
    book, ref, compared = replay(symbol, stream)
    assert compared > 0 and book.resyncs == 0
    assert book.sequence == stream[-1].end == ref.seq  # in sequence to the end


def test_the_busiest_symbol_has_thousands_of_steps() -> None:
    stream = [d for _, sym, d in DELTAS if sym == "BCHSV-USDT"]
    _, _, compared = replay("BCHSV-USDT", stream)
    assert compared > 2000


def test_a_dropped_message_is_a_gap_and_the_book_resyncs() -> None:
    stream = [d for _, sym, d in DELTAS if sym == "BCHSV-USDT"]
    dropped = stream[:1500] + stream[1501:]
    book, ref, compared = replay("BCHSV-USDT", dropped)
    assert book.resyncs == 1 and book.sequence == ref.seq == stream[-1].end
    assert compared > 2000


def test_reordered_messages_are_a_gap_and_the_book_resyncs() -> None:
    stream = [d for _, sym, d in DELTAS if sym == "BCHSV-USDT"]
    swapped = [*stream[:1200], stream[1201], stream[1200], *stream[1202:]]
    book, ref, _ = replay("BCHSV-USDT", swapped)
    assert book.resyncs == 1 and book.sequence == ref.seq == stream[-1].end


def test_duplicated_messages_are_dropped_without_a_resync() -> None:
    stream = [d for _, sym, d in DELTAS if sym == "BCHSV-USDT"]
    doubled = [x for d in stream[:1800] for x in (d, d)] + stream[1800:]
    times_needed = len(doubled)
    assert times_needed > len(stream)
    book = Level2Book("BCHSV-USDT", NOW)
    _, snap = SNAPSHOTS["BCHSV-USDT"]
    book.on_snapshot(int(str(snap["sequence"])), snap["bids"], snap["asks"], NOW)  # type: ignore[arg-type]
    ref = Reference(snap)
    steps = [book.on_delta(d, NOW) for d in doubled]
    for d in stream:
        ref.apply(d)
    assert Step.RESYNC not in steps and Step.DROPPED in steps
    assert book.resyncs == 0 and same(book, ref)


def test_a_crossed_book_is_discarded() -> None:
    book = Level2Book("X-Y", NOW)
    book.on_snapshot(10, [["100", "1"]], [["101", "1"]], NOW)
    assert book.on_delta(Delta(11, 11, [["102", "1", "11"]], []), NOW) is Step.RESYNC
    assert book.state is BookState.SYNCING and book.reason == "crossed book"
    assert not book.fresh


def test_a_stale_feed_makes_the_book_not_fresh_until_a_new_snapshot() -> None:
    book = Level2Book("X-Y", NOW)
    book.on_snapshot(10, [["100", "1"]], [["101", "1"]], NOW)
    assert book.fresh
    book.mark_stale("no pong within pingTimeout", NOW)
    assert not book.fresh and book.state is BookState.STALE
    assert book.on_delta(Delta(11, 11, [], []), NOW) is Step.BUFFERED
    assert book.on_snapshot(11, [["100", "2"]], [["101", "1"]], NOW) is Step.APPLIED
    assert book.fresh and book.best_bid() == (Decimal(100), Decimal(2))
