"""The error table, on KuCoin's real error bodies (recorded by ccxt) and on broken replies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rules_engine.adapters.kucoin._errors import Action, classify_exception, classify_reply

BODIES = json.loads(
    (Path(__file__).parent / "data" / "kucoin" / "ccxt_kucoin_error_bodies.json").read_text()
)
SPOT = {  # recorded bodies of the spot API, and what they must mean
    "Order size below the minimum requirement.": Action.REJECT,
    "Order size increment invalid.": Action.REJECT,
    "Unsupported trading pair.": Action.REJECT,
    "Balance insufficient!": Action.REJECT,
    "Forbidden to place an order": Action.REJECT,
    "validation.createOrder.symbolNotAvailable": Action.REJECT,
    "Funds below the minimum requirement.": Action.REJECT,
    "The order funds should more then 0.1 USDT.": Action.REJECT,
    "order_not_exist_or_not_allow_to_cancel": Action.ABSENT,
    "error.getOrder.orderNotExist": Action.ABSENT,
    "Too many requests. System-level rate limit exceeded.": Action.NOT_SENT,
    "Internal Server Error": Action.UNKNOWN,
    "Unsupported Media Type": Action.STOP,
    "The interface has been deprecated": Action.STOP,
}


def recorded() -> list[dict[str, str]]:
    return [body for e in BODIES["errors"] for body in e["recorded_bodies"]]


def test_every_recorded_body_is_classified_without_crashing() -> None:
    for body in recorded():
        for status in (200, 400):
            outcome = classify_reply(status, json.dumps(body).encode(), order=True)
            assert outcome.action is not Action.OK or body.get("code") == "200000"


@pytest.mark.parametrize(("message", "action"), sorted(SPOT.items(), key=lambda kv: kv[0]))
def test_recorded_spot_errors_say_what_to_do(message: str, action: Action) -> None:
    body = next(b for b in recorded() if b["msg"] == message)
    status = {"429000": 429, "500000": 500, "415000": 415}.get(body["code"], 200)
    outcome = classify_reply(status, json.dumps(body).encode(), order=True)
    assert outcome.action is action
    assert outcome.code == body["code"]


@pytest.mark.parametrize(
    ("status", "code", "action"),
    [
        (401, "400003", Action.STOP),
        (401, "400004", Action.STOP),
        (401, "400005", Action.STOP),
        (400, "400001", Action.STOP),
        (401, "400006", Action.STOP),
        (403, "400007", Action.STOP),
        (200, "126044", Action.DUPLICATE),
        (404, "404000", Action.STOP),
    ],
)
def test_auth_and_duplicate_codes(status: int, code: str, action: Action) -> None:
    body = json.dumps({"code": code, "msg": "x"}).encode()
    assert classify_reply(status, body, order=True).action is action


def test_a_stale_timestamp_is_not_sent_and_asks_for_a_time_resync() -> None:
    outcome = classify_reply(400, b'{"code":"400002","msg":"KC-API-TIMESTAMP Invalid"}', order=True)
    assert (outcome.action, outcome.resync_time) == (Action.NOT_SENT, True)


@pytest.mark.parametrize(
    "body",
    [
        b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>",
        b"",
        b"{trunc",
        b"[1,2]",
        b'{"data": 1}',
        "\u00e9t\u00e9".encode("latin-1"),
    ],
)
def test_bodies_that_are_not_kucoin_replies_are_outcomes_not_crashes(body: bytes) -> None:
    order = classify_reply(502, body, order=True)
    read = classify_reply(502, body, order=False)
    assert order.action is Action.UNKNOWN  # an order in flight is never "failed"
    assert read.action is Action.RETRY
    assert "HTTP 502" in order.message


def test_success_carries_the_data() -> None:
    outcome = classify_reply(200, b'{"code":"200000","data":{"orderId":"abc"}}', order=True)
    assert outcome.action is Action.OK and outcome.data == {"orderId": "abc"}


def test_an_unknown_code_on_an_order_is_unknown_never_failed() -> None:
    body = b'{"code":"999999","msg":"something new"}'
    assert classify_reply(200, body, order=True).action is Action.UNKNOWN
    assert classify_reply(200, body, order=False).action is Action.REJECT


def test_transport_failures() -> None:
    timeout = TimeoutError("read timed out")
    assert classify_exception(timeout, order=True, sent=True).action is Action.UNKNOWN
    assert classify_exception(timeout, order=False, sent=True).action is Action.RETRY
    refused = ConnectionRefusedError("connect")
    assert classify_exception(refused, order=True, sent=False).action is Action.NOT_SENT
