"""The SQL store (SQLAlchemy 2, alembic): intent first, every transition with its event."""

from rules_engine.store._explain import live_why, save_live_why
from rules_engine.store._repo import (
    FINAL_FIRINGS,
    FIRING_TRANSITIONS,
    Fence,
    IllegalTransition,
    LeaseHeld,
    LeaseLost,
    StateRow,
    StorageFailed,
    Store,
    VenueMismatch,
    client_oid,
    engine_prefix,
)

__all__ = [
    "FINAL_FIRINGS",
    "FIRING_TRANSITIONS",
    "Fence",
    "IllegalTransition",
    "LeaseHeld",
    "LeaseLost",
    "StateRow",
    "StorageFailed",
    "Store",
    "VenueMismatch",
    "client_oid",
    "engine_prefix",
    "live_why",
    "save_live_why",
]
