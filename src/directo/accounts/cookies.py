"""The session cookie of the web app (the API accepts it too, from the app's own pages) and
its CSRF protection.

The session cookie holds the same token as ``Authorization: Bearer``. A request that uses the
cookie for an unsafe method must also carry ``X-CSRF-Token`` (or a ``csrf_token`` form field),
an HMAC of the session token: any process can check it, and no other site can compute it.
Forms shown before there is a session use a double-submit cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

from starlette.responses import Response

from directo.config import Settings
from directo.core.errors import Forbidden

SESSION_COOKIE = "directo_session"
LOGIN_CSRF_COOKIE = "directo_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfRefused(Forbidden):
    def __init__(self) -> None:
        super().__init__("csrf_failed", "this request needs a valid CSRF token; reload the page")


def csrf_for(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"directo-csrf-v1", hashlib.sha256).hexdigest()


def check_csrf(expected: str | None, given: str | None) -> None:
    if not expected or not given or not hmac.compare_digest(expected, given):
        raise CsrfRefused()


def check_session_csrf(method: str, session_token: str, given: str | None) -> None:
    """Unsafe methods on a cookie session need the session's CSRF token."""
    if method.upper() not in SAFE_METHODS:
        check_csrf(csrf_for(session_token), given)


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def same_origin(headers: Mapping[str, str]) -> bool:
    """A WebSocket may use the cookie only when opened by our own pages."""
    origin, host = headers.get("origin"), headers.get("host")
    return bool(origin and host) and urlsplit(origin).netloc == host


def _set(response: Response, settings: Settings, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
                        secure=settings.cookie_secure)


def set_session(response: Response, settings: Settings, token: str) -> None:
    _set(response, settings, SESSION_COOKIE, token, settings.session_days * 24 * 60 * 60)


def set_login_csrf(response: Response, settings: Settings, value: str) -> None:
    _set(response, settings, LOGIN_CSRF_COOKIE, value, 60 * 60 * 12)


def clear_session(response: Response, settings: Settings) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=settings.cookie_secure)
