"""The commands that read the watcher's record: `status`, `audit`, `why`.

    rules-engine status [--db URL] [--format text|json]
    rules-engine audit [--rule RULE] [--symbol SYMBOL] [--since T] [--until T] [--kind K]
                       [--db URL] [--format text|json|csv]
    rules-engine why CLIENT_OID|ORDER_ID|RULE [--db URL] [--format text|json]

They only read the store (any moment is a consistent state: every step is one transaction),
so they work while a watcher runs and after it stopped. Without `--db` the store is found as
by every command (`cli/_stores.py`: `$RULES_ENGINE_DB`, else the one store `run` made, of
`--mode` if given, or the one whose watcher is running). Exit 0, 1 when `why` finds no such order, 2
for a usage error or a store that cannot be read.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = subparsers.add_parser(
        "status", help="rules, their states, open orders and feed health, from the store",
        description="What the watcher on this store is doing (and the standbys waiting to "
        "take it over): rules, open orders, feeds.",
    )
    _common(status, ("text", "json"))
    status.set_defaults(handler=lambda a: _run(a, _status))

    audit = subparsers.add_parser(
        "audit", help="the event log, filtered", description="The store's event log, oldest "
        "first, filtered by rule, symbol, kind and time.",
    )
    audit.add_argument("--rule", help="a rule's name (or an unnamed rule's identity)")
    audit.add_argument("--symbol", help="events of this symbol's orders and rules")
    audit.add_argument("--kind", help="event kind as the log prints it or as stored "
                       "(`acknowledged`, `firing.acknowledged`), or a family (`firing`, `order.`)")
    audit.add_argument("--since", type=_time, help="an age (1h, 30m, 2d), a date (2026-12-01) "
                       "or an ISO 8601 time (2026-12-01T09:00Z)")
    audit.add_argument("--until", type=_time, help="as --since")
    _common(audit, ("text", "json", "csv"))
    audit.set_defaults(handler=lambda a: _run(a, _audit))

    why = subparsers.add_parser(
        "why", help="why an order exists: its rule, version, inputs and every state change",
        description="The rule (by name) and version that placed an order, the input values "
        "that fired it, and every state change and fill, in order.",
    )
    why.add_argument("order", metavar="CLIENT_OID|ORDER_ID|RULE")
    _common(why, ("text", "json"))
    why.set_defaults(handler=lambda a: _run(a, _why))


def _common(parser: argparse.ArgumentParser, formats: tuple[str, ...]) -> None:
    store_options(parser)
    parser.add_argument("--format", choices=formats, default="text")


def store_options(parser: argparse.ArgumentParser) -> None:
    """`--db` and `--mode`: which store, by the rule every command shares (cli/_stores.py)."""
    parser.add_argument("--db", default=None, help="SQLAlchemy URL of the store (default: "
                        "$RULES_ENGINE_DB, else the store `run` made in the state directory: "
                        "the only one, or the one whose watcher is running)")
    parser.add_argument("--mode", choices=("sandbox", "paper", "live"), default=None,
                        help="without --db: only the stores `run` made in this mode")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _time(text: str, now: datetime | None = None) -> datetime:
    """`--since`/`--until`: an age (`90s`, `15m`, `1h`, `2d`, `1w`: that long ago), a date
    (`2026-12-01`: its start, UTC) or an ISO 8601 time with its zone (`2026-12-01T09:00Z`)."""
    text = text.strip()
    number, unit = text[:-1], text[-1:].lower()
    if unit in _UNITS and number.replace(".", "", 1).isdigit():
        return (now or datetime.now(UTC)) - timedelta(seconds=float(number) * _UNITS[unit])
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: give an age (1h, 30m, 2d), a date (2026-12-01) or an "
            "ISO 8601 time with its zone (2026-12-01T09:00Z)"
        ) from None
    if value.tzinfo is None:
        if len(text) == 10:  # a date alone: its start, in UTC
            return value.replace(tzinfo=UTC)
        raise argparse.ArgumentTypeError(f"{text!r} has no timezone: add Z for UTC")
    return value.astimezone(UTC)


class _Failed(Exception):
    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def store_url(db: str | None, mode: str | None = None) -> str:
    """The store a command reads: `cli/_stores.py`'s one rule (`--db`, `$RULES_ENGINE_DB`,
    else the one store in the state directory, or the one whose watcher runs)."""
    from rules_engine.cli._stores import NoStore, find_store

    try:
        return find_store(db, mode)
    except NoStore as err:
        raise _Failed(str(err)) from None


def _run(args: argparse.Namespace, body: Callable[[Any, argparse.Namespace], int]) -> int:
    return with_store(args, body)


def with_store(args: argparse.Namespace, body: Callable[[Any, argparse.Namespace], int]) -> int:
    """Open the store `--db` names (never creating one; an older schema is brought up to
    date), run `body` on it, and turn what can go wrong into a message and an exit code."""
    from sqlalchemy.exc import SQLAlchemyError

    from rules_engine.store import Store
    from rules_engine.store._record import is_current

    try:
        url = store_url(args.db, getattr(args, "mode", None))
        args.store_url = url
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else None
        if path is not None and not Path(path).exists():
            raise _Failed(f"no store at {path}")
        store = Store(url)
        try:
            if not is_current(store):
                raise _Failed("this store was not created by this version's watcher (no "
                              "tables, or older ones): run `rules-engine run` on it first")
            return body(store, args)
        finally:
            store.close()
    except _Failed as err:
        print(f"rules-engine {args.command}: error: {err}", file=sys.stderr)
        return err.code
    except SQLAlchemyError as err:
        print(f"rules-engine {args.command}: error: cannot read the store: "
              f"{type(err).__name__}: {str(err).splitlines()[0][:200]}", file=sys.stderr)
        return 2


def _status(store: Any, args: argparse.Namespace) -> int:
    from rules_engine.cli._stores import redact
    from rules_engine.store._record import status_report

    now = datetime.now(UTC)
    report = {"store": redact(args.store_url), **status_report(store, now),
              "standbys": store.standbys(now), "balances": venue_balances(args.store_url)}
    if args.format == "json":
        print(json.dumps(report, default=str, indent=2))
        return 0
    print(f"store: {report['store']}")
    watcher = report["watcher"]
    if watcher is None:
        print("watcher: none has run on this store")
    else:
        state = "running" if watcher["alive"] else "stopped"
        print(f"watcher: {state} ({watcher['owner']}, last heartbeat {watcher['heartbeat']}, "
              f"{watcher['heartbeat_age_s']:.0f} s ago)")
    _print_standbys(report["standbys"])
    print(f"venue: {report['venue'] or '-'}   engine: {report['engine_id']}")
    feeds = report["feeds"]
    if watcher is not None and watcher["alive"]:
        print(f"market feed: {feeds['market']}   orders feed: {feeds['orders']}   "
              f"trading: {report['trading']}")
    else:
        print("feeds: no watcher running")
    _print_halt(report["halt"])
    _print_balances(report.get("balances"))
    print(f"\nrules ({len(report['rules'])}):")
    blocked = []
    for rule in report["rules"]:
        reason = f"  ({rule['reason']})" if rule["reason"] else ""
        if rule.get("waits"):
            reason += f"  (waits {rule['waits']})"
        print(f"  {rule['rule']:<28} v{rule['version']:<3} {rule['status']:<9} "
              f"firings {rule['firings']}{reason}")
        if rule["status"] == "blocked":
            blocked.append(rule["rule"])
    if blocked:
        print(f"  blocked: fix the cause, then `rules-engine unblock {blocked[0]}` (or edit "
              "the rule)")
    print(f"\nopen orders ({len(report['open_orders'])}):")
    for order in report["open_orders"]:
        price = f" at {order['price']}" if order["price"] else ""
        amount = order["size"] or f"{order['funds']} funds"
        print(f"  {order['client_oid']}  {order['symbol']} {order['side']} {order['type']} "
              f"{amount}{price}  {order['status']}  filled {order['filled_size']}  "
              f"rule {order['rule'] or '(adopted)'}"
              + (f" slice {order['slice']}" if order.get("slice") else ""))
    vanished = report.get("vanished_orders") or []
    if vanished:
        print(f"\nvanished orders ({len(vanished)}, newest first: acknowledged once, unknown "
              "to the exchange after their deadline; check the exchange's own record):")
        for order in vanished:
            amount = order["size"] or f"{order['funds']} funds"
            print(f"  {order['client_oid']}  {order['symbol']} {order['side']} "
                  f"{order['type']} {amount}  vanished  filled {order['filled_size']}  "
                  f"rule {order['rule'] or '(adopted)'}"
              + (f" slice {order['slice']}" if order.get("slice") else ""))
    _print_positions(report["positions"])
    live = report.get("live_not_yet")
    if watcher is not None and watcher["alive"] and live is not None:
        _print_live_why(live)
    else:
        _print_not_yet(report["not_yet"])
    return 0


def _print_standbys(rows: list[dict[str, Any]]) -> None:
    """The standby watchers (`run --standby`) waiting for the lease, and those gone silent."""
    waiting = [r for r in rows if r["state"] == "waiting"]
    if not rows:
        print("standbys: none")
        return
    print(f"standbys: {len(waiting)} waiting" + (f", {len(rows) - len(waiting)} gone silent"
                                                 if len(waiting) < len(rows) else ""))
    for row in rows:
        state = ("waiting" if row["state"] == "waiting" else
                 f"gone (no heartbeat for {row['heartbeat_age_s']:.0f} s)")
        print(f"  {row['owner']}  host {row['host']} pid {row['pid']}  {state}, since "
              f"{row['since'][:19]}, last heartbeat {row['heartbeat_age_s']:.1f} s ago")


def _print_halt(halt: dict[str, Any] | None) -> None:
    if halt is None:
        print("kill switch: off")
        return
    answered = ("acknowledged by the watcher" if halt["acknowledged"]
                else "not acknowledged by a watcher yet")
    print(f"kill switch: ON since {halt['since']} by {halt['by']} ({answered}"
          f"{'; protective exits cancelled too' if halt['all'] else ''}); "
          "`rules-engine resume` lifts it")


def _print_balances(balances: dict[str, Any] | None) -> None:
    if balances is None:
        print("balances: not recorded in the store (the running watcher reads them from the "
              "exchange: its view and `rules-engine dashboard` show them)")
        return
    print(f"balances ({balances['source']}, saved {balances['saved']}):")
    for currency, row in balances["currencies"].items():
        print(f"  {currency:<8} total {row['total']}  on hold {row['hold']}")


def _print_positions(rows: list[dict[str, Any]]) -> None:
    print(f"\npositions and P&L from the fills ({len(rows)}):")
    for row in rows:
        quote = row["symbol"].split("-")[-1]
        price = row["price"]
        if row["unrealised"] is None:
            unrealised = "unrealised unknown (no price of it in the store)"
        elif price is None:
            unrealised = f"unrealised {row['unrealised']} {quote}"
        else:
            unrealised = (f"unrealised {row['unrealised']} {quote} at {price['price']} "
                          f"({price['source']}, {price['at']})")
        fees = ", ".join(f"{v} {c}" for c, v in row["fees"].items()) or "none recorded"
        print(f"  {row['rule']:<28} {row['symbol']:<10} position {row['position']} "
              f"(average cost {row['average_cost'] or '-'})  realised {row['realised']} "
              f"{quote}  {unrealised}  fees {fees}  ({row['fills']} fills)")


def _print_not_yet(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    print(f"\nnot fired yet ({len(rows)}): why, as far as the store tells (the live values "
          "are the running watcher's: its view, `rules-engine dashboard`)")
    for row in rows:
        print(f"  {row['rule']}: {row['status']} since {row['since']}: {row['waits_for']}")
        for line in row["condition"]:
            print(f"      {line}")


def _print_live_why(live: dict[str, Any]) -> None:
    """The running watcher's why-not-yet, on its live values (as of `at`)."""
    rows = live.get("rules") or []
    print(f"\nnot fired yet ({len(rows)}), on the running watcher's live values as of "
          f"{live.get('at')}:")
    for row in rows:
        print(f"  {row['rule']}: {row['status']}: {row['waits_for']}")
        for cond in row.get("conditions") or []:
            verdict = {True: "holds", False: "does not hold", None: "unknown"}[cond["holds"]]
            print(f"      {cond['text']}: {cond['left'] or '?'} against "
                  f"{cond['right'] or '?'} ({verdict})")
        for lack in row.get("lacks") or []:
            print(f"      lacks {lack}")
        if row.get("next_due"):
            print(f"      next decides at {row['next_due']} (its timer)")


