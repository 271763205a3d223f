"""Rule states to JSON and back, exactly (decimals as strings, times as ISO 8601 UTC). Pure.

`restore` applies what a restart means to a stored state (the brief's semantics): a `crosses`
baseline does not survive it (the first observation after a restart is only a baseline), and a
`COND for D` restarts (nobody watched the condition while the watcher was down).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from rules_engine.engine._evaluate import Arm, RuleState
from rules_engine.engine._values import Fill

__all__ = ["dump_state", "load_state", "restore"]


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError(f"a stored time without a timezone: {value!r}")
    return parsed


def dump_state(state: RuleState) -> dict[str, Any]:
    return {
        "status": state.status,
        "firings": state.firings,
        "loaded_at": _time(state.loaded_at),
        "true_since": _time(state.true_since),
        "seen_false": state.seen_false,
        "rearm_at": _time(state.rearm_at),
        "baselines": [None if b is None else [str(b[0]), str(b[1])] for b in state.baselines],
        "arms": [
            {
                "parent_firing": arm.parent_firing,
                "fill": None if arm.fill is None else [str(arm.fill.price), str(arm.fill.size)],
            }
            for arm in state.arms
        ],
        **({"signal_mark": str(state.signal_mark)} if state.signal_mark is not None else {}),
        **({"retrying": state.retrying} if state.retrying is not None else {}),
    }


def load_state(data: dict[str, Any]) -> RuleState:
    loaded_at = _parse_time(data["loaded_at"])
    if loaded_at is None:
        raise ValueError("a stored rule state without loaded_at")
    return RuleState(
        status=str(data["status"]),
        firings=int(data["firings"]),
        loaded_at=loaded_at,
        true_since=_parse_time(data.get("true_since")),
        seen_false=bool(data.get("seen_false", True)),
        rearm_at=_parse_time(data.get("rearm_at")),
        baselines=tuple(
            None if b is None else (Decimal(b[0]), Decimal(b[1]))
            for b in data.get("baselines", ())
        ),
        arms=tuple(
            Arm(
                int(a["parent_firing"]),
                None
                if a.get("fill") is None
                else Fill(Decimal(a["fill"][0]), Decimal(a["fill"][1])),
            )
            for a in data.get("arms", ())
        ),
        signal_mark=None if data.get("signal_mark") is None else Decimal(data["signal_mark"]),
        retrying=None if data.get("retrying") is None else int(data["retrying"]),
    )


def restore(state: RuleState) -> RuleState:
    """A stored state as it stands after a restart: no `crosses` baseline, no `for` run."""
    return state._replace(baselines=(None,) * len(state.baselines), true_since=None)
