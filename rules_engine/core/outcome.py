"""What a venue's answer means for the caller: an `Outcome` with the `Action` to take.

The KuCoin adapter classifies every reply and transport failure into one (its
`_errors.py` holds the table); the runtime acts on the action only, never on a venue's
codes:

    OK         the request succeeded; `data` holds the payload
    RETRY      back off and try again (rate limit, overload, a read that failed)
    STOP       stop this account's traffic and ask a human (key, signature, permission, IP)
    REJECT     a definite business refusal (balance, size, symbol): record, never retry
    UNKNOWN    an order request whose outcome is not known: look it up by clientOid first
    NOT_SENT   refused before the request was accepted: may be sent again, same clientOid
    DUPLICATE  the clientOid is already taken: the order exists; look it up and adopt it
    ABSENT     a lookup or cancel answered that no such (open) order exists
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

__all__ = ["TRANSIENT", "Action", "Outcome"]


class Action(enum.Enum):
    OK = "ok"
    RETRY = "retry after backoff"
    STOP = "stop and ask a human"
    REJECT = "rejected: record it, never retry"
    UNKNOWN = "outcome unknown: look the order up by clientOid before anything else"
    NOT_SENT = "not accepted: may be sent again later with the same clientOid"
    DUPLICATE = "clientOid already used: look the order up and adopt it"
    ABSENT = "no such open order on the exchange"


# What an exchange that is down, overloaded or rate-limiting answers: for a read, asking
# again later may succeed; no answer of these says anything about the request's subject.
TRANSIENT = frozenset({Action.RETRY, Action.UNKNOWN, Action.NOT_SENT})


class Outcome(NamedTuple):
    action: Action
    code: str | None
    message: str
    http_status: int | None
    data: Any = None
    resync_time: bool = False  # 400002: measure the server time again first
