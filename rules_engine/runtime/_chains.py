"""Chains, and the values rules read of them and of the account: `position`, `pnl`, `pnl%`
(docs/language.md, Position and account values) and `balance(CUR)`.

A **chain** is one firing of a rule without `after` (its root) and every firing armed from it
through `after` (a firing of `after R ...` armed by R's firing k belongs to the chain of R's
firing k, recursively). Its fills are those of every order its firings placed (a bracket's
stop-loss included), on the symbol of the rule that reads them. The chains are rebuilt at
start from the store (firings, orders, fills: a restart loses nothing), then followed as
firings commit and fills arrive; `engine/_position.py` books them.

A rule that reads chain values is stepped on a `ChainView`: the market's values, with the
chain values of the chain its next firing belongs to (its pending `after` arm).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from rules_engine.compiler import CompiledRule
from rules_engine.compiler import model as M
from rules_engine.core.symbols import SymbolTable
from rules_engine.engine import Arm, RuleState, leaves
from rules_engine.engine._position import ChainBook, ChainFill, book, pnl, pnl_rate
from rules_engine.engine._values import order_parts
from rules_engine.runtime._market import Change, put

__all__ = ["ChainView", "Chains", "balance_changes"]

Key = tuple[str, int]  # (rule identity, firing number)


class ChainView(Mapping[object, Decimal]):
    """The market's values, and the values of one chain (absent: unknown)."""

    __slots__ = ("_base", "_chains", "_root")

    def __init__(self, base: Mapping[object, Decimal], chains: Chains, root: Key) -> None:
        self._base, self._chains, self._root = base, chains, root

    def get(self, key: object, default: Any = None) -> Any:
        if isinstance(key, M.Chain):
            found = self._chains.value(self._root, key, self._base)
            return default if found is None else found
        return self._base.get(key, default)

    def __getitem__(self, key: object) -> Decimal:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None

    def __iter__(self) -> Iterator[object]:
        return iter(self._base)

    def __len__(self) -> int:
        return len(self._base)


