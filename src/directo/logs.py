"""Logging setup: one line per record on stderr. Nothing logs message text, passwords or
tokens: the access log writes the route template, never the path's values or the query."""

from __future__ import annotations

import logging


def configure(level: str = "info") -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("uvicorn.access").disabled = True
