"""`notify` text templates: `{name}` placeholders filled in when the rule fires.

The set of placeholders is fixed and each has a scope: some have a value in every rule, some
only in a rule that places an order, some only in a rule `after R filled`. The compiler
checks each placeholder against that scope (E608 unknown, E609 no value in this rule), so a
notification never goes out with a hole in it. `{{` and `}}` are literal braces.
`parse` runs at compile time and again when the notification is sent (it is cheap), so the
compiled rule keeps the text as written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from rules_engine.compiler._model import CompiledRule

__all__ = [
    "PLACEHOLDERS", "Part", "Placeholder", "TemplateError", "names", "parse", "pnl_chain",
    "render",
]


class Placeholder(NamedTuple):
    scope: str  # always | symbol | order | filled | chain
    meaning: str


PLACEHOLDERS: dict[str, Placeholder] = {
    "rule": Placeholder("always", "the rule's identity (its name, or its fingerprint)"),
    "firing": Placeholder("always", "the firing's number for this rule: 1, 2, ..."),
    "time": Placeholder("always", "when the rule fired, UTC, e.g. 2026-01-01T09:00:00Z"),
    "symbol": Placeholder("symbol", "the rule's symbol, e.g. BTC-USDT"),
    "side": Placeholder("order", "the order's side: buy or sell"),
    "type": Placeholder("order", "the order's type: market, limit, stop, trailing-stop"),
    "size": Placeholder("order", "the order's base size; a market order by funds: its funds "
                                 "and quote currency, e.g. 100 USDT"),
    "price": Placeholder("order", "the limit price; a stop order's trigger; `market` for a "
                                  "market order"),
    "parent": Placeholder("after", "the rule named in `after R ...`"),
    "fill_price": Placeholder("filled", "the parent order's volume-weighted fill price"),
    "filled_size": Placeholder("filled", "the parent order's filled size"),
    "pnl": Placeholder("chain", "realised profit of the chain in quote currency, fees "
                                "excluded, signed: +12.5 or -3.1"),
}


class Part(NamedTuple):
    """Literal text followed by one placeholder (`name` empty for the trailing text);
    `offset` is where the placeholder's `{` is in the template."""

    text: str
    name: str
    offset: int


class TemplateError(NamedTuple):
    offset: int
    length: int
    message: str


def parse(template: str) -> tuple[list[Part], list[TemplateError]]:
    """The template as parts, and what is malformed in it (a brace never closed, a `}`
    never opened, an empty `{}`). Names are returned as written, known or not."""
    parts: list[Part] = []
    errors: list[TemplateError] = []
    text: list[str] = []
    i, n = 0, len(template)
    while i < n:
        ch = template[i]
        if ch == "{" and template.startswith("{{", i):
            text.append("{")
            i += 2
        elif ch == "}" and template.startswith("}}", i):
            text.append("}")
            i += 2
        elif ch == "{":
            end = template.find("}", i + 1)
            if end < 0:
                errors.append(TemplateError(i, n - i, "`{` is never closed: write "
                                            "`{name}` for a placeholder, `{{` for a brace"))
                text.append(template[i:])
                break
            name = template[i + 1:end].strip()
            if not name:
                errors.append(TemplateError(i, end + 1 - i, "empty placeholder `{}`: name "
                                            "one, e.g. `{rule}`, or write `{{}}` for braces"))
            else:
                parts.append(Part("".join(text), name, i))
                text = []
            i = end + 1
        elif ch == "}":
            errors.append(TemplateError(i, 1, "`}` without its `{`: write `}}` for a brace"))
            text.append("}")
            i += 1
        else:
            text.append(ch)
            i += 1
    parts.append(Part("".join(text), "", n))
    return parts, errors


def render(parts: list[Part], values: Mapping[str, str]) -> str:
    """The text with each placeholder replaced; one without a value (a fill the exchange
    never reported, a record lost) reads `?`, never a crash."""
    return "".join(p.text + (values.get(p.name, "?") if p.name else "") for p in parts)


def names(template: str) -> set[str]:
    """The placeholders a template uses."""
    return {p.name for p in parse(template)[0] if p.name}


def pnl_chain(rule: CompiledRule, rules: Mapping[str, CompiledRule]
              ) -> tuple[CompiledRule, CompiledRule] | str | None:
    """`{pnl}` in `rule` (`after EXIT filled`): (ENTRY, EXIT), the two rules whose fills it
    compares, or why there is no such pair (as the end of a sentence); None when a rule of
    the chain did not compile (its own errors say why)."""
    if rule.after is None or rule.after[1] != "filled":
        return "is not `after EXIT filled`"
    exit_ = rules.get(rule.after[0])
    if exit_ is None:
        return None
    if exit_.after is None or exit_.after[1] != "filled":
        return f"follows {exit_.identity}, which is not itself `after ENTRY filled`"
    entry = rules.get(exit_.after[0])
    if entry is None:
        return None
    if exit_.order is None or entry.order is None or exit_.order.side == entry.order.side:
        return (f"follows {exit_.identity} and {entry.identity}, which are not an entry and "
                "an exit on opposite sides")
    return entry, exit_
