"""`POST /signal`: inbound signals from TradingView alerts (or anything that can POST).

TradingView sends the alert's message as the body, as JSON (`Content-Type: application/json`)
when the message is valid JSON, else as plain text; it cannot add headers, so everything is in
the body. Read fields (docs/operations.md, "Inbound signals"):

    {"signal": "breakout", "secret": "<the [signals.breakout] secret>",
     "time": "{{timenow}}", "nonce": "{{ticker}}-{{timenow}}"}

or the same as plain text, `key=value` words separated by spaces or lines:

    signal=breakout secret=... time=2026-03-02T10:00:00Z nonce=BTCUSDT-1

`time` is ISO 8601 with a zone (`Z`), or seconds or milliseconds since the epoch; `nonce` is 1
to 128 printable characters, unique per alert. Other fields are ignored (not recorded).

A signal is accepted when its name is configured (`[signals.NAME]`), its secret matches
(compared in constant time), its time is within `max_skew_s` of the watcher's clock, and its
nonce was not seen in that window (`store/_signals.py`). Then it is recorded
(`signal.accepted`) and handed to the watcher (`deliver`); otherwise refused with a status
(400 malformed, 403 unknown name, wrong secret or stale time, 409 replayed nonce) and recorded
(`signal.refused`, with the reason). The secret is never logged, stored or echoed.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

__all__ = ["MAX_BODY", "SignalGate", "SignalSpec", "handle_signal", "read_body"]

MAX_BODY = 8192
_NONCE = re.compile(r"[\x21-\x7e]{1,128}")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")


@dataclass(frozen=True)
class SignalSpec:
    secret: str
    max_skew_s: float

    def __repr__(self) -> str:  # never the secret
        return f"SignalSpec(secret='**********', max_skew_s={self.max_skew_s})"


@dataclass
class SignalGate:
    """What `/signal` needs: the configured signals, where an accepted one goes (the
    watcher's `on_signal`, on its loop), and the watcher's clock."""

    specs: Mapping[str, SignalSpec]
    deliver: Callable[[str, datetime], None] | None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


class _Refused(Exception):
    def __init__(self, status: int, why: str, name: str | None = None) -> None:
        super().__init__(why)
        self.status, self.why, self.name = status, why, name


def read_body(raw: bytes, content_type: str) -> dict[str, str]:
    """The body's fields as text (JSON object, or `key=value` words)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(400, "the body is not UTF-8 text") from None
    stripped = text.strip()
    if stripped.startswith("{") or "json" in content_type:
        try:
            data = json.loads(stripped, parse_float=Decimal)
        except (ValueError, RecursionError):
            raise _Refused(400, "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise _Refused(400, "the JSON body must be an object")
        return {str(k): str(v) for k, v in data.items()
                if isinstance(v, str | int | Decimal) and not isinstance(v, bool)}
    fields: dict[str, str] = {}
    for word in stripped.split():
        key, sep, value = word.partition("=")
        if sep:
            fields[key] = value
    return fields


def _sent_at(text: str) -> datetime:
    try:
        number = Decimal(text)
    except InvalidOperation:
        number = None
    if number is not None and number.is_finite():
        seconds = number / 1000 if number > Decimal(10) ** 11 else number  # ms or s
        try:
            return datetime.fromtimestamp(float(seconds), UTC)
        except (OverflowError, OSError, ValueError):
            raise _Refused(400, f"time {text[:40]!r} is out of range") from None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _Refused(400, "time must be ISO 8601 with a zone (2026-03-02T10:00:00Z) or "
                            "seconds since the epoch") from None
    if parsed.tzinfo is None:
        raise _Refused(400, "time needs a zone (end it with Z)")
    return parsed.astimezone(UTC)


def _check(fields: dict[str, str], gate: SignalGate, now: datetime) -> tuple[str, str,
                                                                               datetime, float]:
    """(name, nonce, sent_at, skew) of an authentic, fresh signal; else `_Refused`."""
    missing = [k for k in ("signal", "secret", "time", "nonce") if not fields.get(k)]
    name = fields.get("signal") or None
    if name is not None and not _NAME.fullmatch(name):
        raise _Refused(400, "signal is not a signal name", None)
    if missing:
        raise _Refused(400, f"missing {', '.join(missing)}", name)
    assert name is not None
    spec = gate.specs.get(name)
    if spec is None:
        raise _Refused(403, f"signal {name!r} is not configured", name)
    if not hmac.compare_digest(fields["secret"].encode(), spec.secret.encode()):
        raise _Refused(403, "wrong secret", name)
    nonce = fields["nonce"]
    if not _NONCE.fullmatch(nonce):
        raise _Refused(400, "nonce must be 1 to 128 printable characters", name)
    sent = _sent_at(fields["time"])
    off = (now - sent).total_seconds()
    if abs(off) > spec.max_skew_s:
        word = "old" if off > 0 else "ahead"
        raise _Refused(403, f"stale: its time is {abs(off):.0f}s {word} of the watcher's "
                            f"clock (max_skew_s {spec.max_skew_s:g})", name)
    return name, nonce, sent, spec.max_skew_s


async def handle_signal(request: web.Request, gate: SignalGate, store: Any) -> web.Response:
    from rules_engine.store._signals import claim_signal, refuse_signal

    now = gate.now()
    who = request.remote or "unknown"
    name: str | None = None
    try:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise _Refused(400, f"the body is over {MAX_BODY} bytes")
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise _Refused(400, f"the body is over {MAX_BODY} bytes")
        fields = read_body(raw, request.content_type)
        name, nonce, sent, skew = _check(fields, gate, now)
        payload = {"signal": name, "nonce": nonce, "sent_at": sent.isoformat(),
                   "from": who}
        forget_at = sent + timedelta(seconds=skew)
        claimed = await asyncio.to_thread(lambda: claim_signal(
            store, name, nonce, now=now, forget_at=forget_at, payload=payload))
        if not claimed:
            raise _Refused(409, f"nonce {nonce[:40]!r} was already used (a replay)", name)
    except _Refused as refused:
        record = {"signal": refused.name or name, "why": refused.why, "from": who}
        await asyncio.to_thread(refuse_signal, store, now, record)
        return web.json_response({"error": f"refused: {refused.why}"}, status=refused.status)
    if gate.deliver is not None:
        gate.deliver(name, now)
    return web.json_response({"accepted": name, "at": now.isoformat()})
