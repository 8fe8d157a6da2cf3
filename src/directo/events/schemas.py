"""Response models for the event stream."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class EventOut(BaseModel):
    cursor: str | None = Field(description="resume after this event; null for live-only events "
                                           "such as typing")
    type: str = Field(examples=["message.created"])
    at: str
    data: dict[str, Any]


class EventPage(BaseModel):
    events: list[EventOut]
    cursor: str = Field(description="pass as `after` to continue")
