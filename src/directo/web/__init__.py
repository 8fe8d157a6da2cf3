"""The browser app: server-rendered pages, a small script for the live parts."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"


def install(api: FastAPI) -> None:
    """Serve the pages under ``/`` and their assets under ``/static``, with security headers."""
    from directo.web.pages import router
    from directo.web.security import SecurityHeaders

    api.include_router(router)
    api.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    api.add_middleware(SecurityHeaders)
