"""The web app's pages: log in, sign up, log out, settings, and the messaging screens.

Pages render the frame and the forms on the server; ``static/app.js`` fills the conversation
list and the thread from the JSON API and keeps them live over the event stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import Row

from directo.accounts import cookies
from directo.accounts import service as accounts
from directo.accounts.api import get_app
from directo.app import App
from directo.brands.service import brands_of
from directo.conversations import service as conversations
from directo.core.errors import DirectoError
from directo.web import i18n

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
FOLDERS = ("inbox", "requests", "archived")
MAX_FORM_FIELDS = 10


class Visitor:
    """Who is looking at a page: their language and, once logged in, their account."""

    def __init__(self, request: Request, account: Row | None = None,
                 session_token: str | None = None, token_hash: str | None = None) -> None:
        self.request = request
        self.app: App = get_app(request)
        self.language = i18n.language_of(request)
        self.account = account
        self.session_token = session_token
        self.token_hash = token_hash
        self.new_login_csrf: str | None = None

    @property
    def csrf(self) -> str:
        """The token the page's forms and script send back."""
        if self.session_token is not None:
            return cookies.csrf_for(self.session_token)
        existing = self.request.cookies.get(cookies.LOGIN_CSRF_COOKIE)
        if existing:
            return existing
        if self.new_login_csrf is None:
            self.new_login_csrf = cookies.new_login_csrf()
        return self.new_login_csrf

    def t(self, key: str, **values: object) -> str:
        return i18n.translate(self.language, key, **values)

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        context.update(t=self.t, lang=self.language, languages=i18n.LANGUAGES,
                       csrf=self.csrf, me=self.account)
        response = templates.TemplateResponse(self.request, template, context,
                                              status_code=status)
        response.headers["Cache-Control"] = "no-store"
        if self.new_login_csrf is not None:
            cookies.set_login_csrf(response, self.app.settings, self.new_login_csrf)
        return response


async def _visitor(request: Request) -> Visitor:
    token = request.cookies.get(cookies.SESSION_COOKIE)
    if token:
        try:
            account, token_hash = await accounts.authenticate(get_app(request), token)
        except DirectoError:
            return Visitor(request)
        return Visitor(request, account, token, token_hash)
    return Visitor(request)


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the body size is already capped by ``BodyLimit``)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    try:
        return dict(parse_qsl(body, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS))
    except ValueError as error:
        raise DirectoError("invalid_form", "this form has too many fields") from error


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _error_key(error: DirectoError) -> str:
    key = f"error.{error.code}"
    return key if key in i18n.EN else "error.generic"


async def _checked_form(visitor: Visitor) -> dict[str, str]:
    form = await _form(visitor.request)
    cookies.check_csrf(visitor.csrf, form.get(cookies.CSRF_FIELD))
    return form


def _logged_in(visitor: Visitor, token: str) -> Response:
    response = _redirect("/")
    cookies.set_session(response, visitor.app.settings, token)
    response.delete_cookie(cookies.LOGIN_CSRF_COOKIE, path="/")
    return response


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# -- logging in and out ---------------------------------------------------------------------

@router.get("/login")
async def login_page(request: Request) -> Response:
    visitor = await _visitor(request)
    if visitor.account is not None:
        return _redirect("/")
    return visitor.render("login.html", form={})


@router.post("/login")
async def login(request: Request) -> Response:
    visitor = await _visitor(request)
    form = await _form(request)
    try:
        cookies.check_csrf(visitor.csrf, form.get(cookies.CSRF_FIELD))
        token, _ = await accounts.login(visitor.app, form.get("handle", ""),
                                        form.get("password", ""), _client(request))
    except DirectoError as error:
        return visitor.render("login.html", status=error.status,
                              form={"handle": form.get("handle", "")},
                              error=visitor.t(_error_key(error)))
    return _logged_in(visitor, token)


@router.get("/signup")
async def signup_page(request: Request) -> Response:
    visitor = await _visitor(request)
    if visitor.account is not None:
        return _redirect("/")
    return visitor.render("signup.html", form={}, errors={})


# a refused form is shown again with the message next to the field it is about
SIGNUP_FIELD_OF_ERROR = {"invalid_handle": "handle", "handle_taken": "handle",
                         "weak_password": "password", "invalid_display_name": "display_name"}


