"""KuCoin error replies as values: a code, a message and the HTTP status KuCoin answers with.

The codes and statuses follow the reference (section 4): authentication failures are 400/401,
business refusals come back with HTTP 200 and a non-`200000` code, unknown paths are 404/404000
and rate limits 429/429000. Handlers return an `ApiError` (or raise `ApiFailureError` from
deep code); the server turns either into `{"code": ..., "msg": ...}` and never shows a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ApiError",
    "ApiFailureError",
    "access_denied",
    "bad_param",
    "balance_insufficient",
    "client_oid_duplicate",
    "client_timestamp_expired",
    "internal_error",
    "invalid_key",
    "invalid_passphrase",
    "invalid_sign",
    "invalid_timestamp",
    "ip_not_allowed",
    "missing_auth_header",
    "not_found",
    "order_not_cancellable",
    "order_not_found",
    "symbol_not_exists",
    "too_many_requests",
    "unsupported_media_type",
]


@dataclass(frozen=True, slots=True)
class ApiError:
    code: str
    msg: str
    status: int = 200

    def body(self) -> dict[str, str]:
        return {"code": self.code, "msg": self.msg}


class ApiFailureError(Exception):
    """Carries an `ApiError` out of code that cannot return one (request parsing helpers)."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(f"{error.code} {error.msg}")
        self.error = error


def missing_auth_header(name: str) -> ApiError:
    return ApiError("400001", f"Please check the header of your request for {name}", 400)


def invalid_timestamp() -> ApiError:
    return ApiError("400002", "Invalid KC-API-TIMESTAMP", 400)


def invalid_key() -> ApiError:
    return ApiError("400003", "KC-API-KEY not exists", 401)


def invalid_passphrase() -> ApiError:
    return ApiError("400004", "Invalid KC-API-PASSPHRASE", 401)


def invalid_sign() -> ApiError:
    return ApiError("400005", "Invalid KC-API-SIGN", 401)


def ip_not_allowed(ip: str) -> ApiError:
    return ApiError("400006", f"Invalid request ip, the current clientIp is:{ip}", 401)


def access_denied(permission: str) -> ApiError:
    return ApiError("400007", f"Access denied, require more permission: {permission}", 401)


def bad_param(msg: str) -> ApiError:
    return ApiError("400100", msg, 400)


def not_found() -> ApiError:
    return ApiError("404000", "Not Found", 404)


def unsupported_media_type() -> ApiError:
    return ApiError("415000", "Unsupported Media Type", 415)


def too_many_requests() -> ApiError:
    return ApiError("429000", "Too Many Requests", 429)


def internal_error() -> ApiError:
    return ApiError("500000", "Internal Server Error", 500)


def symbol_not_exists() -> ApiError:
    return ApiError("900001", "symbol not exists", 400)


def balance_insufficient() -> ApiError:
    return ApiError("200004", "Balance insufficient!", 200)


def client_oid_duplicate() -> ApiError:
    return ApiError("126044", "clientOid duplicate", 200)


def client_timestamp_expired() -> ApiError:
    return ApiError("126041", "clientTimestamp parameter error", 200)


def order_not_found() -> ApiError:
    return ApiError("126043", "Order does not exist", 200)


def order_not_cancellable() -> ApiError:
    return ApiError("400100", "order_not_exist_or_not_allow_to_cancel", 200)
