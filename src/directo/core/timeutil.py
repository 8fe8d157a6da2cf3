"""UTC, timezone-aware times; stored as ISO 8601 text so SQLite and PostgreSQL agree."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def now_text() -> str:
    return to_text(utcnow())


def from_text(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
