"""Logging setup: one line per record on stderr. Nothing logs message text, passwords or
tokens: the access log writes the route template, never the path's values or the query, and
``HideSecrets`` guards what the server libraries log (at debug level the WebSocket library
dumps request headers and frames: bearer tokens, cookies and message text)."""

from __future__ import annotations

import copy
import logging
from typing import Any

from uvicorn.config import LOGGING_CONFIG

from directo.core import http

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def _without_query(value: object) -> object:
    if isinstance(value, str) and value.startswith("/") and "?" in value:
        return value.split("?", 1)[0]
    return value


class HideSecrets(logging.Filter):
    """Drop header and frame dumps (lines starting ``<`` or ``>``, as the WebSocket library
    writes them) and strip query strings (``?token=...``) from logged paths."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(("< ", "> ")):
            return False
        if isinstance(record.args, tuple):
            record.args = tuple(_without_query(arg) for arg in record.args)
        return True


def configure(level: str = "info") -> None:
    """Once per process; again does nothing more (``directo serve`` and its app factory
    both call it)."""
    logging.basicConfig(level=level.upper(), format=_FORMAT)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, HideSecrets) for f in handler.filters):
            handler.addFilter(HideSecrets())
    logging.getLogger("uvicorn.access").disabled = True
    http.access_lines.enabled = logging.getLogger("directo.access").isEnabledFor(logging.INFO)


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration with ``HideSecrets`` on each of its handlers (each
    worker process applies it again)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"hide_secrets": {"()": f"{__name__}.HideSecrets"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["hide_secrets"]
    return config
