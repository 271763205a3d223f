"""KuCoin request signing, exactly as the gateway verifies it. Pure.

prehash = timestamp (ms) + METHOD + path [+ "?" + query, URL-decoded] + body, with no
separators; `KC-API-SIGN` = base64(HMAC-SHA256(secret, prehash)). For key versions 2 and 3
the passphrase is sent as base64(HMAC-SHA256(secret, passphrase)). The body signed is the body
sent, byte for byte: `Signed.body` is what the transport must put on the wire.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import NamedTuple
from urllib.parse import quote

__all__ = ["Credentials", "Secret", "Signed", "Signer", "sign_request", "signature"]


class Secret:
    """A secret string that never shows itself: not in `str`, `repr`, f-strings or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(
            self._value.encode(), other._value.encode()
        )

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")


class Credentials(NamedTuple):
    api_key: str
    secret: Secret
    passphrase: Secret
    key_version: str = "2"


class Signed(NamedTuple):
    """A signed request: the path and query to send, the exact body bytes and the headers."""

    url_path: str  # path + "?" + URL-encoded query, as sent on the wire
    body: bytes
    headers: dict[str, str]


def signature(secret: str, message: bytes) -> str:
    return base64.b64encode(hmac.digest(secret.encode(), message, hashlib.sha256)).decode()


def _query(params: Sequence[tuple[str, str]] | Mapping[str, str]) -> tuple[str, str]:
    """(encoded query for the wire, decoded query for the prehash), in the order given."""
    items = list(params.items()) if isinstance(params, Mapping) else list(params)
    wire = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in items)
    signed = "&".join(f"{k}={v}" for k, v in items)
    return wire, signed


class Signer:
    """Signs requests for one key; the passphrase header is computed once."""

    __slots__ = ("_key", "_passphrase", "_secret", "_version")

    def __init__(self, credentials: Credentials) -> None:
        self._key = credentials.api_key
        self._secret = credentials.secret.reveal().encode()
        self._version = credentials.key_version
        phrase = credentials.passphrase.reveal()
        self._passphrase = (
            signature(credentials.secret.reveal(), phrase.encode())
            if self._version in ("2", "3")
            else phrase
        )

    def __repr__(self) -> str:
        return f"Signer(api_key={self._key!r})"

    def sign(
        self,
        method: str,
        path: str,
        *,
        timestamp_ms: int,
        params: Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> Signed:
        """Sign one request. `params` go in the query (GET/DELETE); `body` is the exact JSON
        sent."""
        method = method.upper()
        url_path = signed_path = path
        if params:
            wire, decoded = _query(params)
            url_path = f"{path}?{wire}"
            signed_path = f"{path}?{decoded}"
        stamp = str(timestamp_ms)
        prehash = f"{stamp}{method}{signed_path}".encode() + body
        headers = {
            "KC-API-KEY": self._key,
            "KC-API-SIGN": base64.b64encode(
                hmac.digest(self._secret, prehash, hashlib.sha256)
            ).decode(),
            "KC-API-TIMESTAMP": stamp,
            "KC-API-PASSPHRASE": self._passphrase,
            "KC-API-KEY-VERSION": self._version,
        }
        if body:
            headers["Content-Type"] = "application/json"
        return Signed(url_path, body, headers)


def sign_request(
    credentials: Credentials,
    method: str,
    path: str,
    *,
    timestamp_ms: int,
    params: Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
    body: bytes = b"",
) -> Signed:
    """Sign one request with a one-off `Signer`."""
    return Signer(credentials).sign(
        method, path, timestamp_ms=timestamp_ms, params=params, body=body
    )