class Chains:
    def __init__(self, fee_rate: Decimal, symbols: SymbolTable) -> None:
        self.fee_rate = fee_rate
        self.symbols = symbols
        self.roots: dict[Key, Key] = {}  # a firing armed through `after` -> its chain's root
        self.fills: dict[Key, list[tuple[str, ChainFill]]] = {}  # root -> (symbol, fill)
        self._seen: set[tuple[str, str]] = set()  # (trade id, clientOid)
        self._books: dict[tuple[Key, str], ChainBook] = {}
        self._reads: dict[str, tuple[CompiledRule, bool]] = {}
        self.loaded = False

    # ------------------------------------------------------------ membership

    def root_of(self, identity: str, number: int) -> Key:
        key = (identity, number)
        return self.roots.get(key, key)

    def join(self, identity: str, number: int, parent: str | None,
             parent_firing: int | None) -> None:
        """Firing `number` of `identity`, armed by `parent`'s firing `parent_firing` (None:
        a root), belongs to that firing's chain."""
        if parent is not None and parent_firing is not None:
            self.roots[(identity, number)] = self.root_of(parent, parent_firing)

    def ensure(self, store: Any, rules: Mapping[str, CompiledRule]) -> None:
        """Load the chains from the store once some rule reads them (at start, or when a
        reload brings the first such rule): a store whose rules read none is not read."""
        if not self.loaded and any(self.reads(rule) for rule in rules.values()):
            self.load(store, rules)

    def load(self, store: Any, rules: Mapping[str, CompiledRule]) -> None:
        """Every chain from the store: firings (in the order they were decided, so a parent
        comes before its children), their orders and the orders' fills, in the order they
        happened (the store holds every fill the watcher followed so far, too)."""
        self.loaded = True
        self.fills.clear()
        self._seen.clear()
        self._books.clear()
        owners: dict[int, Key] = {}
        for firing in store.firings():
            arm = (firing.inputs or {}).get("arm") or {}
            parent = arm.get("parent")
            rule = rules.get(firing.identity)
            if parent is None and rule is not None and rule.after is not None:
                parent = rule.after[0]
            number = arm.get("parent_firing")
            self.join(firing.identity, firing.number, parent,
                      number if isinstance(number, int) else None)
            owners[firing.id] = (firing.identity, firing.number)
        orders: dict[str, tuple[Key, str, str]] = {}
        for order in store.orders():
            key = owners.get(order.firing_id) if order.firing_id is not None else None
            if key is not None:
                orders[order.client_oid] = (key, order.side, order.symbol)
        for fill in store.fills():
            owner = orders.get(fill.client_oid)
            if owner is not None:
                key, side, symbol = owner
                self.add(key, fill.trade_id, fill.client_oid, symbol, ChainFill(
                    side, fill.price, fill.size, fill.fee, fill.fee_currency))

    def add(self, key: Key, trade_id: str, oid: str, symbol: str, fill: ChainFill) -> Key | None:
        """A fill of an order of firing `key`; its chain's root, or None if already known."""
        if (trade_id, oid) in self._seen:
            return None
        self._seen.add((trade_id, oid))
        root = self.root_of(*key)
        self.fills.setdefault(root, []).append((symbol, fill))
        self._books.pop((root, symbol), None)
        return root

    def changes(self, symbol: str) -> list[Change]:
        """What a fill on `symbol` changes: its chain values, for the index to select the
        rules that read them (each is stepped on its own chain)."""
        return [Change(M.Chain(kind, symbol), None, Decimal(0))
                for kind in ("position", "pnl", "pnl_pct")]

    # ------------------------------------------------------------ values

    def book_of(self, root: Key, symbol: str) -> ChainBook:
        cached = self._books.get((root, symbol))
        if cached is None:
            info = self.symbols.get(symbol)
            base = info.base_currency if info is not None else ""
            quote = info.quote_currency if info is not None else ""
            cached = book((f for s, f in self.fills.get(root, ()) if s == symbol),
                          base=base, quote=quote, fee_rate=self.fee_rate)
            self._books[(root, symbol)] = cached
        return cached

    def value(self, root: Key, leaf: M.Chain, market: Mapping[object, Decimal]
              ) -> Decimal | None:
        chain = self.book_of(root, leaf.symbol)
        if leaf.kind == "position":
            return chain.position
        bid = market.get(M.Field(leaf.symbol, "bid"))
        ask = market.get(M.Field(leaf.symbol, "ask"))
        if leaf.kind == "pnl":
            return pnl(chain, bid, ask)
        return pnl_rate(chain, bid, ask)

    def reads(self, rule: CompiledRule) -> bool:
        """Whether the rule reads a chain value (in its condition or its order)."""
        cached = self._reads.get(rule.identity)
        if cached is not None and cached[0] is rule:
            return cached[1]
        parts: list[object] = [rule.condition] if rule.condition is not None else []
        if rule.order is not None:
            parts.extend(order_parts(rule.order))
        found = any(isinstance(leaf, M.Chain) for part in parts for leaf in leaves(part))
        self._reads[rule.identity] = (rule, found)
        return found

    def view(self, rule: CompiledRule, arm: Arm | None,
             market: Mapping[object, Decimal]) -> Mapping[object, Decimal]:
        """The values `rule` is stepped (or its order decided) on: with the chain of the
        firing `arm` arms, when it reads any."""
        if rule.after is None or arm is None or not self.reads(rule):
            return market
        return ChainView(market, self, self.root_of(rule.after[0], arm.parent_firing))

    def view_for(self, rule: CompiledRule, state: RuleState,
                 market: Mapping[object, Decimal]) -> Mapping[object, Decimal]:
        return self.view(rule, state.arms[0] if state.arms else None, market)


def balance_changes(values: dict[object, Decimal], currencies: set[str],
                    balances: Mapping[str, Decimal], live: bool) -> list[Change]:
    """`balance(CUR)` is fresh while the account's order channel is live (it pushes every
    balance change) and the balance is known; else unknown, as stale market data is. Sets
    the leaves in `values` and returns the ones that changed. Once the balances were read,
    a currency the account holds none of is 0."""
    changes: list[Change] = []
    for currency in currencies:
        put(values, M.Balance(currency),
            balances.get(currency, Decimal(0) if balances else None) if live else None, changes)
    return changes
