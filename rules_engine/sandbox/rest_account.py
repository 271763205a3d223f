"""The account: the API key, balances, fee rates and the account mode (routed by
`rest.routes()`); and this module's own `routes()`: the ledgers (old and HF), transferable, and
the deposit and withdrawal histories (empty: the sandbox has neither).

Every balance change the engine makes (each side of each fill, the fee inside it) is one
ledger entry; holds change `available`, not the balance, so they are not entries (as on
KuCoin, where `/api/v1/accounts` shows them as `holds`). Both ledgers read the same entries of
the one trading account: the old one pages them (`accountType` `TRADE`), the HF one lists them
newest first with a `lastId` cursor (`accountType` `TRADE_HF`). Their routes are registered
before `/api/v1/accounts/{accountId}`, which would otherwise take them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from rules_engine.sandbox import errors
from rules_engine.sandbox.engine import LedgerEntry, account_id, fmt
from rules_engine.sandbox.errors import ApiFailureError
from rules_engine.sandbox.rest_common import Ctx, Route, int_param, page_of

__all__ = ["ledger_json", "routes"]

BIZ_ALIASES = {"TRADE_EXCHANGE": "TRADE_EXCHANGE", "EXCHANGE": "TRADE_EXCHANGE"}  # upper case
HF_LIMIT_MAX = 200
ACCOUNT_TYPES = ("MAIN", "TRADE", "MARGIN", "ISOLATED", "OPTION")


# ---- the account, its balances and fees (routed by `rest.routes()`) ---------------------


async def h_account_mode(ctx: Ctx) -> Any:
    return {"selfAccountMode": "CLASSIC", "unifiedSubAccount": [], "classicSubAccount": []}


async def h_trade_fees(ctx: Ctx) -> Any:
    names = (ctx.q("symbols", required=True) or "").split(",")
    if not names or len(names) > 10 or any(n not in ctx.state.symbols for n in names):
        raise ApiFailureError(errors.symbol_not_exists())
    cfg = ctx.state.config
    return [{"symbol": n, "takerFeeRate": fmt(cfg.taker_fee_rate),
             "makerFeeRate": fmt(cfg.maker_fee_rate)} for n in names]


async def h_base_fee(ctx: Ctx) -> Any:
    cfg = ctx.state.config
    return {"takerFeeRate": fmt(cfg.taker_fee_rate), "makerFeeRate": fmt(cfg.maker_fee_rate)}


async def h_hf_opened(ctx: Ctx) -> Any:
    return True

async def h_api_key(ctx: Ctx) -> Any:
    key = ctx.key
    assert key is not None

    def mask(ip: str) -> str:
        parts = ip.split(".")
        return f"{parts[0]}.**.{parts[-1]}" if len(parts) == 4 else ip

    version = ctx.request.headers.get("KC-API-KEY-VERSION", "1")
    return {
        "remark": key.remark, "apiKey": key.api_key,
        "apiVersion": int(version) if version.isdigit() else 1,
        "permission": ",".join(key.permissions),
        "ipWhitelist": ",".join(mask(ip) for ip in key.ip_whitelist),
        "createdAt": key.created_at_ms, "uid": ctx.state.config.uid, "isMaster": True,
    }


async def h_accounts(ctx: Ctx) -> Any:
    kind = ctx.q("type")
    currency = ctx.q("currency")
    if kind not in (None, "trade", "trade_hf"):
        return []
    acct = ctx.state.engine.account
    rows = []
    for cur in sorted(set(acct.totals) | set(acct.holds)):
        if currency is not None and cur != currency:
            continue
        rows.append({
            "id": account_id(cur), "currency": cur, "type": kind or "trade",
            "balance": fmt(acct.total(cur)), "available": fmt(acct.available(cur)),
            "holds": fmt(acct.held(cur)),
        })
    return rows


async def h_account(ctx: Ctx) -> Any:
    acct = ctx.state.engine.account
    for cur in acct.totals:
        if account_id(cur) == ctx.match["accountId"]:
            return {"currency": cur, "balance": fmt(acct.total(cur)),
                    "available": fmt(acct.available(cur)), "holds": fmt(acct.held(cur))}
    raise ApiFailureError(errors.bad_param("account not exist"))


# ---- ledgers, transfers (this module's routes) --------------------------------------------


def ledger_json(entry: LedgerEntry, *, hf: bool) -> dict[str, Any]:
    context = orjson.dumps({"symbol": entry.symbol, "orderId": entry.order_id,
                            "tradeId": entry.trade_id}).decode()
    row: dict[str, Any] = {
        "id": str(entry.id), "currency": entry.currency, "amount": fmt(abs(entry.change)),
        "fee": fmt(entry.fee), "balance": fmt(entry.balance),
        "accountType": "TRADE_HF" if hf else "TRADE",
        "bizType": entry.biz_type if hf else "Trade_Exchange",
        "direction": "in" if entry.change > 0 else "out",
        "createdAt": str(entry.created_at) if hf else entry.created_at, "context": context,
    }
    if hf:
        row["tax"] = "0"
    return row


def _entries(ctx: Ctx) -> list[LedgerEntry]:
    """The entries the query's filters keep, newest first."""
    currencies = [c for c in (ctx.q("currency") or "").split(",") if c]
    if len(currencies) > 10:
        raise ApiFailureError(errors.bad_param("at most 10 currencies in one query"))
    direction = ctx.q("direction")
    if direction not in (None, "in", "out"):
        raise ApiFailureError(errors.bad_param("direction must be in or out"))
    biz = ctx.q("bizType")
    wanted_biz = BIZ_ALIASES.get(biz.upper(), biz.upper()) if biz else None
    start = int_param(ctx.q("startAt"), "startAt", 0)
    end = int_param(ctx.q("endAt"), "endAt", 0)
    if start and end and end < start:
        raise ApiFailureError(errors.bad_param("endAt must not be before startAt"))
    found = []
    for entry in reversed(ctx.state.engine.ledger):
        if currencies and entry.currency not in currencies:
            continue
        if direction is not None and (direction == "in") != (entry.change > 0):
            continue
        if wanted_biz is not None and entry.biz_type != wanted_biz:
            continue
        if (start and entry.created_at < start) or (end and entry.created_at > end):
            continue
        found.append(entry)
    return found