def venue_balances(url: str) -> dict[str, Any] | None:
    """A sandbox or paper store's balances: its local venue's state file beside it, as the
    venue saved it at its last stop. None where nothing records them (a live store)."""
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url[len("sqlite:///"):])
    state = path.with_name(path.name + ".sandbox.json")
    try:
        document = json.loads(state.read_text(encoding="utf-8"))
        totals, holds = dict(document["totals"]), dict(document.get("holds") or {})
        saved = datetime.fromtimestamp(state.stat().st_mtime, UTC)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {"source": f"the local venue's state file {state.name}",
            "saved": saved.isoformat(timespec="seconds"),
            "currencies": {c: {"total": str(v), "hold": str(holds.get(c, "0"))}
                           for c, v in sorted(totals.items())}}


def _audit(store: Any, args: argparse.Namespace) -> int:
    from rules_engine.store._record import audit

    rows = audit(store, rule=args.rule, symbol=args.symbol, kind=args.kind,
                 since=args.since, until=args.until)
    if args.kind is not None and not rows:
        from rules_engine.store._record import event_kinds

        kinds = event_kinds(store)
        print(f"rules-engine audit: no event of kind {args.kind!r} matched; the kinds in this "
              f"store: {', '.join(kinds) or 'none'}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(rows, default=str, indent=2))
    elif args.format == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["id", "at", "kind", "rule", "client_oid", "payload"])
        for row in rows:
            writer.writerow([row["id"], row["at"], row["kind"], row["rule"] or "",
                             row["client_oid"] or "", json.dumps(row["payload"], default=str)])
        sys.stdout.write(out.getvalue())
    else:
        for row in rows:
            who = " ".join(x for x in (row["rule"], row["client_oid"]) if x)
            detail = json.dumps(row["payload"], default=str) if row["payload"] else ""
            print(f"{row['at']}  {row['kind']:<22} {who}  {detail}".rstrip())
    return 0


