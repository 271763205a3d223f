"""Account ledgers (issue 17, gaps 1 and 2): every fill and its fee is an entry, in KuCoin's
shapes, on the old paged endpoint and the HF one, and ccxt reads both."""

from __future__ import annotations

import json
from decimal import Decimal

import ccxt
from sandbox_support import Sandbox, demo_credentials, point_ccxt_at, running, threaded

from rules_engine.sandbox.config import SandboxConfig

KEYS = {"id", "currency", "amount", "fee", "balance", "accountType", "bizType", "direction",
        "createdAt", "context"}


async def _trade(box: Sandbox) -> list[str]:
    ids = []
    for side, size in (("buy", "0.02"), ("sell", "0.01")):
        data = await box.ok("POST", "/api/v1/hf/orders", body={
            "symbol": "BTC-USDT", "side": side, "type": "market", "size": size})
        ids.append(data["orderId"])
    return ids


async def test_every_fill_and_fee_is_a_ledger_entry_that_follows_the_balance() -> None:
    config = SandboxConfig.model_validate({"balances": {"USDT": "100000", "BTC": "1"}})
    async with running(config) as box:
        assert await box.ok("GET", "/api/v1/accounts/ledgers") == {
            "currentPage": 1, "pageSize": 50, "totalNum": 0, "totalPage": 0, "items": []}
        order_ids = await _trade(box)
        fills = (await box.ok("GET", "/api/v1/hf/fills", {"symbol": "BTC-USDT"}))["items"]
        page = await box.ok("GET", "/api/v1/accounts/ledgers", {"pageSize": 500})
        items = page["items"]
        assert page["totalNum"] == len(items) == 2 * len(fills)
        for item in items:
            assert set(item) == KEYS
            assert item["accountType"] == "TRADE" and item["bizType"] == "Trade_Exchange"
            assert isinstance(item["createdAt"], int)
            context = json.loads(item["context"])
            assert context["orderId"] in order_ids and context["symbol"] == "BTC-USDT"
        # Newest first; the first entry of each currency carries the current balance.
        assert [int(i["id"]) for i in items] == sorted((int(i["id"]) for i in items),
                                                       reverse=True)
        accounts = {a["currency"]: a for a in await box.ok("GET", "/api/v1/accounts")}
        for currency in ("USDT", "BTC"):
            latest = next(i for i in items if i["currency"] == currency)
            assert latest["balance"] == accounts[currency]["balance"]
            signed = sum(Decimal(i["amount"]) * (1 if i["direction"] == "in" else -1)
                         for i in items if i["currency"] == currency)
            start = Decimal(config.balances[currency])
            assert start + signed == Decimal(accounts[currency]["balance"])
        # The fee of each fill is in its USDT entry.
        fees = sorted(Decimal(f["fee"]) for f in fills)
        assert sorted(Decimal(i["fee"]) for i in items if i["currency"] == "USDT") == fees
        assert all(Decimal(i["fee"]) == 0 for i in items if i["currency"] == "BTC")
        bought = [i for i in items if i["currency"] == "BTC" and i["direction"] == "in"]
        assert sum(Decimal(i["amount"]) for i in bought) == Decimal("0.02")

        only = await box.ok("GET", "/api/v1/accounts/ledgers",
                            {"currency": "BTC", "direction": "out", "bizType": "TRADE_EXCHANGE"})
        assert only["items"] and all(i["currency"] == "BTC" and i["direction"] == "out"
                                     for i in only["items"])

        hf = await box.ok("GET", "/api/v1/hf/accounts/ledgers")
        assert [i["id"] for i in hf] == [i["id"] for i in items]
        assert all(i["accountType"] == "TRADE_HF" and i["bizType"] == "TRADE_EXCHANGE"
                   and i["tax"] == "0" and isinstance(i["createdAt"], str) for i in hf)
        first = await box.ok("GET", "/api/v1/hf/accounts/ledgers", {"limit": 2})
        rest = await box.ok("GET", "/api/v1/hf/accounts/ledgers",
                            {"lastId": first[-1]["id"], "limit": 200})
        assert [i["id"] for i in first + rest] == [i["id"] for i in hf]
        status, body, _ = await box.call("GET", "/api/v1/hf/accounts/ledgers", {"limit": 500})
        assert status == 400 and body["code"] == "400100"

        moved = await box.ok("GET", "/api/v1/accounts/transferable",
                             {"currency": "USDT", "type": "TRADE"})
        assert moved["balance"] == accounts["USDT"]["balance"]
        assert moved["transferable"] == accounts["USDT"]["available"]
        # Still the account by id (the route that used to take the ledgers' path).
        one = await box.ok("GET", f"/api/v1/accounts/{accounts['BTC']['id']}")
        assert one["currency"] == "BTC"


def test_ccxt_fetch_ledger_reads_the_old_and_the_hf_ledger() -> None:
    with threaded() as box:
        ex = point_ccxt_at(ccxt.kucoin(demo_credentials()), box.url)
        ex.load_markets()
        ex.create_order("BTC/USDT", "market", "buy", 0.01)
        for hf in (False, True):
            entries = ex.fetch_ledger("USDT", None, None, {"hf": hf})
            assert entries and entries[0]["currency"] == "USDT"
            assert entries[0]["direction"] == "out" and entries[0]["amount"] > 0
            assert entries[0]["type"] == "trade"
