"""HTTP route for presence."""

from __future__ import annotations

from fastapi import APIRouter

from directo.accounts.api import AppDep, HandleParam, Me
from directo.core.http import errors
from directo.presence import service
from directo.presence.schemas import PresenceOut

router = APIRouter(prefix="/api/v1", tags=["presence"])


@router.get("/accounts/{handle}/presence", response_model=PresenceOut,
            responses=errors(401, 404, 503))
async def get_presence(handle: HandleParam, me: Me, app: AppDep) -> PresenceOut:
    """Online while they have an open event stream; visible only to accounts they accepted a
    conversation with."""
    online, last_seen_at = await service.of_handle(app, me.id, handle)
    return PresenceOut(online=online, last_seen_at=last_seen_at)
