"""One error type for every refusal; the API turns it into ``{"error": {"code", "message"}}``."""

from __future__ import annotations


class DirectoError(Exception):
    status = 400

    def __init__(self, code: str, message: str, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status
        self.headers = headers or {}


class NotFound(DirectoError):
    status = 404

    def __init__(self, what: str = "resource") -> None:
        super().__init__("not_found", f"{what} not found")


class Forbidden(DirectoError):
    status = 403


class Unauthorized(DirectoError):
    status = 401

    def __init__(self, message: str = "a valid bearer token is required") -> None:
        super().__init__("unauthorized", message)


class Conflict(DirectoError):
    status = 409


class Invalid(DirectoError):
    status = 422


class TooMany(DirectoError):
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__("rate_limited", message, headers={"Retry-After": str(max(1, retry_after))})


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}
