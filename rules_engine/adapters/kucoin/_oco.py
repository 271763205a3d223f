"""KuCoin's OCO orders (`/api/v3/oco/...`, reference section 6.6): one limit leg (the
take-profit, at `price`) and one stop-limit leg (`stopPrice`, then a limit at `limitPrice`)
of the same `size` and side, where a fill of either leg cancels the other on the exchange.

`KucoinOco` holds the named calls (place, cancel by order id and by clientOid, get by id and by
clientOid, the detail with both legs, the paged list); the parsers turn their replies into
core values (`OcoOrder`, `OcoLeg`) and raise `MalformedPayload` (never a bare KeyError or
TypeError) on anything that is not KuCoin's shape. `look_up` puts the calls together as the
watcher needs them: the OCO by clientOid, its legs, and the fills of each leg that traded.

KuCoin's SDK 1.3.2 marks every OCO call deprecated (accounts move to the unified trading
account); the endpoints still answer. The watcher keeps its engine-held path as the fallback
(`[brackets] on_exchange = false`).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, NamedTuple

from rules_engine.adapters.kucoin._errors import Action, Outcome
from rules_engine.adapters.kucoin._parsing import (
    MalformedPayload,
    PayloadError,
    _dec,
    _need,
    _text,
    _time,
    parse_fills_page,
)
from rules_engine.adapters.kucoin._rest import KucoinRest
from rules_engine.core.market import Fill

__all__ = ["OCO_STATUSES", "KucoinOco", "OcoLeg", "OcoOrder", "OcoSeen", "leg_of", "oco_body",
           "parse_oco", "parse_oco_detail", "parse_oco_list"]

OCO_STATUSES = ("NEW", "TRIGGERED", "DONE", "CANCELLED", "CANCELED")
LEG_STATUSES = ("NEW", "TRIGGERED", "DONE", "CANCELLED", "CANCELED")
_ACTIVE = frozenset({"NEW", "TRIGGERED"})


class OcoLeg(NamedTuple):
    """One leg as the detail shows it: `take-profit` (the limit leg) or `stop-loss`."""

    leg_id: str
    role: str
    side: str
    price: Decimal
    stop_price: Decimal | None
    size: Decimal
    status: str  # NEW | TRIGGERED | DONE | CANCELLED


class OcoOrder(NamedTuple):
    order_id: str
    client_oid: str
    symbol: str
    status: str  # NEW | TRIGGERED | DONE | CANCELLED
    legs: tuple[OcoLeg, ...] = ()

    @property
    def active(self) -> bool:
        """Whether anything of it can still trade: a leg live (a limit leg partly filled
        keeps resting after the OCO is DONE), or, without the legs, its own status."""
        if self.legs:
            return any(leg.status in _ACTIVE for leg in self.legs)
        return self.status in _ACTIVE


class OcoSeen(NamedTuple):
    """A lookup by clientOid: `found` (the OCO, its legs, and the fills of its legs),
    `absent`, or `failed` (proves nothing; `message` says why)."""

    kind: str
    order: OcoOrder | None = None
    fills: tuple[Fill, ...] = ()
    message: str = ""

    @property
    def filled(self) -> tuple[Decimal, Decimal]:
        """What the legs traded: (size, value)."""
        size = sum((f.size for f in self.fills), Decimal(0))
        value = sum((f.price * f.size for f in self.fills), Decimal(0))
        return size, value


def oco_body(*, client_oid: str, symbol: str, side: str, price: Decimal, size: Decimal,
             stop_price: Decimal, limit_price: Decimal) -> dict[str, str]:
    """The body of `POST /api/v3/oco/order` (all amounts as plain decimal strings)."""
    return {"clientOid": client_oid, "symbol": symbol, "side": side,
            "price": format(price, "f"), "size": format(size, "f"),
            "stopPrice": format(stop_price, "f"), "limitPrice": format(limit_price, "f"),
            "tradeType": "TRADE"}


def _status(data: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = _text(data, key).upper()
    if value not in allowed:
        raise MalformedPayload(f"field {key!r} is not a known status: {value!r}")
    return "CANCELLED" if value == "CANCELED" else value


def parse_oco(data: Any) -> OcoOrder:
    """`GET /api/v3/oco/order/{id}` and `/client-order/{cid}`: the OCO without its legs."""
    if not isinstance(data, dict):
        raise MalformedPayload("an OCO order must be an object")
    _time(data.get("orderTime"))  # present and a time: KuCoin always sends it
    return OcoOrder(_text(data, "orderId"), _text(data, "clientOid"), _text(data, "symbol"),
                    _status(data, "status", OCO_STATUSES))


def parse_oco_detail(data: Any) -> OcoOrder:
    """`GET /api/v3/oco/order/details/{id}`: the OCO and its two legs (the limit leg first,
    as KuCoin lists them; the stop leg is the one whose stopPrice differs from its price)."""
    order = parse_oco(data)
    legs = data.get("orders")
    if not isinstance(legs, list) or len(legs) != 2:
        raise MalformedPayload("an OCO's detail needs 'orders' with its two legs")
    parsed = []
    for index, raw in enumerate(legs):
        if not isinstance(raw, dict):
            raise MalformedPayload("an OCO leg must be an object")
        price, stop = _need(raw, "price"), _dec(raw, "stopPrice")
        side = _text(raw, "side")
        if side not in ("buy", "sell"):
            raise MalformedPayload(f"field 'side' is not buy or sell: {side!r}")
        parsed.append(OcoLeg(_text(raw, "id"), "take-profit" if index == 0 else "stop-loss",
                             side, price, stop, _need(raw, "size"),
                             _status(raw, "status", LEG_STATUSES)))
    return order._replace(legs=tuple(parsed))


def parse_oco_list(data: Any) -> tuple[list[OcoOrder], int]:
    """`GET /api/v3/oco/orders`: one page (newest first) and the total count."""
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise MalformedPayload("a page needs an 'items' list")
    total = data.get("totalNum")
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise MalformedPayload(f"field 'totalNum' is not a count: {total!r}")
    return [parse_oco(item) for item in data["items"]], total


class KucoinOco:
    """The OCO endpoints, one `KucoinRest.call` each."""

    def __init__(self, rest: KucoinRest) -> None:
        self.rest = rest

    async def place(self, body: Mapping[str, Any]) -> Outcome:
        return await self.rest.call("POST", "/api/v3/oco/order", body=body, signed=True,
                                    order=True)

    async def cancel_by_id(self, order_id: str) -> Outcome:
        return await self.rest.call("DELETE", f"/api/v3/oco/order/{order_id}", signed=True)

    async def cancel_by_client_oid(self, client_oid: str) -> Outcome:
        return await self.rest.call("DELETE", f"/api/v3/oco/client-order/{client_oid}",
                                    signed=True)

    async def by_id(self, order_id: str) -> Outcome:
        return await self.rest.call("GET", f"/api/v3/oco/order/{order_id}", signed=True)

    async def by_client_oid(self, client_oid: str) -> Outcome:
        return await self.rest.call("GET", f"/api/v3/oco/client-order/{client_oid}",
                                    signed=True)

    async def detail(self, order_id: str) -> Outcome:
        return await self.rest.call("GET", f"/api/v3/oco/order/details/{order_id}",
                                    signed=True)

    async def page(self, symbol: str | None, page: int = 1, size: int = 50) -> Outcome:
        params = [("currentPage", str(page)), ("pageSize", str(size))]
        if symbol is not None:
            params.insert(0, ("symbol", symbol))
        return await self.rest.call("GET", "/api/v3/oco/orders", params=params, signed=True)

    async def leg_fills(self, symbol: str, leg_id: str) -> Outcome:
        """The fills of one leg: an OCO's legs are orders of the classic (legacy) family."""
        return await self.rest.call("GET", "/api/v1/fills",
                                    params=[("symbol", symbol), ("orderId", leg_id)],
                                    signed=True)

    async def look_up(self, client_oid: str, symbol: str) -> OcoSeen:
        """The OCO by clientOid with both legs, and the fills of each leg that traded. Any
        reply that is not an answer (an error, a malformed payload) is `failed`: a lookup
        that proves nothing is asked again, never taken for an absence."""
        got = await self.by_client_oid(client_oid)
        if got.action is Action.ABSENT:
            return OcoSeen("absent", message=got.message)
        if got.action is not Action.OK:
            return OcoSeen("failed", message=got.message or got.action.value)
        try:
            head = parse_oco(got.data)
        except PayloadError as err:
            return OcoSeen("failed", message=f"a malformed OCO order: {err}")
        if head.client_oid != client_oid:
            return OcoSeen("failed", message=f"asked for OCO {client_oid}, the exchange "
                                             f"answered {head.client_oid}")
        detail = await self.detail(head.order_id)
        if detail.action is not Action.OK:
            return OcoSeen("failed", message=detail.message or detail.action.value)
        try:
            order = parse_oco_detail(detail.data)
        except PayloadError as err:
            return OcoSeen("failed", message=f"a malformed OCO detail: {err}")
        fills: list[Fill] = []
        for leg in order.legs:
            # While the OCO is NEW nothing traded; after, any leg may have (a limit leg
            # partly filled rests on as NEW beside a DONE OCO, or was cancelled after it).
            if order.status == "NEW":
                continue
            reply = await self.leg_fills(symbol, leg.leg_id)
            if reply.action is not Action.OK:
                return OcoSeen("failed", message=reply.message or reply.action.value)
            try:
                fills += [f for f in parse_fills_page(reply.data) if f.order_id == leg.leg_id]
            except PayloadError as err:
                return OcoSeen("failed", message=f"a malformed fills page: {err}")
        return OcoSeen("found", order, tuple(fills))


def leg_of(seen: OcoSeen, fill: Fill) -> str:
    """`take-profit` or `stop-loss`: which leg a fill is of."""
    if seen.order is not None:
        for leg in seen.order.legs:
            if leg.leg_id == fill.order_id:
                return leg.role
    return "unknown"