def _why_rule(rule: dict[str, Any], form: str) -> int:
    if form == "json":
        print(json.dumps(rule, default=str, indent=2))
        return 0
    print(f"rule {rule['rule']} version {rule['version']}: {rule['status']}, "
          f"{rule['firings']} firing(s){' (' + rule['reason'] + ')' if rule['reason'] else ''}")
    if rule["source"]:
        print(f"  from {rule['path']}:")
        for line in rule["source"].splitlines():
            print(f"    {line}")
    print(f"now: {rule['waits_for']}")
    print("firings:" if rule["history"] else "firings: none yet")
    for firing in rule["history"]:
        order = firing["order"]
        placed = "no order" if order is None else (
            f"{order['symbol']} {order['side']} {order['type']} {order['size'] or ''}"
            f"{' at ' + order['price'] if order['price'] else ''}, {order['status']}, "
            f"filled {order['filled']}")
        print(f"  #{firing['number']} v{firing['version']} {firing['at']} {firing['status']}: "
              f"{placed}  {firing['client_oid'] or ''}".rstrip())
    print("latest events:")
    for event in rule["events"]:
        detail = json.dumps(event["payload"], default=str) if event["payload"] else ""
        print(f"  {event['at']}  {event['kind']:<22} {detail}".rstrip())
    return 0


