"""Verification of KuCoin's request signatures (the server side, written for the sandbox).

prehash = KC-API-TIMESTAMP + METHOD + path[?decoded query] + raw body; sign = base64(HMAC-SHA256).
Key versions 2 and 3 send the passphrase as base64(HMAC-SHA256(secret, passphrase)); version 1
sends it in clear. Every comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import unquote

from rules_engine.sandbox import errors
from rules_engine.sandbox.config import KeyConfig
from rules_engine.sandbox.errors import ApiError

__all__ = ["b64_hmac", "verify_request"]

_REQUIRED = ("KC-API-KEY", "KC-API-SIGN", "KC-API-TIMESTAMP", "KC-API-PASSPHRASE")


def b64_hmac(secret: str, message: str | bytes) -> str:
    data = message.encode("utf-8") if isinstance(message, str) else message
    digest = hmac.new(secret.encode("utf-8"), data, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _equal(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode("utf-8"), right.encode("utf-8"))


def verify_request(  # noqa: PLR0917 - mirrors the parts of a request, in order
    headers: Mapping[str, str],
    method: str,
    raw_path_qs: str,
    body: bytes,
    now_ms: int,
    keys: Sequence[KeyConfig],
    remote_ip: str,
    window_ms: int = 5000,
) -> KeyConfig | ApiError:
    """The key that signed this request, or the error KuCoin would answer with."""
    for name in _REQUIRED:
        if not headers.get(name):
            return errors.missing_auth_header(name)
    api_key = headers["KC-API-KEY"]
    stamp = headers["KC-API-TIMESTAMP"]
    if not stamp.isdigit():
        return errors.missing_auth_header("KC-API-TIMESTAMP")
    if abs(int(stamp) - now_ms) > window_ms:
        return errors.invalid_timestamp()
    key = next((k for k in keys if _equal(k.api_key, api_key)), None)
    if key is None:
        return errors.invalid_key()
    secret = key.api_secret.get_secret_value()
    version = headers.get("KC-API-KEY-VERSION", "1")
    passphrase = key.api_passphrase.get_secret_value()
    expected_pass = passphrase if version == "1" else b64_hmac(secret, passphrase)
    if not _equal(headers["KC-API-PASSPHRASE"], expected_pass):
        return errors.invalid_passphrase()
    prehash = (stamp + method.upper() + unquote(raw_path_qs)).encode("utf-8") + body
    if not _equal(headers["KC-API-SIGN"], b64_hmac(secret, prehash)):
        return errors.invalid_sign()
    if key.ip_whitelist and remote_ip not in key.ip_whitelist:
        return errors.ip_not_allowed(remote_ip)
    return key
