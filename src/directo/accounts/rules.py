"""Pure decisions about accounts: what a valid handle, password and display name are."""

from __future__ import annotations

import re
import unicodedata

from directo.core.errors import Invalid

HANDLE = re.compile(r"[a-z0-9_.]{3,30}")
KINDS = ("person", "creator", "brand")
DM_POLICIES = ("everyone", "following", "nobody")
PASSWORD_MIN, PASSWORD_MAX = 10, 1024
DISPLAY_NAME_MAX = 64


def normalise_handle(handle: str) -> str:
    """Handles are unique case-insensitively: ``Ana.Costa`` is stored as ``ana.costa``."""
    lowered = handle.strip().lower()
    if not HANDLE.fullmatch(lowered):
        raise Invalid("invalid_handle",
                      "a handle is 3-30 characters of a-z, 0-9, underscore and dot")
    return lowered


def check_password(password: str) -> None:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise Invalid("weak_password",
                      f"a password is {PASSWORD_MIN} to {PASSWORD_MAX} characters long")


def clean_line(text: str) -> str:
    """NFC, control characters dropped, whitespace folded: for names and short labels."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cc" or ch == " ")
    return " ".join(text.split())


def normalise_display_name(name: str) -> str:
    cleaned = clean_line(name)
    if not 1 <= len(cleaned) <= DISPLAY_NAME_MAX:
        raise Invalid("invalid_display_name",
                      f"a display name is 1-{DISPLAY_NAME_MAX} characters")
    return cleaned