async def h_ledgers(ctx: Ctx) -> Any:
    page = page_of(_entries(ctx), ctx)
    page["items"] = [ledger_json(e, hf=False) for e in page["items"]]
    return page


async def h_hf_ledgers(ctx: Ctx) -> Any:
    limit = int_param(ctx.q("limit"), "limit", 100)
    if not 1 <= limit <= HF_LIMIT_MAX:
        raise ApiFailureError(errors.bad_param(f"limit must be 1 to {HF_LIMIT_MAX}"))
    last_id = int_param(ctx.q("lastId"), "lastId", 0)
    rows = [e for e in _entries(ctx) if not last_id or e.id < last_id]
    return [ledger_json(e, hf=True) for e in rows[:limit]]


async def h_transferable(ctx: Ctx) -> Any:
    currency = ctx.q("currency", required=True) or ""
    kind = ctx.q("type", required=True) or ""
    if kind not in ACCOUNT_TYPES:
        raise ApiFailureError(errors.bad_param(f"type must be one of {', '.join(ACCOUNT_TYPES)}"))
    account = ctx.state.engine.account
    zero = Decimal(0)
    total, held = ((account.total(currency), account.held(currency)) if kind == "TRADE"
                   else (zero, zero))
    return {"currency": currency, "balance": fmt(total), "available": fmt(total - held),
            "holds": fmt(held), "transferable": fmt(total - held)}


async def h_no_transfers(ctx: Ctx) -> Any:
    """Deposits and withdrawals: none are emulated, so the account's history is empty."""
    currency = ctx.q("currency")
    status = ctx.q("status")
    if status not in (None, "PROCESSING", "SUCCESS", "FAILURE", "WALLET_PROCESSING"):
        raise ApiFailureError(errors.bad_param(
            "status must be PROCESSING, SUCCESS, FAILURE or WALLET_PROCESSING"))
    if currency is not None and not currency:
        raise ApiFailureError(errors.bad_param("currency is empty"))
    return page_of([], ctx)


def routes() -> list[Route]:
    r = Route
    return [
        r("GET", "/api/v1/deposits", h_no_transfers, 5, "management", True),
        r("GET", "/api/v1/hist-deposits", h_no_transfers, 5, "management", True),
        r("GET", "/api/v1/withdrawals", h_no_transfers, 20, "management", True),
        r("GET", "/api/v1/hist-withdrawals", h_no_transfers, 20, "management", True),
        r("GET", "/api/v1/accounts/ledgers", h_ledgers, 2, "management", True),
        r("GET", "/api/v1/accounts/transferable", h_transferable, 20, "management", True),
        r("GET", "/api/v1/hf/accounts/ledgers", h_hf_ledgers, 2, "spot", True),
    ]
