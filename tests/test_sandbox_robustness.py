"""No request, however wrong, gets a 500 or a traceback: every route with hostile inputs."""

from __future__ import annotations

import itertools
import re
from typing import Any

from sandbox_support import auth_headers, running

from rules_engine.sandbox.config import SandboxConfig
from rules_engine.sandbox.rest import routes

HOSTILE_QUERIES: list[dict[str, str]] = [
    {},
    {"symbol": "BTC-USDT"},
    {"symbol": "NOPE"},
    {"symbol": "BTC-USDT", "pageSize": "-1", "currentPage": "x", "pageNum": "0"},
    {"symbol": "BTC-USDT", "limit": "abc", "lastId": "-5", "startAt": "1e9", "endAt": "z"},
    {"symbol": "BTC-USDT", "type": "1hour", "status": "weird", "side": "up"},
    {"symbol": "BTC-USDT", "cancelSize": "NaN", "clientOid": "", "symbols": "A,B"},
    {"symbol": "BTC-USDT", "type": "1min", "startAt": "-1", "cancelSize": "Infinity"},
]
HOSTILE_BODIES: list[Any] = [
    None,
    {},
    [],
    {"symbol": "BTC-USDT", "side": "buy", "type": "limit", "price": [], "size": {}},
    {"symbol": "BTC-USDT", "side": "buy", "type": "market", "funds": "NaN"},
    {"symbol": "BTC-USDT", "side": "sell", "type": "market", "size": "-1", "clientOid": 5},
    {"symbol": "BTC-USDT", "side": "buy", "type": "limit", "price": "1e400", "size": "1",
     "postOnly": "maybe", "cancelAfter": "soon", "timeInForce": 3},
    {"symbol": 7, "side": "buy", "type": "limit", "price": "100", "size": "0.001",
     "clientTimestamp": "x", "allowMaxTimeWindow": 10},
    {"orderList": [{"side": "buy"}, 3, None], "symbol": "BTC-USDT", "orderId": {},
     "newPrice": "x", "stopPrice": "-3", "stop": "sideways"},
    {"symbol": "BTC-USDT", "side": "buy", "type": "limit", "price": "1E+2", "size": "1E-3",
     "visibleSize": "0", "iceberg": True, "hidden": "true"},
]


async def test_every_route_answers_hostile_input_with_a_kucoin_error_not_a_500() -> None:
    quotas = {"spot": 10**9, "public": 10**9, "management": 10**9}
    async with running(SandboxConfig.model_validate({"quotas": quotas})) as box:
        seen = 0
        codes: set[str] = set()
        for route in routes():
            path = re.sub(r"\{[^}]+\}", "abc-123", route.path)
            variants = itertools.product(HOSTILE_QUERIES,
                                         HOSTILE_BODIES if route.method == "POST" else [None])
            for query, body in variants:
                status, payload, _ = await box.call(route.method, path, query or None, body,
                                                    signed=route.signed)
                seen += 1
                assert status != 500, (route.path, query, body, payload)
                assert isinstance(payload.get("code"), str), (route.path, payload)
                assert "Traceback" not in str(payload)
                assert payload["code"] != "429000"
                codes.add(payload["code"])
        assert seen > 300
        # The inputs reach the handlers: parameter errors and successes, not only auth errors.
        assert {"200000", "400100", "900001"} <= codes


async def test_a_body_nested_too_deep_or_with_a_huge_exponent_is_400_not_json() -> None:
    """The fuzzer found a body nested too deep answered 500 (RecursionError)."""
    async with running() as box:
        for body in ("[" * 100_000 + "]" * 100_000, '{"size": 1e999999999999999999}'):
            headers = auth_headers("POST", "/api/v1/hf/orders", body, box.state.now_ms())
            headers["Content-Type"] = "application/json"
            async with box.http.post(box.url + "/api/v1/hf/orders", data=body,
                                     headers=headers) as r:
                status, payload = r.status, await r.json(content_type=None)
            assert (status, payload["code"]) == (400, "400100"), payload
            if body.startswith("["):
                assert payload["msg"] == "Invalid request body: not JSON"
