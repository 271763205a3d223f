"""The sandbox's signature verification against the reference's test vectors (section 2.5).

The expected signatures were computed by KuCoin's official SDK and ccxt; the sandbox must accept
exactly those headers and refuse near misses with KuCoin's codes.
"""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from rules_engine.sandbox.auth import verify_request
from rules_engine.sandbox.config import KeyConfig
from rules_engine.sandbox.errors import ApiError

SECRET_1 = "f03a5284-5c39-4aaa-9b20-dea10bdcf8e3"
PASS_1 = "QWIxMjM0NTY3OCkoKiZeJSQjQA=="
SECRET_2 = "2d9c6a6e-7d71-4c0b-a3a5-1d4f1b8e9c10"
PASS_2 = "my-pass-phrase"
BODY_1 = (
    '{"clientOid":"5c52e11203aa677f33e493fb","side":"buy","symbol":"BTC-USDT","type":"limit",'
    '"price":"30000","size":"0.001","timeInForce":"GTC","postOnly":false,"hidden":false,'
    '"iceberg":false,"cancelAfter":-1}'
)


def _key(secret: str, passphrase: str, **kw: object) -> KeyConfig:
    return KeyConfig(api_key="k", api_secret=SecretStr(secret),
                     api_passphrase=SecretStr(passphrase), **kw)  # type: ignore[arg-type]


def _headers(stamp: int, sign: str, passphrase: str, version: str) -> dict[str, str]:
    return {"KC-API-KEY": "k", "KC-API-TIMESTAMP": str(stamp), "KC-API-SIGN": sign,
            "KC-API-PASSPHRASE": passphrase, "KC-API-KEY-VERSION": version}


@pytest.mark.parametrize("version", ["2", "3"])
def test_vector_1_post_with_body(version: str) -> None:
    headers = _headers(1700000000000, "tY1BhDNfszi0M6/2X2863V5V0hgAWr3DL9ewgalmYQE=",
                       "HFkKIy8cKfQF3Ognmbamq9Bd8VfYy3eUQj7uC8NvMes=", version)
    key = _key(SECRET_1, PASS_1)
    got = verify_request(headers, "POST", "/api/v1/hf/orders", BODY_1.encode(), 1700000000000,
                         [key], "127.0.0.1")
    assert got is key
    # One byte more in the body than was signed: 400005.
    bad = verify_request(headers, "POST", "/api/v1/hf/orders", BODY_1.encode() + b" ",
                         1700000000000, [key], "127.0.0.1")
    assert isinstance(bad, ApiError) and bad.code == "400005"


def test_vector_2_get_with_query() -> None:
    headers = _headers(1735689600123, "WZuoOg8Ibo6wm1Ez7MzL8eNGdkrVmtPB8tnmkBG92io=",
                       "O3kGDJFVBxgpdg0iR6jI2cgMd84KBuMSUp9NpNFjeRg=", "2")
    key = _key(SECRET_2, PASS_2)
    got = verify_request(headers, "GET",
                         "/api/v1/hf/orders/active/page?symbol=ETH-USDT&pageNum=1&pageSize=20",
                         b"", 1735689600123 + 4000, [key], "127.0.0.1")
    assert got is key


def test_post_without_body_and_the_decoded_query_rule() -> None:
    key = _key(SECRET_2, PASS_2)
    passphrase = "O3kGDJFVBxgpdg0iR6jI2cgMd84KBuMSUp9NpNFjeRg="
    empty = _headers(1735689600123, "TSJezm2LqykMexh8M+G00OC6+trZpviOIOQQ7wkiaFE=", passphrase,
                     "2")
    assert verify_request(empty, "POST", "/api/v1/bullet-private", b"", 1735689600123, [key],
                          "127.0.0.1") is key
    wire = "/api/v1/sub/api-key?apiKey=67%2Ab3&subName=test&passphrase=abc%21%40%2311"
    decoded = _headers(1735689600123, "QF0EA9Fm6Y0NpxMlvCscphumRzEajMEBKoI2396dTec=",
                       passphrase, "2")
    assert verify_request(decoded, "GET", wire, b"", 1735689600123, [key], "127.0.0.1") is key
    encoded = _headers(1735689600123, "bcvNuv0cjg2RN0EolOAjTk+okmCH0ER7somYgEb73cA=",
                       passphrase, "2")
    refused = verify_request(encoded, "GET", wire, b"", 1735689600123, [key], "127.0.0.1")
    assert isinstance(refused, ApiError) and refused.code == "400005"


def test_failures_in_kucoin_order() -> None:
    key = _key(SECRET_1, PASS_1, ip_whitelist=("10.0.0.1",))
    good = _headers(1700000000000, "tY1BhDNfszi0M6/2X2863V5V0hgAWr3DL9ewgalmYQE=",
                    "HFkKIy8cKfQF3Ognmbamq9Bd8VfYy3eUQj7uC8NvMes=", "2")

    def code(headers: dict[str, str], now: int = 1700000000000, ip: str = "10.0.0.1") -> str:
        result = verify_request(headers, "POST", "/api/v1/hf/orders", BODY_1.encode(), now,
                                [key], ip)
        return "ok" if result is key else result.code  # type: ignore[union-attr]

    assert code(good) == "ok"
    assert code({k: v for k, v in good.items() if k != "KC-API-SIGN"}) == "400001"
    assert code(good | {"KC-API-TIMESTAMP": "soon"}) == "400001"
    assert code(good, now=1700000005001) == "400002"
    assert code(good, now=1699999994999) == "400002"
    assert code(good | {"KC-API-KEY": "other"}) == "400003"
    assert code(good | {"KC-API-PASSPHRASE": PASS_1}) == "400004"  # plain text with v2
    assert code(good | {"KC-API-PASSPHRASE": PASS_1, "KC-API-KEY-VERSION": "1"}) == "ok"
    assert code(good, ip="10.0.0.2") == "400006"
