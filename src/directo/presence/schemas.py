"""Presence as clients see it."""

from __future__ import annotations

from pydantic import BaseModel, Field


class PresenceOut(BaseModel):
    online: bool = Field(description="has an open event stream right now")
    last_seen_at: str | None = Field(
        description="when last connected (now while online); null if not seen recently")
