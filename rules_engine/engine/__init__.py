"""The pure core of the watcher: evaluate compiled rules on a market snapshot at a moment."""

from rules_engine.engine._evaluate import (
    RULE_TRANSITIONS,
    Arm,
    Decision,
    IllegalTransition,
    RuleState,
    arm,
    evaluate,
    in_window,
    initial_state,
    step,
)
from rules_engine.engine._values import Fill, Market, Truth, leaves, truth, value

__all__ = [
    "RULE_TRANSITIONS",
    "Arm",
    "Decision",
    "Fill",
    "IllegalTransition",
    "Market",
    "RuleState",
    "Truth",
    "arm",
    "evaluate",
    "in_window",
    "initial_state",
    "leaves",
    "step",
    "truth",
    "value",
]
