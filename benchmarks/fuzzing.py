"""Seeded mutation fuzzing of everything that reads outside input; `benchmarks/fuzz` runs it.

Every target starts from real inputs (the examples and the tests' rule corpora, the recorded
KuCoin payloads of `tests/data/kucoin/`, `examples/watcher.toml`), mutates them with a
deterministic mutator (`random.Random` seeded from `--seed` and the target's name), and feeds
the bytes to the same decoder and parser the program uses. Allowed outcomes: a parsed value
(checked where cheap: Decimals finite, datetimes UTC, books uncrossed, diagnostics with a
documented code and a line inside the file) or the target's clean error. Anything else is a
crash: it is printed with its traceback's last line and saved for `--replay`.

The mutator works on structure and on bytes. On a JSON document: values replaced by hostile
ones (huge and negative numbers, NaN, Infinity, -0, 1e309, exotic unicode, empty and numeric
strings, odd timestamps), type swaps (string <-> number <-> null <-> list <-> object), fields
deleted, duplicated and renamed, lists emptied or repeated, fields spliced in from other
recorded payloads, deep nesting; then serialised with or without NaN and ASCII escaping. On
the bytes (of JSON, TOML or rule text): bit flips, random bytes, truncation, deleted and
duplicated ranges, hostile tokens, invalid UTF-8, splices of two inputs. On rule text also:
tokens of the language swapped in, lines deleted, duplicated, swapped, indented or dedented,
deep parentheses, huge numbers.

Targets and what each calls (every place that parses outside bytes, found with grep for
`loads`, `int(`, `Decimal(`, `.data[` and `data.get` over rules_engine/, sandbox excepted):

  lint            dsl.SourceFile.from_bytes -> compiler.Compiler.compile -> format_text/json/
                  github; seeds: examples/*.rules, tests/data/broken/*.rules, the docs' rules
                  blocks. Never raises: diagnostics only.
  lint_cli        `rules-engine lint` in a subprocess on a few mutated files: exit 0 or 1,
                  no traceback. Runs once.
  classify_reply  adapters/kucoin/_errors.classify_reply(status, body, order): every REST
                  reply body (json.loads inside); always an Outcome.
  ws_message      adapters/kucoin/_parsing.parse_ws_message on orjson-decoded frames of every
                  recorded topic (the client's decoder): an event or PayloadError.
  ws_dispatch     adapters/kucoin/_ws.KucoinWs.on_text: a raw text frame as the reader gets
                  it (decode, welcome/ack/error/message routing).
  ws_book         parse_ws_message level2 deltas applied to an adapters/kucoin/_book.Level2Book
                  loaded from the recorded REST snapshot: the book stays sound.
  market_cli      cli/market._Market.on_message (the `market` command's own frame handling).
  watcher_frame   the KuCoin feed's stream into runtime/_feeds.Feeds, with real books, market
                  state and a candle series: routing by event, book deltas, candle updates
                  and the values the rules read stay sound.
  level2          classify_reply -> parse_level2 -> Level2Book.on_snapshot (REST snapshots).
  order           classify_reply -> parse_order (order lookups, HF and legacy).
  orders_page     classify_reply -> parse_orders_page (active and done pages).
  fills_page      classify_reply -> parse_fills_page.
  stats           classify_reply -> parse_stats (24h stats).
  accounts        classify_reply -> parse_accounts (spot, cross and isolated shapes).
  candles         classify_reply -> parse_candles_reply.
  bullet          classify_reply -> _parsing.parse_bullet (the WebSocket token reply).
  server_time     classify_reply -> _parsing.parse_server_time (GET /api/v1/timestamp).
  retry_after     adapters/kucoin/_rest.retry_after_seconds and RatePools.observe (headers).
  symbols         cli/lint._symbols_and_market --symbols FILE (json -> core/symbols.
                  parse_symbols_reply): a SymbolTable or LintUsageError.
  tickers         cli/lint._symbols_and_market --tickers FILE (json -> parse_all_tickers),
                  then a compile that compares limit prices with those tickers (W602).
  config          runtime/_config.load_config on mutated examples/watcher.toml: ConfigError.
  sandbox_order   sandbox/rest.order_request on bodies decoded by the server's own
                  `parse_body` (json.loads with Decimal floats): an OrderRequest or
                  ApiFailureError.

Reads that are not fuzzed, and why: adapters/kucoin/_keys.check_key and the watcher's
`_check_venue` read the API-key reply with `str()` of `.get()` only; the watcher's page
cursors (`totalNum`, `lastId`) are type-checked before use; the store's JSON is its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "kucoin"
CRASH_DIR = ROOT / "benchmarks" / "results" / "fuzz-crashes"
NOW = datetime(2021, 4, 25, 19, 18, 45, tzinfo=UTC)

Feed = Callable[[bytes], bool]  # True: parsed, False: a clean error; raises: a crash


class Insane(AssertionError):
    """A parsed value that breaks an invariant (an infinite Decimal, a naive datetime...)."""


class Hang(Exception):
    """One input took longer than `HANG_SECONDS`: a parser that loops or blows up."""


HANG_SECONDS = 10.0


@contextlib.contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Raise `Hang` in the code running when `seconds` pass (main thread, Unix only)."""
    main = threading.current_thread() is threading.main_thread()
    if not (main and hasattr(signal, "setitimer")):
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise Hang(f"no result after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ============================================================================ the mutator

HOSTILE_STRINGS = [
    "", " ", "0", "-0", "0.0", "-1", "1e309", "-1e309", "1E+999999999", "1e-999999999",
    "NaN", "nan", "sNaN", "-NaN", "Infinity", "-Infinity", "inf", "9" * 400, "0x1F", "1_000",
    "+5", " 1 ", "1\u00a0", "\ufeff1", "\u0661\u0662\u0663", "\u00b2", "\u00bd",
    "\U0001d7d9\U0001d7da", "\u216b", "\uff11\uff12", "\u0000", "\u202e", "\u200b", "\u2028",
    "\U0001f600", "\ud800", "\u0130", "\ufb01", "\u0301", "a" * 3000, "true", "null", "[]",
    "{}", "BTC-USDT", "btc-usdt", "BTC-USDT:ETH-USDT", "/market/level2:", "trade.l2update",
    "message", "welcome", "ack", "200000", "400100", "429000", "%s%n", "../../etc/passwd",
]
HOSTILE_NUMBERS: list[Any] = [
    0, -0.0, 1, -1, 0.1, 1e-7, 5e-324, 1e308, -1e308, 2**31, 2**53 + 1, 2**63 - 1, 2**63,
    2**64, -(2**63) - 1, 10**20, 10**400, math.nan, math.inf, -math.inf, 123456789.123456789,
]
HOSTILE_TIMES: list[Any] = [
    0, -1, 10**11 - 1, 10**11, 10**17 + 1, 10**19, 253402300800000, -62135596800001,
    1e20, -1e20, "1e13", "1619378326628", 1619378326.628, 10**30, 2**63,
]
RAW_TOKENS = [
    b"NaN", b"Infinity", b"-Infinity", b"1e309", b"-0", b"1" + b"0" * 5000, b"\xff", b"\xfe",
    b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b'"\\ud800"', b'"\\u0000"', b",", b":", b'"', b"}",
    b"]", b"{", b"[", b"null", b"true", b"\n", b" ", "\u00e9".encode(), "\U0001f600".encode(),
    b"\r", b"\t", b"\\", b"'", b"=", b"#",
]


def _deep(depth: int) -> bytes:
    opener, closer = random.Random(depth).choice([(b"[", b"]"), (b'{"a":', b"}")])
    return opener * depth + b"1" + closer * depth


DEEP_MARK = "\u0001DEEP\u0001"


class Mutator:
    """All randomness comes from `rng`, so a seed replays the same inputs."""

    def __init__(self, rng: random.Random, pool: dict[str, list[Any]],
                 siblings: Sequence[Any] = ()) -> None:
        self.rng = rng
        self.pool = pool  # field name -> values seen under it in recorded payloads
        self.pool_keys = sorted(pool)
        self.siblings = [d for d in siblings if isinstance(d, dict)]  # the target's seeds

    # ------------------------------------------------------------------ values

    def hostile(self, current: Any, key: str = "") -> Any:
        rng = self.rng
        lowered = key.lower()
        if any(w in lowered for w in ("time", "at", "ts", "sequence")) and rng.random() < 0.5:
            return rng.choice(HOSTILE_TIMES)
        roll = rng.random()
        if roll < 0.35:
            return rng.choice(HOSTILE_STRINGS)
        if roll < 0.65:
            return rng.choice(HOSTILE_NUMBERS)
        if roll < 0.8:
            return rng.choice([None, True, False, [], {}, [None], {"": None}])
        return self.swap(current)

    def swap(self, value: Any) -> Any:
        """The same value as another JSON type."""
        rng = self.rng
        if isinstance(value, str):
            with contextlib.suppress(ValueError, OverflowError):
                number = float(value)
                if math.isfinite(number) and number == int(number) and rng.random() < 0.5:
                    return int(number)
                return number
            return rng.choice([None, [value], {"value": value}, len(value), value == ""])
        if isinstance(value, bool):
            return rng.choice(["true", int(value), None, [value]])
        if isinstance(value, int | float):
            return rng.choice([str(value), None, [value], {"value": value}, bool(value)])
        if value is None:
            return rng.choice(["", 0, "null", [], {}])
        if isinstance(value, list):
            return rng.choice([{str(i): v for i, v in enumerate(value)}, None, json.dumps(value)])
        if isinstance(value, dict):
            return rng.choice([list(value.values()), list(value), None, json.dumps(value)])
        return None

    # ------------------------------------------------------------------ structure

    def _slots(self, doc: Any, limit: int = 4000) -> list[tuple[Any, Any]]:
        """(container, key) of every node below the root, breadth first, up to `limit`."""
        slots: list[tuple[Any, Any]] = []
        queue = [doc]
        while queue and len(slots) < limit:
            node = queue.pop(0)
            keys: Sequence[Any] = list(node) if isinstance(node, dict) else range(len(node))
            for k in keys:
                slots.append((node, k))
                child = node[k]
                if isinstance(child, dict | list) and child:
                    queue.append(child)
        return slots

    def structure(self, doc: Any) -> Any:
        """One to four structural edits of a decoded JSON document (edited in place)."""
        rng = self.rng
        grown = False
        for _ in range(rng.choice((1, 1, 2, 2, 3, 4))):
            if isinstance(doc, dict) and doc and self.siblings and rng.random() < 0.12:
                # a top-level field of another payload of the same kind: the subject of a
                # delta on a ticker, the data of a snapshot under a candle topic...
                other = rng.choice(self.siblings)
                key = rng.choice(list(doc))
                if key in other:
                    doc[key] = json.loads(json.dumps(other[key]))
                continue
            if not isinstance(doc, dict | list) or not doc or rng.random() < 0.02:
                doc = rng.choice([[doc], {"data": doc}, doc, None, self.hostile(doc)])
                continue
            slots = self._slots(doc)
            container, key = rng.choice(slots)
            value = container[key]
            name = key if isinstance(key, str) else ""
            op = rng.random()
            if op < 0.15 and isinstance(value, str) and name in self.pool:
                # another value this field takes in the recordings (a subject, a side, a type
                # of another message): the mismatches a parser's dispatch must survive
                container[key] = rng.choice(self.pool[name])
            elif op < 0.3:
                container[key] = self.hostile(value, name)
            elif op < 0.45:
                container[key] = self.swap(value)
            elif op < 0.6:
                del container[key]
            elif op < 0.68:
                copy = json.loads(json.dumps(value))
                if isinstance(container, dict):
                    container[rng.choice([key + "_", key.upper(), key.lower(), " " + key])] = copy
                    if rng.random() < 0.5:
                        container.pop(key, None)  # renamed rather than duplicated
                else:
                    container.insert(rng.randrange(len(container) + 1), copy)
            elif op < 0.8:
                pool_key = name if name in self.pool and rng.random() < 0.7 else None
                if pool_key is None and self.pool_keys:
                    pool_key = rng.choice(self.pool_keys)
                if pool_key is not None:
                    container[key] = json.loads(json.dumps(rng.choice(self.pool[pool_key])))
            elif op < 0.86:
                if isinstance(value, list) and value and not grown:
                    grown = True  # once per input: repeated repetition grows exponentially
                    container[key] = value * min(rng.choice((2, 10, 300)), 3000 // len(value) + 1)
                elif isinstance(value, list | dict | str):
                    container[key] = type(value)()
                elif not grown:
                    grown = True
                    container[key] = [value] * rng.choice((2, 50))
            elif op < 0.9:
                container[key] = DEEP_MARK
            elif isinstance(container, dict) and self.pool_keys:
                extra = rng.choice(self.pool_keys)  # a field of another payload, spliced in
                container[extra] = json.loads(json.dumps(rng.choice(self.pool[extra])))
            else:
                container[key] = [value, value]
        return doc

    def serialise(self, doc: Any) -> bytes:
        rng = self.rng
        try:
            text = json.dumps(
                doc,
                allow_nan=True,
                ensure_ascii=rng.random() < 0.5,
                separators=rng.choice([(",", ":"), (", ", ": ")]),
            )
        except ValueError:  # a value json cannot write (none of ours so far): null instead
            text = json.dumps(None)
        data = text.encode("utf-8", "surrogatepass")
        mark = json.dumps(DEEP_MARK).encode()  # json escapes the control characters alike
        while mark in data:
            data = data.replace(mark, _deep(rng.choice((10, 200, 1100, 5000, 100_000))), 1)
        return data

    # ------------------------------------------------------------------ bytes

    def raw(self, data: bytes, others: Sequence[bytes] = ()) -> bytes:
        """One to four byte-level edits."""
        rng = self.rng
        buf = bytearray(data)
        for _ in range(rng.choice((1, 1, 2, 3, 4))):
            n = len(buf)
            op = rng.random()
            pos = rng.randrange(n + 1)
            if op < 0.15 and n:
                i = rng.randrange(n)
                buf[i] ^= 1 << rng.randrange(8)
            elif op < 0.25 and n:
                buf[rng.randrange(n)] = rng.randrange(256)
            elif op < 0.45:
                buf[pos:pos] = rng.choice(RAW_TOKENS)
            elif op < 0.55:
                end = min(n, pos + rng.choice((1, 2, 8, 64)))
                del buf[pos:end]
            elif op < 0.62:
                end = min(n, pos + rng.choice((1, 8, 64, 512)))
                buf[end:end] = buf[pos:end]
            elif op < 0.7:
                del buf[pos:]
            elif op < 0.78 and others:
                other = rng.choice(others)
                cut = rng.randrange(len(other) + 1)
                buf[pos:] = other[cut:]
            elif op < 0.85:
                digits = re.compile(rb"\d+")
                found = list(digits.finditer(bytes(buf)))
                if found:
                    m = rng.choice(found)
                    buf[m.start() : m.end()] = rng.choice(
                        [b"9" * rng.choice((19, 20, 309, 5000)), b"-" + m.group(), b"0" + m.group(),
                         m.group() + b".5", m.group() + b"e400", b"1e-400"]
                    )
            elif op < 0.9:
                buf[pos:pos] = _deep(rng.choice((50, 1100, 100_000)))
            else:
                quote = bytes(buf).find(b'"', pos)
                if quote >= 0:
                    buf[quote + 1 : quote + 1] = rng.choice(HOSTILE_STRINGS).encode(
                        "utf-8", "surrogatepass"
                    )
        return bytes(buf)

    def json_input(self, seed: bytes, others: Sequence[bytes]) -> bytes:
        """A mutated JSON document: structure-aware mostly, sometimes raw, sometimes both."""
        rng = self.rng
        try:
            doc = json.loads(seed)
        except ValueError:
            doc = None
        if doc is not None and rng.random() < 0.65:
            data = self.serialise(self.structure(doc))
            return self.raw(data, others) if rng.random() < 0.15 else data
        return self.raw(seed, others)


# ============================================================================ rule text

WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*|\d+(?:\.\d+)?%?|\S")
EXOTIC_TEXT = [
    "\u202e", "\u200b", "\ufeff", "\u0301", "\U0001f600", "\u2028", "\u0085", "\x0c", "\x0b",
    "\r", "\x00", "\ud800", "\u0130", "\ufb01", "\u00df", "\u00b2", "\u0661", "\U0001d7d7",
    "\uff22\uff34\uff23", "\t", "\r\n", "\\", '"', "'", "#", "\u00e9",
]


def rules_input(
    rng: random.Random, seed: str, corpus: Sequence[str], words: Sequence[str]
) -> bytes:
    """A mutated rule file: token, line and character edits, then sometimes byte edits."""
    text = seed
    for _ in range(rng.choice((1, 1, 2, 3, 4, 6))):
        if len(text) > 100_000:
            break
        lines = text.split("\n")
        op = rng.random()
        if op < 0.2:
            matches = list(WORD.finditer(text))
            if matches:
                m = rng.choice(matches)
                text = text[: m.start()] + rng.choice(words) + text[m.end() :]
        elif op < 0.3:
            pos = rng.randrange(len(text) + 1)
            text = text[:pos] + rng.choice(words) + " " + text[pos:]
        elif op < 0.38 and text:
            pos = rng.randrange(len(text))
            text = text[:pos] + text[pos + rng.choice((1, 3, 10, 40)) :]
        elif op < 0.46:
            i = rng.randrange(len(lines))
            lines.insert(rng.randrange(len(lines) + 1), lines[i])
            text = "\n".join(lines)
        elif op < 0.52 and len(lines) > 1:
            del lines[rng.randrange(len(lines))]
            text = "\n".join(lines)
        elif op < 0.57 and len(lines) > 1:
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif op < 0.63:
            i = rng.randrange(len(lines))
            if rng.random() < 0.5:
                lines[i] = rng.choice(["    ", "  ", "\t", "        ", " "]) + lines[i]
            else:
                lines[i] = lines[i].lstrip()
            text = "\n".join(lines)
        elif op < 0.68:
            other = rng.choice(corpus).split("\n")
            i = rng.randrange(len(lines) + 1)
            j = rng.randrange(len(other))
            lines[i:i] = other[j : j + rng.choice((1, 2, 5))]
            text = "\n".join(lines)
        elif op < 0.76:
            numbers = list(re.finditer(r"\d+(?:\.\d+)?", text))
            if numbers:
                m = rng.choice(numbers)
                new = rng.choice(
                    ["9" * rng.choice((20, 400, 5000)), "1e309", "0." + "0" * 400 + "1", "-0",
                     "0", m.group() * 3, "00" + m.group(), m.group() + "." + "5" * 60]
                )
                text = text[: m.start()] + new + text[m.end() :]
        elif op < 0.8:
            numbers = list(re.finditer(r"\d+(?:\.\d+)?", text))
            if numbers:
                m = rng.choice(numbers)
                depth = rng.choice((5, 60, 600, 3000))
                wrapped = "(" * depth + m.group() + ")" * depth
                if rng.random() < 0.5:
                    wrapped = " + ".join([m.group()] * depth)
                text = text[: m.start()] + wrapped + text[m.end() :]
        elif op < 0.9:
            pos = rng.randrange(len(text) + 1)
            text = text[:pos] + rng.choice(EXOTIC_TEXT) * rng.choice((1, 1, 3)) + text[pos:]
        elif op < 0.95:
            pos = rng.randrange(len(text) + 1)
            text = text[:pos]
        else:
            i = rng.randrange(len(lines))
            lines[i] = lines[i] * rng.choice((2, 20, 200))
            text = "\n".join(lines)
    if len(text) > 100_000:  # repeated line repetition: keep inputs to a real file's size
        text = text[: rng.randrange(100_000)]
    data = text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.1:
        buf = bytearray(data)
        for _ in range(rng.choice((1, 2))):
            if buf:
                buf[rng.randrange(len(buf))] = rng.randrange(256)
        data = bytes(buf)
    return data


# ============================================================================ sanity checks


_PLAIN = (str, int, bool, Decimal, datetime, float, type(None))
_HINTS: dict[type, dict[str, tuple[type, ...] | None]] = {}


def _field_types(cls: type) -> dict[str, tuple[type, ...] | None]:
    """Each field's allowed plain types (None: not checked), from the class's annotations."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = {}
        for name, hint in typing.get_type_hints(cls).items():
            args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
            plain = all(isinstance(a, type) and a in _PLAIN for a in args)
            hints[name] = tuple(args) if plain else None
        _HINTS[cls] = hints
    return hints


def _typed(cls: type, name: str, item: Any, where: str) -> None:
    allowed = _field_types(cls).get(name)
    if allowed is None:
        return
    if isinstance(item, bool) and bool not in allowed:
        raise Insane(f"{where} is a boolean, not {allowed}: {item!r}")
    if not isinstance(item, allowed):
        raise Insane(f"{where} is a {type(item).__name__}, not {allowed}: {_cut(repr(item), 80)}")


def sane(value: Any, where: str = "value", depth: int = 0, *, exponent: int | None = 40) -> None:
    """Raise `Insane` if a parsed value holds an infinite number (or, with `exponent`, one
    beyond 1e`exponent` or below 1e-`exponent`), a non-UTC datetime, or a field of another
    type than its annotation says."""
    if depth > 8:
        return
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise Insane(f"{where} is {value}")
        if exponent is not None and value and not -exponent <= value.adjusted() <= exponent:
            raise Insane(f"{where} is out of range: {value}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise Insane(f"{where} is {value}")
    elif isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() != timedelta(0):
            raise Insane(f"{where} is not a UTC datetime: {value!r}")
    elif isinstance(value, tuple) and hasattr(value, "_fields"):
        for name, item in zip(value._fields, value, strict=True):
            _typed(type(value), name, item, f"{where}.{name}")
            sane(item, f"{where}.{name}", depth + 1, exponent=exponent)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            _typed(type(value), f.name, item, f"{where}.{f.name}")
            sane(item, f"{where}.{f.name}", depth + 1, exponent=exponent)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value[:200]):
            sane(item, f"{where}[{i}]", depth + 1, exponent=exponent)
    elif isinstance(value, dict):
        for key, item in list(value.items())[:200]:
            sane(item, f"{where}[{key!r}]", depth + 1, exponent=exponent)


def sane_book(book: Any) -> None:
    """A live book is uncrossed, and every level a finite price with a positive size."""
    for side in (book.bids, book.asks):
        for price, size in side.items():
            if not (price.is_finite() and size.is_finite() and price > 0 and size > 0):
                raise Insane(f"book level {price}: {size}")
    if book.fresh and book.bids and book.asks and book.best_bid()[0] >= book.best_ask()[0]:
        raise Insane(f"a live book is crossed: {book.best_bid()} >= {book.best_ask()}")


# ============================================================================ seeds


def _ndjson(name: str) -> list[Any]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def _dump(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _ok(data: Any) -> dict[str, Any]:
    return {"code": "200000", "data": data}


class Seeds:
    """Every recorded payload, by kind, read once."""

    def __init__(self) -> None:
        static = json.loads((DATA / "ccxt_static_response_kucoin.json").read_text())["methods"]
        self.replies: dict[str, list[Any]] = {
            method: [case["httpResponse"] for case in cases] for method, cases in static.items()
        }
        session = _ndjson("cryptofeed_kucoin_ws_2021-04-25.ndjson")
        self.session_in = [e["msg"] for e in session if e.get("dir") == "in" and "msg" in e]
        self.connect_url = next(e["url"] for e in session if e.get("dir") == "connect")
        recorded = _ndjson("cryptofeed_kucoin_rest_orderbook_level2_snapshots_2021-04-25.ndjson")
        self.snapshots = [e["response"] for e in recorded]
        self.snapshot_symbols = [e["url"].rsplit("symbol=", 1)[1] for e in recorded]
        self.frames: list[Any] = []
        by_topic: dict[str, int] = {}
        for frame in self.session_in:  # the session, at most 12 frames of each kind
            kind = f"{frame.get('type')}:{str(frame.get('topic', '')).split(':')[0]}"
            by_topic[kind] = by_topic.get(kind, 0) + 1
            if by_topic[kind] <= 12:
                self.frames.append(frame)
        self.frames += _ndjson("gocryptotrader_kucoin_wsHandleData.ndjson")
        self.frames += _ndjson("gocryptotrader_kucoin_wsMarketSnapshot.ndjson")
        jkorf = DATA / "jkorf_kucoin_ws_spot_subscription_fixtures.json"
        fixtures = json.loads(jkorf.read_text())
        for f in fixtures["files"]:
            for exchange in f["exchange"]:
                if exchange["dir"] in ("server_push", "server_reply") and isinstance(
                    exchange["msg"], dict
                ):
                    self.frames.append(exchange["msg"])
        errors = json.loads((DATA / "ccxt_kucoin_error_bodies.json").read_text())["errors"]
        self.error_bodies = [b for e in errors for b in e["recorded_bodies"]]
        shipped = ROOT / "rules_engine" / "data" / "symbols_snapshot.json"
        self.symbols_snapshot = json.loads(shipped.read_text())

    def small_snapshot(self, response: Any, levels: int = 25) -> Any:
        data = dict(response["data"])
        data["bids"], data["asks"] = data["bids"][:levels], data["asks"][:levels]
        return {**response, "data": data}

    def level2_deltas(self) -> list[Any]:
        return [f for f in self.session_in if str(f.get("topic", "")).startswith("/market/level2:")]


def _pool(documents: Sequence[Any]) -> dict[str, list[Any]]:
    """Field name -> up to 40 small values seen under it, for splicing between payloads."""
    pool: dict[str, list[Any]] = {}

    def walk(node: Any, depth: int) -> None:
        if depth > 6:
            return
        if isinstance(node, dict):
            for k, v in node.items():
                values = pool.setdefault(k, [])
                if len(values) < 40 and len(_dump(v)) < 600 and v not in values:
                    values.append(v)
                walk(v, depth + 1)
        elif isinstance(node, list):
            for v in node[:20]:
                walk(v, depth + 1)

    for doc in documents:
        walk(doc, 0)
    return {k: v for k, v in pool.items() if v}


# ============================================================================ targets


@dataclasses.dataclass
class Target:
    name: str
    seeds: list[bytes]
    feed: Feed
    kind: str = "json"  # json | text | toml | rules | once
    weight: float = 1.0


def _rest(parser: Callable[[Any], Any]) -> Feed:
    """The client's path for a REST reply: classify the body, parse `data` when OK."""
    from rules_engine.adapters.kucoin._errors import Action, Outcome, classify_reply
    from rules_engine.adapters.kucoin._parsing import PayloadError

    def feed(body: bytes) -> bool:
        outcome = classify_reply(200, body, order=False)
        if not isinstance(outcome, Outcome):
            raise Insane(f"classify_reply returned {outcome!r}")
        if outcome.action is not Action.OK:
            return False
        try:
            value = parser(outcome.data)
        except PayloadError:
            return False
        sane(value)
        return True

    return feed


def _classify_feed() -> Feed:
    from rules_engine.adapters.kucoin._errors import Action, Outcome, classify_reply

    statuses = (200, 200, 200, 400, 401, 403, 404, 429, 500, 502, 503)

    def feed(body: bytes) -> bool:
        # the status and the order flag are drawn from the body so a saved input replays
        digest = hashlib.sha256(body).digest()
        status, order = statuses[digest[0] % len(statuses)], bool(digest[1] & 1)
        outcome = classify_reply(status, body, order=order)
        if not (isinstance(outcome, Outcome) and isinstance(outcome.action, Action)):
            raise Insane(f"classify_reply returned {outcome!r}")
        if not isinstance(outcome.message, str) or not (
            outcome.code is None or isinstance(outcome.code, str)
        ):
            raise Insane(f"an Outcome with a bad code or message: {outcome!r}")
        return outcome.action is Action.OK

    return feed


def _decode_frame(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def _ws_message_feed() -> Feed:
    from rules_engine.adapters.kucoin._book import Delta
    from rules_engine.adapters.kucoin._parsing import PayloadError, parse_ws_message

    def feed(data: bytes) -> bool:
        frame = _decode_frame(data)
        if not isinstance(frame, dict) or frame.get("type") != "message":
            return False  # the reader drops these before any parser (see ws_dispatch)
        try:
            event = parse_ws_message(frame)
        except PayloadError:
            return False
        sane(event)
        if isinstance(event, Delta):
            for row in [*event.bids, *event.asks]:
                price, size, sequence = row
                if not (Decimal(price).is_finite() and Decimal(size).is_finite()):
                    raise Insane(f"a delta row that is not numeric: {row!r}")
                int(sequence)
        return True

    return feed


def _ws_dispatch_feed(cleanups: list[Callable[[], None]]) -> Feed:
    from rules_engine.adapters.kucoin._parsing import PayloadError, parse_ws_message
    from rules_engine.adapters.kucoin._rest import KucoinRest
    from rules_engine.adapters.kucoin._ws import KucoinWs

    loop = asyncio.new_event_loop()  # only to make the futures of pending subscriptions
    cleanups.append(loop.close)
    parsed = [0]

    def on_message(frame: dict[str, Any]) -> None:
        with contextlib.suppress(PayloadError):
            parse_ws_message(frame)
            parsed[0] += 1

    client = KucoinWs(KucoinRest("http://127.0.0.1:9"), on_message=on_message)

    def feed(data: bytes) -> bool:
        # pending subscriptions, under the ids the recorded frames carry
        client._acks.clear()
        for frame_id in ("1", "|1|", "|2|", "welcome"):
            client._acks[frame_id] = loop.create_future()
        before = parsed[0]
        text = data.decode("utf-8", "replace")
        client.on_text(text)
        client.on_text(text)  # the same frame twice: a second ack must not break the reader
        return parsed[0] > before

    return feed


def _book_seeds(seeds: Seeds) -> list[bytes]:
    """The first recorded level2 deltas of each symbol."""
    by_symbol: dict[str, list[Any]] = {}
    for frame in seeds.level2_deltas():
        by_symbol.setdefault(frame["topic"].split(":", 1)[1], []).append(frame)
    return [_dump(f) for frames in by_symbol.values() for f in frames[:15]]


def _ws_book_feed(seeds: Seeds) -> Feed:
    from rules_engine.adapters.kucoin._book import Delta, Level2Book
    from rules_engine.adapters.kucoin._parsing import PayloadError, parse_level2, parse_ws_message

    levels: dict[str, tuple[list[list[str]], list[list[str]]]] = {}
    for symbol, response in zip(seeds.snapshot_symbols, seeds.snapshots, strict=True):
        _, bids, asks = parse_level2(response["data"])
        levels[symbol] = (bids[:25], asks[:25])
    fallback = next(iter(levels.values()))

    def feed(data: bytes) -> bool:
        frame = _decode_frame(data)
        if not isinstance(frame, dict):
            return False
        try:
            event = parse_ws_message(frame)
        except PayloadError:
            return False
        if not isinstance(event, Delta):
            return False
        symbol = str(frame.get("topic", "")).split(":", 1)[-1]
        bids, asks = levels.get(symbol, fallback)
        book = Level2Book(symbol, NOW)
        # the book just before the delta, or overlapping it (then each change's own sequence
        # decides), chosen by the input so a saved one replays alike
        before = (event.start - 1, event.start, event.end - 1)[hashlib.sha256(data).digest()[0] % 3]
        book.on_snapshot(max(before, 0), bids, asks, NOW)
        book.on_delta(event, NOW)
        book.on_delta(event, NOW)  # a duplicate: dropped
        sane_book(book)
        return True

    return feed


def _market_cli_feed() -> Feed:
    from rules_engine.adapters.kucoin._rest import KucoinRest
    from rules_engine.cli.market import _Market

    class Market(_Market):
        resyncs = 0

        def resync(self, symbol: str) -> None:  # no network: count the request
            self.resyncs += 1

    rest = KucoinRest("http://127.0.0.1:9")

    def feed(data: bytes) -> bool:
        frame = _decode_frame(data)
        if not isinstance(frame, dict) or frame.get("type") != "message":
            return False
        market = Market(rest, SYMBOLS)
        for book in market.books.values():
            book.on_snapshot(0, [["1", "1"]], [["2", "1"]], NOW)
        market.on_message(frame)
        for book in market.books.values():
            sane_book(book)
        return True

    return feed


SYMBOLS = ["BTC-USDT", "ETH-USDT", "BCHSV-USDT", "SNX-BTC", "CAPP-BTC", "ANKR-BTC", "FET-BTC",
           "DAPPT-BTC", "NRG-BTC", "COV-BTC", "EQZ-BTC", "LTX-USDT", "KCS-USDT", "FTM-ETH"]


class FeedStand:
    """What the watcher's market-data part (`runtime/_feeds.Feeds`) uses of the rest of
    the watcher, and nothing more: a clock, an event log, and a failure that raises (so a
    crash in a handler is the fuzzer's, never swallowed). Frames go in through the KuCoin
    feed's own stream handler, as on the socket: parsed by the adapter, routed by what
    they parsed to."""

    def __init__(self, now: datetime, books: list[str], leaves: list[Any],
                 series: dict[tuple[str, str], Any] | None = None,
                 max_age: dict[str, int] | None = None) -> None:
        import asyncio

        from rules_engine.adapters.kucoin import KucoinFeed
        from rules_engine.runtime._feeds import Feeds
        from rules_engine.runtime._market import MarketState

        self.at = now
        self.events: list[str] = []
        self.changed: list[str] = []
        self.stop = asyncio.Event()
        self.feed = KucoinFeed(None)  # type: ignore[arg-type] # the stream never connects
        market = MarketState(leaves, max_age=max_age or {})
        self.feeds = Feeds(self, market, [], self._on_changed)  # type: ignore[arg-type]
        for symbol in books:
            book = self._book(symbol)
            self.feeds.books[symbol] = book
            market.set_book(symbol, book)
        for (symbol, timeframe), one in (series or {}).items():
            self.feeds.series[(symbol, timeframe)] = one
            market.set_candles(symbol, timeframe, one)
        self.stream = self.feed.stream(self.feeds.on_event, self.feeds.on_bad,
                                       lambda state, reason: None)

    def _book(self, symbol: str) -> Any:
        from rules_engine.adapters.kucoin import Level2Book

        book = Level2Book(symbol, self.at)
        book.on_snapshot(0, [["1", "1"]], [["2", "1"]], self.at)
        return book

    @property
    def books(self) -> dict[str, Any]:
        return self.feeds.books

    @property
    def market(self) -> Any:
        return self.feeds.market

    @property
    def series(self) -> dict[tuple[str, str], Any]:
        return self.feeds.series

    def frame(self, frame: dict[str, Any]) -> None:
        self.stream.on_message(frame)

    def now(self) -> datetime:
        return self.at

    def event(self, kind: str, data: dict[str, Any], identity: str | None = None,
              oid: str | None = None) -> None:
        json.dumps(data)  # events are written as JSON lines
        self.events.append(kind)

    def spawn(self, coro: Any) -> None:
        coro.close()  # a snapshot fetch: no exchange here

    def fail_on(self, error: BaseException) -> None:
        raise error

    def _on_changed(self, symbol: str, changes: list[Any], now: datetime) -> None:
        if symbol:
            self.changed.append(symbol)


def _watcher_feed(seeds: Seeds) -> Feed:
    """The watcher's public-frame path (the KuCoin feed's stream handler into
    `runtime/_feeds.Feeds`) with real books, market state and candle series (all pure)."""
    from rules_engine.adapters.kucoin._parsing import parse_candles_reply
    from rules_engine.compiler import _model as M
    from rules_engine.engine._candles import CandleSeries

    history = parse_candles_reply("BTC-USDT", "1hour", seeds.replies["fetchOHLCV"][0]["data"])
    later = history[-1].open_time + timedelta(minutes=30)
    leaves = [M.Field(s, name) for s in SYMBOLS for name in ("bid", "ask", "last", "volume")]

    def stand() -> FeedStand:
        series = CandleSeries("BTC-USDT", "1h", keep=30)
        series.load(history, later)
        return FeedStand(later, SYMBOLS, leaves, {("BTC-USDT", "1h"): series},
                         max_age={"last": 30})

    def feed(data: bytes) -> bool:
        frame = _decode_frame(data)
        if not isinstance(frame, dict) or frame.get("type") != "message":
            return False
        one = stand()
        one.frame(frame)
        for book in one.books.values():
            sane_book(book)
        for series in one.series.values():
            for kind, period in (("sma", 3), ("ema", 3), ("rsi", 3), ("close", None)):
                sane(series.value(kind, period))
        sane(list(one.market.values.values()))
        return bool(one.changed)

    return feed


def _level2_feed() -> Feed:
    from rules_engine.adapters.kucoin._book import Level2Book
    from rules_engine.adapters.kucoin._parsing import parse_level2

    def parse(data: Any) -> Any:
        sequence, bids, asks = parse_level2(data)
        book = Level2Book("BTC-USDT", NOW)
        book.on_snapshot(sequence, bids, asks, NOW)
        sane_book(book)
        return sequence, bids, asks

    return _rest(parse)


def _retry_after_feed() -> Feed:
    from rules_engine.adapters.kucoin._rest import RatePools, retry_after_seconds

    def feed(data: bytes) -> bool:
        text = data.decode("utf-8", "surrogateescape")
        seconds = retry_after_seconds(text)
        if not (math.isfinite(seconds) and seconds >= 0):
            raise Insane(f"Retry-After {text!r} -> {seconds}")
        parts = [*text.split("|"), "", "", ""][:3]
        pools = RatePools(clock=lambda: 0.0)
        headers = dict(zip(("gw-ratelimit-limit", "gw-ratelimit-remaining",
                            "gw-ratelimit-reset"), parts, strict=True))
        observed = pools.observe("spot", headers)
        wait = pools.wait_for("spot", 3)
        if not (math.isfinite(wait) and wait >= 0):
            raise Insane(f"rate-limit headers {headers!r} -> wait {wait}")
        return observed or seconds > 0

    return feed


def _file_feed(suffix: str, call: Callable[[Path], Any], clean: tuple[type[BaseException], ...],
               ) -> tuple[Feed, Callable[[], None]]:
    """Feeds that go through a file, as the program reads one (one temporary file reused)."""
    directory = tempfile.TemporaryDirectory(prefix="rules-engine-fuzz-")
    path = Path(directory.name) / f"input{suffix}"

    def feed(data: bytes) -> bool:
        path.write_bytes(data)
        try:
            value = call(path)
        except clean:
            return False
        sane(value)
        return True

    return feed, directory.cleanup


def _without_settings(load: Callable[[Path, dict[str, Any]], Any]) -> Callable[[Path], Any]:
    """`load_config` of the file alone: the developer's RULES_ENGINE_* settings set aside."""

    def call(path: Path) -> Any:
        saved = {k: v for k, v in os.environ.items() if k.startswith("RULES_ENGINE_")}
        for name in saved:
            del os.environ[name]
        try:
            return load(path, {})
        finally:
            os.environ.update(saved)

    return call


def _lint_feed(codes: frozenset[str]) -> Feed:
    from rules_engine.compiler import Compiler, shipped_symbols
    from rules_engine.dsl import SourceFile, format_github, format_json, format_text

    symbols = shipped_symbols()

    def feed(data: bytes) -> bool:
        source = SourceFile.from_bytes("fuzz.rules", data)
        program = Compiler(symbols).compile([source])
        lines = source.text.split("\n")  # the lexer's lines: "\r" or "\u2028" end none
        for d in program.diagnostics:
            if d.code not in codes:
                raise Insane(f"a diagnostic with an undocumented code: {d}")
            if not (1 <= d.span.line <= len(lines) and d.span.column >= 1 and d.message):
                raise Insane(f"a diagnostic outside the file ({len(lines)} lines): {d}")
            if d.span.column > len(lines[d.span.line - 1]) + 2:
                raise Insane(f"a diagnostic past the end of its line: {d}")
        format_text(program.diagnostics, {source.path: source})
        format_json(program.diagnostics)
        format_github(program.diagnostics)
        return not program.errors

    return feed


def documented_codes() -> frozenset[str]:
    text = (ROOT / "docs" / "diagnostics.md").read_text()
    return frozenset(re.findall(r"^### ([EWN]\d{3})\b", text, re.MULTILINE))


def rule_corpus() -> list[str]:
    """The examples, the broken files of the lint corpus, and every rules block of the docs."""
    texts = [p.read_text() for p in sorted((ROOT / "examples").glob("*.rules"))]
    texts += [p.read_text() for p in sorted((ROOT / "tests" / "data" / "broken").glob("*.rules"))]
    for doc in sorted((ROOT / "docs").glob("*.md")):
        texts += re.findall(r"```rules\n(.*?)```", doc.read_text(), re.DOTALL)
    return texts


def lint_cli_check(texts: Sequence[bytes]) -> tuple[int, int, list[str]]:
    """`rules-engine lint` on the files: (parsed, clean, problems)."""
    script = Path(sys.executable).with_name("rules-engine")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "rules_engine"]
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="rules-engine-fuzz-") as directory:
        paths = []
        for i, data in enumerate(texts):
            path = Path(directory) / f"mutated{i}.rules"
            path.write_bytes(data)
            paths.append(str(path))
        parsed = clean = 0
        for fmt in ("text", "json"):
            result = subprocess.run(
                [*command, "lint", "--format", fmt, *paths],
                capture_output=True, timeout=120, check=False,
            )
            output = result.stdout + result.stderr
            if result.returncode not in (0, 1) or b"Traceback" in output:
                problems.append(f"lint --format {fmt}: exit {result.returncode}: "
                                f"{output[-300:].decode('utf-8', 'replace')}")
            elif result.returncode == 0:
                parsed += 1
            else:
                clean += 1
            if fmt == "json" and result.returncode in (0, 1):
                try:
                    json.loads(result.stdout)
                except ValueError:
                    problems.append("lint --format json did not print JSON")
    return parsed, clean, problems


def build_targets(seeds: Seeds | None = None) -> tuple[list[Target], list[Callable[[], None]]]:
    """Every target, and the clean-ups of their temporary files."""
    from rules_engine.adapters.kucoin._parsing import (
        parse_accounts,
        parse_bullet,
        parse_candles_reply,
        parse_fills_page,
        parse_order,
        parse_orders_page,
        parse_server_time,
        parse_stats,
    )
    from rules_engine.cli.lint import LintUsageError, _symbols_and_market
    from rules_engine.runtime._config import ConfigError, load_config
    from rules_engine.sandbox.errors import ApiFailureError
    from rules_engine.sandbox.rest import order_request
    from rules_engine.sandbox.server import parse_body

    s = seeds or Seeds()
    r = s.replies
    cleanups: list[Callable[[], None]] = []

    def orders_of(method: str) -> list[Any]:
        return [_ok(item) for reply in r[method] for item in reply["data"]["items"]]

    rest_bodies = [reply for replies in r.values() for reply in replies]
    rest_bodies += [s.small_snapshot(x) for x in s.snapshots] + s.error_bodies
    endpoint = s.connect_url.split("?", 1)[0]
    bullet = _ok({"token": "TOKEN", "instanceServers": [{
        "endpoint": endpoint, "encrypt": True, "protocol": "websocket",
        "pingInterval": 18000, "pingTimeout": 10000}]})
    times = [_ok(x["data"]["time"]) for x in s.snapshots]
    times.append(_ok(str(s.snapshots[0]["data"]["time"])))  # as a string, as some replies do

    tickers = []
    ticker_frames = [f for f in s.session_in if "/market/ticker" in str(f.get("topic"))]
    for i in range(0, 60, 12):
        rows = []
        for frame in ticker_frames[i : i + 12]:
            data = frame["data"]
            rows.append({"symbol": frame["topic"].split(":", 1)[1], "last": data["price"],
                         "buy": data["bestBid"], "sell": data["bestAsk"], "vol": data["size"]})
        tickers.append(_ok({"time": s.snapshots[0]["data"]["time"], "ticker": rows}))

    snap = s.symbols_snapshot
    rows = snap["reply"]["data"]
    symbol_docs: list[Any] = [_ok(rows[i : i + 4]) for i in range(0, 40, 4)]
    symbol_docs.append({**snap, "reply": _ok(rows[:3])})  # the snapshot's own wrapper
    symbol_docs.append(_ok([row for row in rows if row["symbol"] == "BTC-USDT"]))

    def lint_args(symbols: Path | None, tickers_file: Path | None) -> argparse.Namespace:
        return argparse.Namespace(symbols=str(symbols) if symbols else None, fetch_symbols=False,
                                  tickers=str(tickers_file) if tickers_file else None,
                                  exchange_url="https://api.kucoin.com")

    symbols_feed, done = _file_feed(
        ".json", lambda p: _symbols_and_market(lint_args(p, None)), (LintUsageError,))
    cleanups.append(done)
    def lint_with_tickers(path: Path) -> Any:
        """`lint --tickers FILE` on a limit order of each symbol: W602 compares its price."""
        from rules_engine.compiler import compile_sources
        from rules_engine.dsl import SourceFile

        symbols, market = _symbols_and_market(lint_args(None, path))
        assert market is not None
        text = "".join(f"when {symbol} last > 0 place limit buy 1 at 60000\n"
                       for symbol in list(market.last)[:5])
        compile_sources([SourceFile("t.rules", text)], symbols, market)
        return market

    tickers_feed, done = _file_feed(".json", lint_with_tickers, (LintUsageError,))
    cleanups.append(done)
    config_feed, done = _file_feed(".toml", _without_settings(load_config), (ConfigError,))
    cleanups.append(done)

    toml_text = (ROOT / "examples" / "watcher.toml").read_text()
    uncommented = re.sub(r"^# (\w+ = )", r"\1", toml_text, flags=re.MULTILINE)

    order_keys = ("clientOid", "symbol", "side", "type", "price", "size", "funds", "timeInForce",
                  "postOnly", "hidden", "iceberg", "visibleSize", "cancelAfter", "stp", "remark",
                  "tags", "stop", "stopPrice")
    recorded_orders = [o["data"] for o in orders_of("fetchOpenOrders") + orders_of(
        "fetchClosedOrders")] + [x["data"] for x in r["fetchOrder"]]
    bodies = [{k: v for k, v in o.items() if k in order_keys and v not in (None, "")}
              for o in recorded_orders]

    def sandbox_feed(data: bytes) -> bool:
        body = parse_body(data)  # the server's own decoding: a clean 400 when it is a str
        if isinstance(body, str):
            return False
        flags = hashlib.sha256(data).digest()[0]
        try:
            request = order_request(body, hf=bool(flags & 1), stop=bool(flags & 2))
        except ApiFailureError:
            return False
        sane(request, exponent=None)  # the sandbox takes any finite number and refuses later
        return True

    book_frames = _book_seeds(s)
    candle_frames = [_dump({
        "type": "message", "topic": "/market/candles:BTC-USDT_1hour",
        "subject": "trade.candles.update",
        "data": {"symbol": "BTC-USDT", "candles": row, "time": int(row[0]) * 10**9}})
        for row in r["fetchOHLCV"][0]["data"][:3]]  # the recorded candles, as frames
    frames = [_dump(f) for f in s.frames]
    corpus = rule_corpus()
    targets = [
        Target("lint", [t.encode() for t in corpus], _lint_feed(documented_codes()), "rules", 4),
        Target("lint_cli", [t.encode() for t in corpus], lambda data: True, "once", 0),
        Target("classify_reply", [_dump(b) for b in rest_bodies] + [
            b"", b"<html><body><h1>502 Bad Gateway</h1></body></html>"], _classify_feed()),
        Target("ws_message", frames, _ws_message_feed(), weight=2),
        Target("ws_dispatch", frames, _ws_dispatch_feed(cleanups)),
        Target("ws_book", book_frames, _ws_book_feed(s)),
        Target("market_cli", frames + book_frames, _market_cli_feed()),
        Target("watcher_frame", frames + book_frames + candle_frames, _watcher_feed(s)),
        Target("level2", [_dump(s.small_snapshot(x)) for x in s.snapshots] + [
            _dump(x) for x in r["fetchOrderBook"]], _level2_feed()),
        Target("order", [_dump(x) for x in r["fetchOrder"] + orders_of("fetchOpenOrders")
                         + orders_of("fetchClosedOrders")], _rest(parse_order)),
        Target("orders_page", [_dump(x) for x in r["fetchOpenOrders"] + r["fetchClosedOrders"]],
               _rest(parse_orders_page)),
        Target("fills_page", [_dump(x) for x in r["fetchMyTrades"]], _rest(parse_fills_page)),
        Target("stats", [_dump(x) for x in r["fetchTicker"]], _rest(parse_stats)),
        Target("accounts", [_dump(x) for x in r["fetchBalance"]], _rest(parse_accounts)),
        Target("candles", [_dump(x) for x in r["fetchOHLCV"]],
               _rest(lambda d: parse_candles_reply("BTC-USDT", "1hour", d))),
        Target("bullet", [_dump(bullet)], _rest(parse_bullet)),
        Target("server_time", [_dump(t) for t in times], _rest(parse_server_time)),
        Target("retry_after", [b"", b"1", b"30", b"1|1|1", b"2000|1997|29865", b"100|0|100"],
               _retry_after_feed(), "text"),
        Target("symbols", [_dump(d) for d in symbol_docs], symbols_feed),
        Target("tickers", [_dump(d) for d in tickers], tickers_feed),
        Target("config", [toml_text.encode(), uncommented.encode()], config_feed, "toml"),
        Target("sandbox_order", [_dump(b) for b in bodies], sandbox_feed),
    ]
    return targets, cleanups


# ============================================================================ running


@dataclasses.dataclass
class Crash:
    target: str
    data: bytes
    error: str  # the traceback's last line
    where: str  # the innermost frame in rules_engine (file:line)
    trace: str
    signature: str = ""  # the exception type and `where`: one crash of each is kept


@dataclasses.dataclass
class Stats:
    target: str
    seeds: int = 0  # inputs tried unmutated first
    tried: int = 0
    parsed: int = 0
    clean: int = 0
    crashes: list[Crash] = dataclasses.field(default_factory=list)
    slowest: float = 0.0  # seconds
    signatures: dict[str, int] = dataclasses.field(default_factory=dict)


def _place(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    inner = [f for f in frames if "rules_engine" in f.filename] or frames
    if not inner:
        return "?"
    frame = inner[-1]
    try:
        name = str(Path(frame.filename).resolve().relative_to(ROOT))
    except ValueError:
        name = frame.filename
    return f"{name}:{frame.lineno}"


def _cut(text: str, size: int) -> str:
    return text if len(text) <= size else text[:size] + f"... ({len(text)} chars)"


def try_one(target: Target, data: bytes, stats: Stats) -> None:
    started = time.perf_counter()
    limit = sys.getrecursionlimit()
    try:
        with watchdog(HANG_SECONDS):
            ok = target.feed(data)
    except Exception as error:  # anything escaping the parser is the finding
        trace = "".join(traceback.format_exception(error))
        last = traceback.format_exception_only(error)[-1].strip()
        where = _place(error)
        signature = f"{type(error).__name__} at {where}"
        stats.signatures[signature] = stats.signatures.get(signature, 0) + 1
        known = [c for c in stats.crashes if c.signature == signature]
        crash = Crash(target.name, data, _cut(last, 240), where, trace, signature)
        if not known:
            stats.crashes.append(crash)
        elif len(data) < len(known[0].data):  # keep the shortest input of each kind
            stats.crashes[stats.crashes.index(known[0])] = crash
    else:
        if ok:
            stats.parsed += 1
        else:
            stats.clean += 1
    finally:
        sys.setrecursionlimit(limit)
    stats.tried += 1
    stats.slowest = max(stats.slowest, time.perf_counter() - started)


def crash_count(stats: Stats) -> int:
    return sum(stats.signatures.values())


def inputs(target: Target, rng: random.Random, pool: dict[str, list[Any]],
           corpus: Sequence[str], words: Sequence[str]) -> Iterator[bytes]:
    """The seeds as they are, then mutants forever."""
    yield from target.seeds
    siblings = []
    for seed in target.seeds if target.kind == "json" else ():
        with contextlib.suppress(ValueError):
            siblings.append(json.loads(seed))
    mutator = Mutator(rng, pool, siblings)
    texts = [s.decode("utf-8", "replace") for s in target.seeds]
    while True:
        seed = rng.choice(target.seeds)
        if target.kind == "json":
            yield mutator.json_input(seed, target.seeds)
        elif target.kind == "rules":
            yield rules_input(rng, rng.choice(texts), corpus, words)
        elif target.kind == "toml":
            text = rng.choice(texts)
            if rng.random() < 0.5:
                yield rules_input(rng, text, texts, TOML_WORDS)
            else:
                yield mutator.raw(seed, target.seeds)
        else:
            yield mutator.raw(seed, target.seeds)


TOML_WORDS = [
    "=", "[", "]", "{", "}", '"', "'''", "[[x]]", "[risk]", "[max_age]", "nan", "inf", "-inf",
    "1e309", "9" * 30, "-1", "0", "true", "false", '"\\ud800"', "1979-05-27T07:32:00Z",
    "[" * 3000 + "]" * 3000, "{a=" * 500 + "1" + "}" * 500, "risk.max_open_orders = 0",
    "webhooks = [1]", "mode = 'live'", "\x00", "\\", "\ufeff", "a.b.c = 1",
]


def vocabulary(corpus: Sequence[str]) -> list[str]:
    from rules_engine.dsl import KEYWORDS

    words = sorted({m.group() for text in corpus for m in WORD.finditer(text)})
    return [*sorted(KEYWORDS), *words, *EXOTIC_TEXT]


def run(seconds: float = 60.0, seed: int = 1, *, only: Sequence[str] = (),
        out: typing.TextIO | None = None, save: Path | None = CRASH_DIR) -> list[Stats]:
    """Fuzz every target (or `only` those) for `seconds` in all; print the table to `out`."""
    out = out or sys.stdout
    print(f"fuzz: seed {seed}, {seconds:g} s in all", file=out, flush=True)
    seeds = Seeds()
    targets, cleanups = build_targets(seeds)
    if only:
        unknown = set(only) - {t.name for t in targets}
        if unknown:
            raise SystemExit(f"fuzz: unknown targets: {', '.join(sorted(unknown))}")
        targets = [t for t in targets if t.name in only]
    all_docs = []
    for target in targets:
        for data in target.seeds if target.kind == "json" else ():
            with contextlib.suppress(ValueError):
                all_docs.append(json.loads(data))
    pool = _pool(all_docs)
    corpus = rule_corpus()
    words = vocabulary(corpus)
    results: list[Stats] = []
    started = time.perf_counter()
    try:
        for target in [t for t in targets if t.kind == "once"]:
            rng = random.Random(f"{seed}:{target.name}")
            stats = Stats(target.name)
            texts = [rules_input(rng, rng.choice(corpus), corpus, words) for _ in range(6)]
            t0 = time.perf_counter()
            parsed, clean, problems = lint_cli_check(texts)
            stats.tried, stats.parsed, stats.clean = 2, parsed, clean
            stats.slowest = time.perf_counter() - t0
            for problem in problems:
                stats.signatures[problem[:60]] = 1
                stats.crashes.append(Crash(target.name, b"\n#---\n".join(texts), problem,
                                           "rules-engine lint", problem, problem[:60]))
            results.append(stats)
        looping = [t for t in targets if t.kind != "once"]
        remaining = max(seconds - (time.perf_counter() - started), 0.0)
        total_weight = sum(t.weight for t in looping) or 1.0
        for target in looping:
            budget = remaining * target.weight / total_weight
            rng = random.Random(f"{seed}:{target.name}")
            stats = Stats(target.name, len(target.seeds))
            deadline = time.perf_counter() + budget
            for data in inputs(target, rng, pool, corpus, words):
                try_one(target, data, stats)
                if time.perf_counter() >= deadline and stats.tried >= len(target.seeds) + 20:
                    break  # (every target tries its seeds and 20 mutants, whatever the budget)
            results.append(stats)
    finally:
        for cleanup in cleanups:
            cleanup()
    report(results, out, save)
    return results


def report(results: Sequence[Stats], out: typing.TextIO, save: Path | None) -> None:
    header = f"{'target':<16}{'inputs':>9}{'parsed':>9}{'clean':>9}{'crashes':>9}{'slowest':>10}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for s in results:
        print(f"{s.target:<16}{s.tried:>9}{s.parsed:>9}{s.clean:>9}{crash_count(s):>9}"
              f"{s.slowest * 1000:>8.1f}ms", file=out)
    total = sum(s.tried for s in results)
    crashes = sum(crash_count(s) for s in results)
    print("-" * len(header), file=out)
    print(f"{'total':<16}{total:>9}{sum(s.parsed for s in results):>9}"
          f"{sum(s.clean for s in results):>9}{crashes:>9}", file=out)
    for s in results:
        for crash in s.crashes:
            print(f"\nCRASH {crash.target}: {crash.error}\n  at {crash.where} "
                  f"({s.signatures.get(crash.signature, 1)} inputs)\n"
                  f"  input {_cut(repr(crash.data), 300)}", file=out)
            if save is not None:
                path = save_crash(crash, save)
                print(f"  saved {path} (replay: benchmarks/fuzz --replay {path})", file=out)


def save_crash(crash: Crash, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(crash.data).hexdigest()[:12]
    path = directory / f"{crash.target}__{digest}.bin"
    path.write_bytes(crash.data)
    path.with_suffix(".txt").write_text(crash.trace)
    return path


def replay(paths: Sequence[str], out: typing.TextIO | None = None) -> int:
    """Feed saved inputs to their targets again; 1 if any still crashes."""
    out = out or sys.stdout
    targets, cleanups = build_targets()
    by_name = {t.name: t for t in targets}
    failed = 0
    try:
        for name in paths:
            path = Path(name)
            target = by_name.get(path.name.split("__", 1)[0])
            if target is None:
                print(f"{path}: no target named by the file name", file=out)
                failed += 1
                continue
            stats = Stats(target.name)
            try_one(target, path.read_bytes(), stats)
            if stats.crashes:
                failed += 1
                print(f"{path}: still crashes: {stats.crashes[0].error}\n"
                      f"{stats.crashes[0].trace}", file=out)
            else:
                print(f"{path}: {'parsed' if stats.parsed else 'clean error'}", file=out)
    finally:
        for cleanup in cleanups:
            cleanup()
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="benchmarks/fuzz",
        description="Mutation-fuzz the linter, every KuCoin payload parser, the config loader "
        "and the sandbox's order bodies; exit 1 on any crash.",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="total budget (default 60)")
    parser.add_argument("--seed", type=int, default=None, help="default: random, printed")
    parser.add_argument("--only", default="", help="comma-separated targets")
    parser.add_argument("--replay", nargs="+", metavar="FILE", help="replay saved inputs")
    parser.add_argument("--crash-dir", default=str(CRASH_DIR))
    args = parser.parse_args(argv)
    if args.replay:
        return replay(args.replay)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    only = [t for t in args.only.split(",") if t]
    results = run(args.seconds, seed, only=only, save=Path(args.crash_dir))
    return 1 if any(crash_count(s) for s in results) else 0