def _why(store: Any, args: argparse.Namespace) -> int:
    from rules_engine.store._record import why

    story = why(store, args.order)
    if story is None:
        from rules_engine.store._explain import rule_story

        rule = rule_story(store, args.order)
        if rule is None:
            raise _Failed(f"no order or rule {args.order!r} in this store (a clientOid, an "
                          "exchange order id or a rule's name)", code=1)
        return _why_rule(rule, args.format)
    if args.format == "json":
        print(json.dumps(story, default=str, indent=2))
        return 0
    order = story["order"]
    print(f"order {order['client_oid']} (exchange id {order['exchange_id'] or '-'}): "
          f"{order['symbol']} {order['side']} {order['type']}, {order['status']}, "
          f"filled {order['filled_size']}")
    firing = story["firing"]
    if firing is None:
        print("rule: none (adopted from the exchange: it carries this engine's prefix)")
    else:
        print(f"rule: {firing['rule']} version {firing['version']}, firing {firing['number']}"
              f" ({firing['status']})")
        version = story["version"]
        if version is not None:
            print(f"  from {version['path']}:")
            for line in (version["source"] or "(its text was not kept)").splitlines():
                print(f"    {line}")
        print("inputs that fired it:")
        for name, value in (firing["inputs"].get("values") or {}).items():
            print(f"  {name} = {value}")
        for symbol, book in (firing["inputs"].get("books") or {}).items():
            print(f"  {symbol} book: {book['state']}, sequence {book['sequence']}")
        print(f"  decided at {firing['inputs'].get('at')}")
    print("every state change:")
    for event in story["events"]:
        detail = json.dumps(event["payload"], default=str) if event["payload"] else ""
        print(f"  {event['at']}  {event['kind']:<22} {detail}".rstrip())
    if story["fills"]:
        print("fills:")
        for fill in story["fills"]:
            print(f"  {fill['time']}  trade {fill['trade_id']}: {fill['size']} at "
                  f"{fill['price']}")
    return 0
