"""The browser app: server-rendered pages, a small script for the live parts."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"


def install(api: FastAPI) -> None:
    """Serve the pages under ``/`` and their assets under ``/static`` (the security headers
    are sent by ``web.security.SecurityHeaders``, in front of every route: see ``app.py``)."""
    from directo.web.pages import router

    api.include_router(router)
    api.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
