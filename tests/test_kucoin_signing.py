"""Signing: the reference's test vectors (section 2.5), and agreement with an independent
reimplementation on random requests."""

from __future__ import annotations

import base64
import hashlib
import hmac as hmac_module
from urllib.parse import parse_qsl, unquote, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from rules_engine.adapters.kucoin._signing import Credentials, Secret, sign_request, signature

V1_SECRET = "f03a5284-5c39-4aaa-9b20-dea10bdcf8e3"
V2_SECRET = "2d9c6a6e-7d71-4c0b-a3a5-1d4f1b8e9c10"
V1_BODY = (
    b'{"clientOid":"5c52e11203aa677f33e493fb","side":"buy","symbol":"BTC-USDT","type":"limit",'
    b'"price":"30000","size":"0.001","timeInForce":"GTC","postOnly":false,"hidden":false,'
    b'"iceberg":false,"cancelAfter":-1}'
)


def creds(secret: str, passphrase: str, version: str = "2") -> Credentials:
    return Credentials("key", Secret(secret), Secret(passphrase), version)


def test_vector_1_post_with_body() -> None:
    signed = sign_request(
        creds(V1_SECRET, "QWIxMjM0NTY3OCkoKiZeJSQjQA=="),
        "POST",
        "/api/v1/hf/orders",
        timestamp_ms=1700000000000,
        body=V1_BODY,
    )
    assert signed.headers["KC-API-SIGN"] == "tY1BhDNfszi0M6/2X2863V5V0hgAWr3DL9ewgalmYQE="
    assert signed.headers["KC-API-PASSPHRASE"] == "HFkKIy8cKfQF3Ognmbamq9Bd8VfYy3eUQj7uC8NvMes="
    assert signed.body is V1_BODY


def test_vector_2_get_with_query_and_version_3_passphrase() -> None:
    signed = sign_request(
        creds(V2_SECRET, "my-pass-phrase", "3"),
        "GET",
        "/api/v1/hf/orders/active/page",
        timestamp_ms=1735689600123,
        params=[("symbol", "ETH-USDT"), ("pageNum", "1"), ("pageSize", "20")],
    )
    assert signed.url_path == "/api/v1/hf/orders/active/page?symbol=ETH-USDT&pageNum=1&pageSize=20"
    assert signed.headers["KC-API-SIGN"] == "WZuoOg8Ibo6wm1Ez7MzL8eNGdkrVmtPB8tnmkBG92io="
    assert signed.headers["KC-API-PASSPHRASE"] == "O3kGDJFVBxgpdg0iR6jI2cgMd84KBuMSUp9NpNFjeRg="
    assert signed.headers["KC-API-KEY-VERSION"] == "3"


def test_extra_vectors() -> None:
    assert (
        signature(V1_SECRET, b'1547015186532POST/api/v1/deposit-addresses{"currency":"BTC"}')
        == "7QP/oM0ykidMdrfNEUmng8eZjg/ZvPafjIqmxiVfYu4="
    )
    bullet = sign_request(
        creds(V2_SECRET, "my-pass-phrase"),
        "POST",
        "/api/v1/bullet-private",
        timestamp_ms=1735689600123,
    )
    assert bullet.headers["KC-API-SIGN"] == "TSJezm2LqykMexh8M+G00OC6+trZpviOIOQQ7wkiaFE="


def test_the_query_is_signed_decoded_and_sent_encoded() -> None:
    signed = sign_request(
        creds(V2_SECRET, "x"),
        "GET",
        "/api/v1/sub/api-key",
        timestamp_ms=1735689600123,
        params=[("apiKey", "67*b3"), ("subName", "test"), ("passphrase", "abc!@#11")],
    )
    assert signed.headers["KC-API-SIGN"] == "QF0EA9Fm6Y0NpxMlvCscphumRzEajMEBKoI2396dTec="
    assert signed.url_path.endswith("?apiKey=67%2Ab3&subName=test&passphrase=abc%21%40%2311")


def test_secrets_never_show() -> None:
    secret = Secret("very-secret-value")
    for text in (str(secret), repr(secret), f"{secret}", f"{secret!r}", str([secret])):
        assert "very-secret-value" not in text
    c = creds("very-secret-value", "pass-phrase-value")
    assert "very-secret-value" not in repr(c) and "pass-phrase-value" not in repr(c)


def independent(  # noqa: PLR0917 - the parts of a request, in order
    secret: str, passphrase: str, method: str, url_path: str, body: bytes, stamp: str
) -> tuple[str, str]:
    """The verifier's view, written separately: decode what arrives, rebuild, HMAC."""
    parts = urlsplit(url_path)
    decoded = "&".join(f"{k}={v}" for k, v in parse_qsl(parts.query, keep_blank_values=True))
    target = parts.path + (f"?{decoded}" if parts.query else "")
    assert unquote(url_path) == target
    mac = hmac_module.new(
        secret.encode(), (stamp + method.upper() + target).encode() + body, hashlib.sha256
    )
    phrase = hmac_module.new(secret.encode(), passphrase.encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode(), base64.b64encode(phrase.digest()).decode()


text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "DELETE", "get"]),
    path=st.lists(st.from_regex(r"[a-zA-Z0-9_-]{1,8}", fullmatch=True), min_size=1, max_size=4).map(
        lambda xs: "/api/" + "/".join(xs)
    ),
    params=st.lists(st.tuples(text, text), max_size=4),
    body=st.binary(max_size=64),
    secret=text,
    passphrase=text,
    stamp=st.integers(0, 2**45),
)
def test_signer_agrees_with_an_independent_verifier(  # noqa: PLR0917 - hypothesis arguments
    method: str,
    path: str,
    params: list[tuple[str, str]],
    body: bytes,
    secret: str,
    passphrase: str,
    stamp: int,
) -> None:
    signed = sign_request(
        creds(secret, passphrase), method, path, timestamp_ms=stamp, params=params, body=body
    )
    sign, phrase = independent(secret, passphrase, method, signed.url_path, signed.body, str(stamp))
    assert signed.headers["KC-API-SIGN"] == sign
    assert signed.headers["KC-API-PASSPHRASE"] == phrase
