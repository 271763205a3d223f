"""The pure core of the watcher: evaluate compiled rules on a market snapshot at a moment."""

from rules_engine.engine._codec import dump_state, load_state, restore
from rules_engine.engine._evaluate import (
    RULE_TRANSITIONS,
    Arm,
    Decision,
    IllegalTransition,
    RuleState,
    arm,
    carry_over,
    evaluate,
    in_window,
    initial_state,
    next_due,
    retry_firing,
    step,
    unblock,
)
from rules_engine.engine._index import RuleIndex, Timers
from rules_engine.engine._orders import Blocked, OrderIntent, resolve_order
from rules_engine.engine._protocol import (
    Lookup,
    Resolution,
    deadline,
    order_body,
    resolve_unknown,
)
from rules_engine.engine._values import Fill, Market, Truth, leaves, truth, value

__all__ = [
    "RULE_TRANSITIONS",
    "Arm",
    "Blocked",
    "Decision",
    "Fill",
    "IllegalTransition",
    "Lookup",
    "Market",
    "OrderIntent",
    "Resolution",
    "RuleIndex",
    "RuleState",
    "Timers",
    "Truth",
    "arm",
    "carry_over",
    "deadline",
    "dump_state",
    "evaluate",
    "in_window",
    "initial_state",
    "leaves",
    "load_state",
    "next_due",
    "order_body",
    "resolve_order",
    "resolve_unknown",
    "restore",
    "retry_firing",
    "step",
    "truth",
    "unblock",
    "value",
]
