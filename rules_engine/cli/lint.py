"""`rules-engine lint PATH... [--format text|json|github] [--symbols FILE | --fetch-symbols]
[--tickers FILE] [--config FILE] [--max-order-value AMOUNT]`.

Exit 0 when there are no errors (warnings allowed), 1 when there are, 2 for a usage or IO
error (a path that does not exist, a symbols file that cannot be read, a failed fetch).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import tomllib
import urllib.error
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from rules_engine.compiler import Compiler, MarketSnapshot, SafetyLimits, shipped_symbols
from rules_engine.core.symbols import SymbolDataError, SymbolTable, parse_symbols_reply
from rules_engine.dsl import (
    Severity,
    SourceFile,
    apply_fixes,
    format_github,
    format_json,
    format_text,
)
from rules_engine.runtime._reload import rule_files_in

__all__ = ["register", "run_lint"]

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2
DEFAULT_EXCHANGE = "https://api.kucoin.com"


class LintUsageError(Exception):
    """A usage or IO problem: reported on one line, exit 2."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "lint",
        help="check rule files and report every problem",
        description="Parse, compile and check rule files. Folders are searched for *.rules.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="rule files or folders")
    parser.add_argument("--format", choices=("text", "json", "github"), default="text")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--symbols", metavar="FILE", help="a saved /api/v2/symbols reply")
    source.add_argument(
        "--fetch-symbols",
        action="store_true",
        help="fetch the symbols list (and last prices) from the exchange and cache it",
    )
    parser.add_argument(
        "--tickers",
        metavar="FILE",
        help="a saved /api/v1/market/allTickers reply: warns about limit prices far from market",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the watcher's TOML config: its [risk] limits count as bounds in the safety checks",
    )
    parser.add_argument(
        "--max-order-value",
        metavar="AMOUNT",
        help="warn (W702) about an order worth more than AMOUNT of its quote currency",
    )
    parser.add_argument(
        "--exchange-url", default=DEFAULT_EXCHANGE, help="REST base URL for --fetch-symbols"
    )
    parser.add_argument(
        "--fix",
        action="store_true",
        help="apply the fixes that are certain (look-alike characters, keyword case and "
        "spelling with one candidate, a missing ':', unindented clauses) and write the files",
    )
    parser.add_argument(
        "--diff",
        action="store_true",
        help="show the fixes --fix would apply as a unified diff, and write nothing "
        "(exit 1 when there is one)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show notes (checks lint could not make) in text output",
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    try:
        return run_lint(args)
    except LintUsageError as err:
        print(f"rules-engine lint: error: {err}", file=sys.stderr)
        return EXIT_USAGE


def run_lint(args: argparse.Namespace) -> int:
    files = _collect(args.paths)
    symbols, market = _symbols_and_market(args)
    sources = []
    for path in files:
        try:
            sources.append(SourceFile.read(path, display=str(path)))
        except OSError as err:
            raise LintUsageError(f"cannot read {path}: {err.strerror or err}") from None
    compiler = Compiler(symbols, market, _limits(args), signals=_signals(args))
    if args.fix or args.diff:
        fixed, count = _fixed(compiler, sources)
        if args.diff:
            return _show_diff(sources, fixed, count)
        sources = _write_fixed(sources, fixed, count)
    program = compiler.compile(sources)
    diags = program.diagnostics
    if args.format == "json":
        print(format_json(diags))
    elif args.format == "github":
        if diags:
            print(format_github(diags))
    else:
        shown = [d for d in diags if args.verbose or d.severity is not Severity.NOTE]
        if shown:
            print(format_text(shown, {s.path: s for s in sources}))
    errors = sum(1 for d in diags if d.severity is Severity.ERROR)
    warnings = sum(1 for d in diags if d.severity is Severity.WARNING)
    notes = len(diags) - errors - warnings
    hidden = "" if args.verbose or args.format != "text" else " (-v shows them)"
    print(
        f"{len(sources)} file(s), {len(program.rules)} rule(s) compiled: {errors} error(s), "
        f"{warnings} warning(s), {notes} note(s){hidden}; symbols: {symbols.describe()}",
        file=sys.stderr,
    )
    return EXIT_ERRORS if errors else EXIT_OK


_FIX_ROUNDS = 10  # a fix can reveal the next error on its line: lint again, up to this often


def _fixed(compiler: Compiler, sources: list[SourceFile]) -> tuple[list[SourceFile], int]:
    """The sources with every certain fix applied, and how many problems that fixed."""
    current = list(sources)
    total = 0
    for _ in range(_FIX_ROUNDS):
        program = compiler.compile(current)
        changed = False
        for i, source in enumerate(current):
            if source.had_bad_bytes:
                continue  # writing it back would replace its bad bytes: fix those first
            mine = [d for d in program.diagnostics if d.path == source.path]
            text, count = apply_fixes(source.text, mine)
            if count and text != source.text:
                current[i] = SourceFile(source.path, text, bom=source.bom)
                total += count
                changed = True
        if not changed:
            break
    return current, total


def _show_diff(before: list[SourceFile], after: list[SourceFile], count: int) -> int:
    changed = 0
    for old, new in zip(before, after, strict=True):
        if old.text == new.text:
            continue
        changed += 1
        sys.stdout.writelines(
            difflib.unified_diff(
                old.text.splitlines(keepends=True),
                new.text.splitlines(keepends=True),
                fromfile=f"a/{old.path}",
                tofile=f"b/{new.path}",
            )
        )
    print(f"{count} fix(es) would be applied to {changed} file(s)", file=sys.stderr)
    return EXIT_ERRORS if changed else EXIT_OK


def _write_fixed(
    before: list[SourceFile], after: list[SourceFile], count: int
) -> list[SourceFile]:
    changed = 0
    for old, new in zip(before, after, strict=True):
        if old.text == new.text:
            continue
        data = (b"\xef\xbb\xbf" if new.bom else b"") + new.text.encode("utf-8")
        try:
            Path(new.path).write_bytes(data)
        except OSError as err:
            raise LintUsageError(f"cannot write {new.path}: {err.strerror or err}") from None
        changed += 1
    if count:
        print(f"fixed {count} problem(s) in {changed} file(s)", file=sys.stderr)
    return after


def collect_rule_files(paths: list[str]) -> list[Path]:
    """The rule files named, and every `*.rules` file in the folders named, in a stable
    order; ValueError names a path that does not exist, or paths that hold no rule file."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(rule_files_in(path))
        elif path.exists():
            found.append(path)
        else:
            raise ValueError(f"no such file or folder: {raw}")
    if not found:
        raise ValueError(f"no *.rules files found in {', '.join(paths)}")
    return found


def _collect(paths: list[str]) -> list[Path]:
    try:
        return collect_rule_files(paths)
    except ValueError as err:
        raise LintUsageError(str(err)) from None


def _load_json(path: str, what: str) -> Any:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except OSError as err:
        raise LintUsageError(f"cannot read {what} {path}: {err.strerror or err}") from None
    except ValueError as err:
        raise LintUsageError(f"{what} {path} is not JSON: {err}") from None
    except RecursionError:
        raise LintUsageError(f"{what} {path} is nested too deeply to read as JSON") from None


def _symbols_and_market(args: argparse.Namespace) -> tuple[SymbolTable, MarketSnapshot | None]:
    market: MarketSnapshot | None = None
    try:
        if args.symbols:
            document = _load_json(args.symbols, "symbols file")
            mtime = datetime.fromtimestamp(os.path.getmtime(args.symbols), UTC)
            symbols = parse_symbols_reply(document, source=args.symbols, as_of=mtime)
        elif args.fetch_symbols:
            symbols, market = _fetch(args.exchange_url)
        else:
            symbols = shipped_symbols()
    except SymbolDataError as err:
        raise LintUsageError(str(err)) from None
    if args.tickers:
        document = _load_json(args.tickers, "tickers file")
        mtime = datetime.fromtimestamp(os.path.getmtime(args.tickers), UTC)
        market = parse_all_tickers(document, args.tickers, mtime)
        market = MarketSnapshot(market.last, market.as_of, f"--tickers {args.tickers}")
    return symbols, market


def _amount(text: object, where: str) -> Decimal:
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        value = Decimal(0)
    if not value.is_finite() or value <= 0:
        raise LintUsageError(f"{where} must be an amount above zero, not {text!r}")
    return value


def _signals(args: argparse.Namespace) -> frozenset[str] | None:
    """`--config`'s [signals] names (W112 for any other a rule waits for); None: no config,
    so the names are not checked."""
    if not getattr(args, "config", None):
        return None
    try:
        with open(args.config, "rb") as f:
            document = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return None  # `_limits` reads the same file and reports the problem
    signals = document.get("signals", {})
    return frozenset(signals) if isinstance(signals, dict) else None


def _limits(args: argparse.Namespace) -> SafetyLimits:
    """The risk limits the safety checks count as bounds: `--config`'s [risk] table (only the
    notional limits are read) and `--max-order-value`, which wins over max_order_notional."""
    found: dict[str, Decimal] = {}
    source = ""
    if getattr(args, "config", None):
        try:
            with open(args.config, "rb") as f:
                document = tomllib.load(f)
        except OSError as err:
            reason = err.strerror or err
            raise LintUsageError(f"cannot read config {args.config}: {reason}") from None
        except tomllib.TOMLDecodeError as err:
            raise LintUsageError(f"config {args.config} is not TOML: {err}") from None
        risk = document.get("risk", {})
        if not isinstance(risk, dict):
            raise LintUsageError(f"config {args.config}: [risk] must be a table")
        for key in ("max_order_notional", "max_rule_notional", "max_daily_notional"):
            if key in risk:
                found[key] = _amount(risk[key], f"{args.config}: risk.{key}")
        source = f"--config {args.config}"
    if getattr(args, "max_order_value", None):
        found["max_order_notional"] = _amount(args.max_order_value, "--max-order-value")
        source = "--max-order-value" if len(found) == 1 else f"{source} and --max-order-value"
    return SafetyLimits(
        max_order_notional=found.get("max_order_notional"),
        max_rule_notional=found.get("max_rule_notional"),
        max_daily_notional=found.get("max_daily_notional"),
        source=source,
    )


def parse_all_tickers(document: Any, where: str, fallback: datetime) -> MarketSnapshot:
    """Read a `/api/v1/market/allTickers` reply: `{"data": {"time": ms, "ticker": [...]}}`."""
    data = document.get("data") if isinstance(document, dict) else None
    rows = data.get("ticker") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise LintUsageError(f"{where}: expected an allTickers reply with data.ticker")
    last: dict[str, Decimal] = {}
    for row in rows:
        if isinstance(row, dict) and isinstance(row.get("symbol"), str):
            try:
                price = Decimal(str(row.get("last")))
            except InvalidOperation:
                continue
            # above zero, and within 1e-40..1e40: W602's arithmetic on it cannot overflow
            if price.is_finite() and price > 0 and -40 <= price.adjusted() <= 40:
                last[row["symbol"]] = price
    stamp = data.get("time") if isinstance(data, dict) else None
    as_of = fallback
    if isinstance(stamp, int) and not isinstance(stamp, bool):
        if not 0 <= stamp <= _LAST_MS:
            raise LintUsageError(f"{where}: data.time must be a time in ms, not {stamp}")
        as_of = datetime.fromtimestamp(stamp / 1000, UTC)
    return MarketSnapshot(last, as_of)


_LAST_MS = 253402300799999  # 9999-12-31T23:59:59.999Z, the last time a datetime holds


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rules-engine"


def _get(url: str) -> Any:
    request = urllib.request.Request(url, headers={"User-Agent": "rules-engine-lint"})
    try:
        with urllib.request.urlopen(request, timeout=15) as reply:
            return json.loads(reply.read())
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise LintUsageError(f"cannot fetch {url}: {reason}") from None
    except (ValueError, RecursionError):
        raise LintUsageError(f"{url} did not answer JSON") from None


def _fetch(base_url: str) -> tuple[SymbolTable, MarketSnapshot | None]:
    if not base_url.startswith(("http://", "https://")):
        raise LintUsageError(f"--exchange-url must start with http:// or https://: {base_url}")
    base = base_url.rstrip("/")
    now = datetime.now(UTC)
    host = base.split("://", 1)[1].replace("/", "_").replace(":", "_")
    cached = _cache_dir() / f"symbols-{host}.json"
    try:
        reply = _get(f"{base}/api/v2/symbols")
    except LintUsageError as err:
        if not cached.is_file():
            raise
        # Offline: the last list fetched from this exchange, said loudly, with its date.
        symbols = parse_symbols_reply(
            _load_json(str(cached), "the cached symbols list"), source=str(cached)
        )
        print(
            f"rules-engine lint: warning: {err}; using the cached symbols list of "
            f"{symbols.as_of:%Y-%m-%d %H:%M} UTC",
            file=sys.stderr,
        )
        return symbols, None
    symbols = parse_symbols_reply(reply, source=f"{base}/api/v2/symbols", as_of=now)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        document = {"as_of": now.isoformat(), "source": symbols.source, "reply": reply}
        cached.write_text(json.dumps(document))
    except OSError:
        pass  # the cache is a convenience; lint works without it
    market: MarketSnapshot | None
    try:
        market = parse_all_tickers(_get(f"{base}/api/v1/market/allTickers"), base, now)
        market = MarketSnapshot(market.last, market.as_of, f"the tickers fetched from {base}")
    except LintUsageError:
        market = None
    return symbols, market