@router.post("/signup")
async def signup(request: Request) -> Response:
    visitor = await _visitor(request)
    form = await _form(request)
    handle, password = form.get("handle", ""), form.get("password", "")
    try:
        cookies.check_csrf(visitor.csrf, form.get(cookies.CSRF_FIELD))
        await accounts.create_account(visitor.app, handle, password,
                                      form.get("display_name", ""), "person")
        token, _ = await accounts.login(visitor.app, handle, password, _client(request))
    except DirectoError as error:
        field = SIGNUP_FIELD_OF_ERROR.get(error.code, "form")
        return visitor.render("signup.html", status=error.status, form=form,
                              errors={field: visitor.t(_error_key(error))})
    return _logged_in(visitor, token)


@router.post("/logout")
async def logout(request: Request) -> Response:
    visitor = await _visitor(request)
    if visitor.token_hash is not None:
        await _checked_form(visitor)
        await accounts.logout(visitor.app, visitor.token_hash)
    response = _redirect("/login")
    cookies.clear_session(response, visitor.app.settings)
    return response


# -- settings -------------------------------------------------------------------------------

@router.get("/settings")
async def settings_page(request: Request) -> Response:
    visitor = await _visitor(request)
    if visitor.account is None:
        return _redirect("/login")
    return visitor.render("settings.html", form=_settings_form(visitor.account, visitor),
                          errors={})


def _settings_form(account: Row, visitor: Visitor) -> dict[str, str]:
    return {"display_name": account.display_name, "dm_policy": account.dm_policy,
            "language": visitor.language}


@router.post("/settings")
async def save_settings(request: Request) -> Response:
    visitor = await _visitor(request)
    if visitor.account is None:
        return _redirect("/login")
    form = await _checked_form(visitor)
    policy = form.get("dm_policy")
    language = form.get("language")
    try:
        if policy not in ("everyone", "following", "nobody"):
            raise DirectoError("invalid_request", "unknown policy", status=422)
        visitor.account = await accounts.update_me(visitor.app, visitor.account,
                                                   form.get("display_name", ""), policy)
    except DirectoError as error:
        return visitor.render("settings.html", status=error.status, form=form,
                              errors={"display_name": visitor.t(_error_key(error))})
    if language in i18n.CATALOGS:
        visitor.language = language
    response = visitor.render("settings.html", form=_settings_form(visitor.account, visitor),
                              errors={}, saved=True)
    response.set_cookie(i18n.LANG_COOKIE, visitor.language, max_age=60 * 60 * 24 * 365,
                        path="/", httponly=True, samesite="lax",
                        secure=visitor.app.settings.cookie_secure)
    return response


# -- messaging ------------------------------------------------------------------------------

async def _sides(visitor: Visitor) -> list[Row]:
    """The inboxes this visitor may read: their own and their brands'."""
    assert visitor.account is not None
    return [visitor.account, *(brand for brand, _ in await brands_of(visitor.app,
                                                                     visitor.account.id))]


def _config(visitor: Visitor, **extra: Any) -> dict[str, Any]:
    """What the script needs: strings, the CSRF token, who I am."""
    account = visitor.account
    assert account is not None
    return {"lang": visitor.language, "strings": i18n.CATALOGS[visitor.language],
            "csrf": visitor.csrf, "edit_window_seconds": visitor.app.settings.edit_window_seconds,
            "me": {"id": account.id, "handle": account.handle,
                   "display_name": account.display_name}, **extra}


@router.get("/")
async def home(request: Request, folder: str = "inbox",
               as_: Annotated[str | None, Query(alias="as")] = None) -> Response:
    visitor = await _visitor(request)
    if visitor.account is None:
        return _redirect("/login")
    sides = await _sides(visitor)
    side = next((s for s in sides if s.handle == (as_ or visitor.account.handle)), None)
    if side is None or folder not in FOLDERS:
        return visitor.render("missing.html", status=404)
    as_handle = None if side.id == visitor.account.id else side.handle
    return visitor.render("app.html", sides=sides, side=side, folder=folder, folders=FOLDERS,
                          conversation=None,
                          config=_config(visitor, folder=folder, **{"as": as_handle}))


@router.get("/c/{conversation_id}")
async def conversation_page(request: Request, conversation_id: str) -> Response:
    visitor = await _visitor(request)
    if visitor.account is None:
        return _redirect("/login")
    try:
        view = await conversations.get(visitor.app, visitor.account.id, conversation_id)
    except DirectoError:
        return visitor.render("missing.html", status=404)
    sides = await _sides(visitor)
    side = next(s for s in sides if s.id == view["as"]["id"])
    as_handle = None if side.id == visitor.account.id else side.handle
    folder = view["folder"] or "inbox"
    return visitor.render("app.html", sides=sides, side=side, folder=folder, folders=FOLDERS,
                          conversation=view,
                          config=_config(visitor, folder=folder, conversation_id=view["id"],
                                         **{"as": as_handle}))
