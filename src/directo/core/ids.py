"""Opaque, roughly time-ordered identifiers: a type prefix, a millisecond clock, randomness."""

from __future__ import annotations

import base64
import secrets
import time

# base32hex's digits spelled in Crockford's lower-case alphabet (no i, l, o, u)
_SPELLING = bytes.maketrans(b"0123456789ABCDEFGHIJKLMNOPQRSTUV",
                            b"0123456789abcdefghjkmnpqrstvwxyz")


def new_id(prefix: str) -> str:
    """``prefix_`` + 9 chars of milliseconds + 12 random chars (60 bits).

    The 105 bits are encoded as base32hex, whose digits sort like the numbers they encode,
    so ids sort by their millisecond; 15 bytes make 24 digits, and the first 3 are the
    15 unused leading bits."""
    number = (time.time_ns() // 1_000_000 % (1 << 45)) << 60 | secrets.randbits(60)
    digits = base64.b32hexencode(number.to_bytes(15, "big"))[3:]
    return f"{prefix}_{digits.translate(_SPELLING).decode()}"


def new_token() -> str:
    return secrets.token_urlsafe(32)
