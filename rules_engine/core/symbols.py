"""Symbol metadata (KuCoin `/api/v2/symbols`) as immutable core values.

Raw KuCoin field names stop here: `parse_symbols_reply` turns a saved or fetched reply into a
`SymbolTable`. Money is `Decimal`; a field KuCoin did not give (such as `minFunds` in the 2021
list) is `None`, and checks that need it say so instead of guessing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["SymbolDataError", "SymbolInfo", "SymbolTable", "parse_symbols_reply"]


class SymbolDataError(ValueError):
    """A symbols document that cannot be read: the message names the place and the fix."""


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    symbol: str
    base_currency: str
    quote_currency: str
    base_min_size: Decimal
    base_max_size: Decimal
    base_increment: Decimal
    quote_increment: Decimal
    price_increment: Decimal
    quote_min_size: Decimal
    quote_max_size: Decimal
    min_funds: Decimal | None
    enable_trading: bool

    @staticmethod
    def from_kucoin(raw: Mapping[str, Any], where: str = "symbol") -> SymbolInfo:
        """Build from one element of KuCoin's `/api/v2/symbols` (or v1) `data` list."""

        def text(key: str) -> str:
            value = raw.get(key)
            if not isinstance(value, str) or not value:
                raise SymbolDataError(f"{where}: field {key!r} missing or not a string")
            return value

        def dec(key: str, *, required: bool = True) -> Decimal | None:
            value = raw.get(key)
            if value is None and not required:
                return None
            if not isinstance(value, str | int):
                raise SymbolDataError(f"{where}: field {key!r} must be a decimal string")
            try:
                number = Decimal(str(value))
            except InvalidOperation:
                message = f"{where}: field {key!r} is not a number: {value!r}"
                raise SymbolDataError(message) from None
            if not number.is_finite() or number < 0:
                raise SymbolDataError(f"{where}: field {key!r} must be finite and >= 0")
            if number and not -40 <= number.adjusted() <= 40:
                raise SymbolDataError(f"{where}: field {key!r} must be between 1e-40 and 1e40")
            return number

        def need(key: str) -> Decimal:
            number = dec(key)
            assert number is not None
            return number

        enable = raw.get("enableTrading", True)
        return SymbolInfo(
            symbol=text("symbol"),
            base_currency=text("baseCurrency"),
            quote_currency=text("quoteCurrency"),
            base_min_size=need("baseMinSize"),
            base_max_size=need("baseMaxSize"),
            base_increment=need("baseIncrement"),
            quote_increment=need("quoteIncrement"),
            price_increment=need("priceIncrement"),
            quote_min_size=need("quoteMinSize"),
            quote_max_size=need("quoteMaxSize"),
            min_funds=dec("minFunds", required=False),
            enable_trading=bool(enable),
        )


@dataclass(frozen=True, slots=True)
class SymbolTable(Mapping[str, SymbolInfo]):
    """Every known symbol, with where the list came from and how old it is."""

    symbols: Mapping[str, SymbolInfo]
    as_of: datetime
    source: str
    derived: bool = False
    currencies: frozenset[str] = field(default=frozenset())

    def __post_init__(self) -> None:
        if self.as_of.tzinfo is None:
            raise ValueError("SymbolTable.as_of must be timezone-aware")
        if not self.currencies:
            found = set()
            for info in self.symbols.values():
                found.add(info.base_currency)
                found.add(info.quote_currency)
            object.__setattr__(self, "currencies", frozenset(found))

    def __getitem__(self, key: str) -> SymbolInfo:
        return self.symbols[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.symbols)

    def __len__(self) -> int:
        return len(self.symbols)

    def describe(self) -> str:
        kind = "derived snapshot" if self.derived else "symbols list"
        stamp = f"{self.as_of:%Y-%m-%d %H:%M} UTC"
        return f"{kind} from {self.source}, as of {stamp}, {len(self)} symbols"


def parse_symbols_reply(
    document: Any, *, source: str, as_of: datetime | None = None, derived: bool = False
) -> SymbolTable:
    """Read a saved `/api/v2/symbols` reply (`{"code": "200000", "data": [...]}`).

    Also accepts the project's own snapshot format, which wraps the reply with its metadata:
    `{"as_of": ISO-8601, "source": str, "derived": bool, "reply": {...}}`.
    """
    if isinstance(document, dict) and "reply" in document:
        try:
            as_of = datetime.fromisoformat(str(document["as_of"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            raise SymbolDataError(f"{source}: 'as_of' must be an ISO-8601 timestamp") from None
        if as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=UTC)
        source = str(document.get("source", source))
        derived = bool(document.get("derived", derived))
        document = document["reply"]
    if isinstance(document, dict):
        code = document.get("code")
        if code is not None and str(code) != "200000":
            raise SymbolDataError(
                f"{source}: the reply is a KuCoin error (code {code}: {document.get('msg', '')!s})"
            )
        rows = document.get("data")
    else:
        rows = document
    if not isinstance(rows, list):
        raise SymbolDataError(
            f"{source}: expected a /api/v2/symbols reply with a 'data' list of symbols"
        )
    table: dict[str, SymbolInfo] = {}
    for index, raw in enumerate(rows):
        if not isinstance(raw, dict):
            raise SymbolDataError(f"{source}: data[{index}] is not an object")
        info = SymbolInfo.from_kucoin(raw, where=f"{source}: data[{index}]")
        table[info.symbol] = info
    return SymbolTable(
        symbols=table, as_of=as_of or datetime.now(UTC), source=source, derived=derived
    )
