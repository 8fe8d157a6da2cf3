"""Opaque, roughly time-ordered identifiers: a type prefix, a millisecond clock, randomness."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _base32(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rest = divmod(number, 32)
        chars.append(_ALPHABET[rest])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """``prefix_`` + 9 chars of milliseconds + 12 random chars (60 bits)."""
    return f"{prefix}_{_base32(time.time_ns() // 1_000_000, 9)}{_base32(secrets.randbits(60), 12)}"


def new_token() -> str:
    return secrets.token_urlsafe(32)
