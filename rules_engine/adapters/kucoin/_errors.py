"""One table from KuCoin's replies to what the caller must do. Pure.

Every reply and every transport failure becomes an `Outcome` with an `Action`:

    OK         the request succeeded; `data` holds the payload
    RETRY      back off and try again (rate limit, overload, a read that failed)
    STOP       stop this account's traffic and ask a human (key, signature, permission, IP)
    REJECT     a definite business refusal (balance, size, symbol): record, never retry
    UNKNOWN    an order request whose outcome is not known (timeout or connection lost after
               sending, 5xx, a body that does not parse): look it up by clientOid before
               anything else; never "failed", never "not found"
    NOT_SENT   refused before the request was accepted (429, a stale timestamp): the same
               order may be sent again later with the same clientOid
    DUPLICATE  the clientOid is already taken: the order exists; look it up and adopt it
    ABSENT     a lookup or cancel answered that no such (open) order exists

HTTP status alone proves little (KuCoin answers business errors with 200): the `code` of the
JSON body decides when there is one. HTML and other non-JSON bodies are outcomes, not crashes.
"""

from __future__ import annotations

import json

from rules_engine.core.outcome import TRANSIENT, Action, Outcome

__all__ = ["TRANSIENT", "Action", "Outcome", "classify_exception", "classify_reply"]


# KuCoin codes -> action. Codes of the spot API the client uses (api-reference section 4,
# and the bodies ccxt recorded); anything else falls to the defaults of `classify_reply`.
CODES: dict[str, Action] = {
    # refused for business reasons: the order is not placed and must not be retried blindly
    "200001": Action.REJECT,  # order creation suspended for the pair
    "200002": Action.REJECT,  # cancel suspended (older docs: a per-endpoint limit)
    "200003": Action.REJECT,  # too many open orders
    "200004": Action.REJECT,  # balance insufficient
    "230003": Action.REJECT,  # balance insufficient
    "210021": Action.REJECT,  # balance not enough
    "260100": Action.REJECT,  # no balance
    "400100": Action.REJECT,  # parameter error (size, price, symbol, ...): see ABSENT messages
    "400200": Action.REJECT,  # forbidden to place an order
    "400330": Action.REJECT,  # price too far from NAV
    "400350": Action.REJECT,  # holding limit
    "400370": Action.REJECT,  # max price
    "400600": Action.REJECT,  # symbol not yet trading
    "400760": Action.REJECT,  # price limit
    "600100": Action.REJECT,  # funds below the minimum
    "600101": Action.REJECT,  # order funds below the minimum
    "900001": Action.REJECT,  # symbol does not exist
    # a person must act: nothing sent with this key will succeed
    "400001": Action.STOP,  # an auth header missing
    "400003": Action.STOP,  # key does not exist
    "400004": Action.STOP,  # wrong passphrase
    "400005": Action.STOP,  # wrong signature
    "400006": Action.STOP,  # IP not in the key's whitelist
    "400007": Action.STOP,  # access denied: permission
    "400303": Action.STOP,  # identity verification required
    "400500": Action.STOP,  # region not supported
    "401000": Action.STOP,  # endpoint deprecated
    "404000": Action.STOP,  # URL not found: a wrong base URL or path
    "411100": Action.STOP,  # user frozen
    "415000": Action.STOP,  # unsupported media type: a client bug
    # not accepted: safe to send again later
    "400002": Action.NOT_SENT,  # timestamp outside the window: resync the clock
    "429000": Action.NOT_SENT,  # rate limit or overload
    # the order exists already
    "126044": Action.DUPLICATE,
    # 126041 ("clientTimestamp parameter error", probably the expired HF window) is left to
    # the default: UNKNOWN for an order, so the firing protocol looks it up by clientOid and
    # proves it absent after the deadline before sending the same firing again.
    # lookups and cancels of orders that are not there (or not open any more)
    "100001": Action.ABSENT,
    "126043": Action.ABSENT,  # HF: order does not exist
    "100004": Action.ABSENT,
    "order_not_exist": Action.ABSENT,
}

# 400100 is generic; these messages mean "no such open order", not a refusal.
ABSENT_MESSAGES = (
    "order_not_exist",
    "order not exist",
    "ordernotexist",
    "not allow to be cancelled",
)


def _failure_without_body(status: int | None, message: str, *, order: bool) -> Outcome:
    if status is not None and status == 429:
        return Outcome(Action.NOT_SENT, None, message, status)
    if status in (401, 403):
        return Outcome(Action.STOP, None, message, status)
    if order:
        return Outcome(Action.UNKNOWN, None, message, status)
    return Outcome(Action.RETRY, None, message, status)


def classify_reply(status: int, body: bytes, *, order: bool) -> Outcome:
    """Classify a reply. `order` is True for a request that creates an order (where anything
    unproven is UNKNOWN rather than RETRY)."""
    try:
        document = json.loads(body) if body else None
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json can read
        document = None
    if not isinstance(document, dict) or "code" not in document:
        snippet = body[:80].decode("utf-8", "replace").strip().replace("\n", " ")
        kind = "HTML" if snippet.lower().startswith(("<!doctype", "<html")) else "non-JSON"
        return _failure_without_body(
            status, f"HTTP {status} with a {kind} body: {snippet!r}", order=order
        )
    code = str(document.get("code"))
    message = str(document.get("msg") or "")
    if code == "200000" and status == 200 and "msg" not in document:
        return Outcome(Action.OK, code, "", status, document.get("data"))
    if code == "200000" and status == 200:
        # A few endpoints put a failure in `msg` beside a success code; data decides.
        if document.get("data") is not None:
            return Outcome(Action.OK, code, message, status, document.get("data"))
        return Outcome(Action.REJECT, code, message, status)
    action = CODES.get(code)
    if code == "400100" and any(m in message.lower() for m in ABSENT_MESSAGES):
        action = Action.ABSENT
    if action is None:
        if status >= 500 or code.startswith("5"):
            action = Action.UNKNOWN if order else Action.RETRY
        elif order:
            action = Action.UNKNOWN  # an unknown code proves nothing about the order
        else:
            action = Action.RETRY if status >= 500 else Action.REJECT
    return Outcome(action, code, message, status, resync_time=code == "400002")


def classify_exception(error: BaseException, *, order: bool, sent: bool) -> Outcome:
    """A transport failure. `sent` is False only when the request provably never left (the
    connection could not be opened): then the order was not placed."""
    message = f"{type(error).__name__}: {error}".strip().rstrip(":")
    if not sent:
        return Outcome(Action.NOT_SENT if order else Action.RETRY, None, message, None)
    return Outcome(Action.UNKNOWN if order else Action.RETRY, None, message, None)
