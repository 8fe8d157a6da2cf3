"""Opaque cursors for event streams and list pages."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from directo.core.errors import DirectoError


class BadCursor(DirectoError):
    status = 400

    def __init__(self) -> None:
        super().__init__("invalid_cursor", "the cursor is not one this server issued")


def encode(kind: str, value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([kind, value])).decode().rstrip("=")


def decode(kind: str, text: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        found, value = orjson.loads(raw)
    except (ValueError, TypeError) as error:
        raise BadCursor() from error
    if found != kind:
        raise BadCursor()
    return value
