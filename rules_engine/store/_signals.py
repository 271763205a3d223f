"""Inbound signals in the store: each nonce claimed once, durably, and every accepted or
refused signal an event (`signal.accepted`, `signal.refused`), never with its secret.

A nonce is a row of `meta` (`sn:` and a hash of the signal's name and nonce, so any nonce fits
the key's 64 characters) holding the moment it may be forgotten: when a message carrying it
would be refused as stale anyway. Claiming inserts the row in the same transaction as the
event, so two deliveries of one message cannot both be accepted, across restarts and by two
processes on one store (the key is the table's primary key).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from rules_engine.store._schema import Event, Meta

__all__ = ["claim_signal", "refuse_signal"]

_PREFIX = "sn:"


def _key(name: str, nonce: str) -> str:
    digest = hashlib.sha256(f"{name}\0{nonce}".encode()).hexdigest()[:48]
    return _PREFIX + digest


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # fixed width: compares as text


def claim_signal(store: Any, name: str, nonce: str, *, now: datetime, forget_at: datetime,
                 payload: dict[str, Any]) -> bool:
    """Record an authenticated signal: False (nothing written) when its nonce was seen."""
    with store.session() as session:
        try:
            with session.begin():
                session.execute(delete(Meta).where(Meta.key.startswith(_PREFIX),
                                                   Meta.value < _stamp(now)))
                session.add(Meta(key=_key(name, nonce), value=_stamp(forget_at)))
                session.flush()
                session.add(Event(at=now, kind="signal.accepted", identity=None,
                                  client_oid=None, payload=payload))
        except IntegrityError:
            return False
    return True


def refuse_signal(store: Any, now: datetime, payload: dict[str, Any]) -> None:
    """Record a refused signal (what was wrong, from where; never the secret it carried)."""
    store.log("signal.refused", now, payload)
