"""No exchange payload makes the client crash: recorded frames and replies, mutated, give a
core event, a clean `PayloadError`, or a classified `Outcome`: never another exception."""

from __future__ import annotations

import json
from contextlib import suppress
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules_engine.adapters.kucoin._errors import Outcome, classify_reply
from rules_engine.adapters.kucoin._parsing import (
    PayloadError,
    parse_accounts,
    parse_fills_page,
    parse_level2,
    parse_order,
    parse_orders_page,
    parse_stats,
    parse_ws_message,
)

DATA = Path(__file__).parent / "data" / "kucoin"
FRAMES = [
    json.loads(line)
    for line in (DATA / "gocryptotrader_kucoin_wsHandleData.ndjson").read_text().splitlines()
]
STATIC = json.loads((DATA / "ccxt_static_response_kucoin.json").read_text())["methods"]
REPLIES = [case["httpResponse"] for cases in STATIC.values() for case in cases]

LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(["0", "", "1e999", "abc", "NaN", "-1"]),
    st.lists(st.text(max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
)


@st.composite
def mutated(draw: st.DrawFn, documents: list[Any]) -> Any:
    """A recorded document with a few values replaced, keys dropped or types changed."""
    doc = json.loads(json.dumps(draw(st.sampled_from(documents))))
    for _ in range(draw(st.integers(1, 4))):
        node = doc
        path: list[Any] = []
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
            path.append(key)
            node = node[key]
        if not path:
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "drop"]))
        if action == "drop" and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(LEAVES)
    return doc


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(FRAMES))
def test_mutated_websocket_frames_parse_or_fail_cleanly(frame: Any) -> None:
    with suppress(PayloadError):  # a clean refusal is fine; any other exception fails
        parse_ws_message(frame)


PARSERS = [
    parse_order,
    parse_orders_page,
    parse_fills_page,
    parse_stats,
    parse_level2,
    parse_accounts,
]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(REPLIES), st.sampled_from(PARSERS))
def test_mutated_rest_replies_parse_or_fail_cleanly(reply: Any, parser: Any) -> None:
    with suppress(PayloadError):
        parser(reply.get("data") if isinstance(reply, dict) else reply)


@settings(max_examples=300, deadline=None)
@given(st.integers(100, 599), st.binary(max_size=200), st.booleans())
def test_any_reply_body_is_classified(status: int, body: bytes, order: bool) -> None:
    assert isinstance(classify_reply(status, body, order=order), Outcome)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(REPLIES), st.integers(100, 599), st.booleans())
def test_mutated_json_replies_are_classified(reply: Any, status: int, order: bool) -> None:
    assert isinstance(classify_reply(status, json.dumps(reply).encode(), order=order), Outcome)
