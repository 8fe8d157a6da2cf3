"""HTTP routes for accounts, sessions, follows and blocks; and the authentication dependency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Row
from starlette.datastructures import Headers

from directo.accounts import cookies, service
from directo.accounts.schemas import (
    AccountCreate,
    AccountErase,
    AccountList,
    AccountOut,
    BrandRole,
    MeOut,
    MeUpdate,
    SessionCreate,
    SessionOut,
)
from directo.app import App
from directo.core.http import errors

router = APIRouter(prefix="/api/v1", tags=["accounts"])
_bearer = HTTPBearer(auto_error=False, description="a token from POST /api/v1/sessions")

HandleParam = Annotated[str, Path(max_length=64)]


def get_app(request: Request) -> App:
    app: App = request.app.state.directo
    return app


async def _app_dependency(request: Request) -> App:
    """``get_app`` as a coroutine: FastAPI runs a plain-function dependency in its thread
    pool, a thread hop on every request."""
    return get_app(request)


AppDep = Annotated[App, Depends(_app_dependency)]


def _client_host(request: Request) -> str:
    """The caller's address, the key for rate limits on password checks."""
    return request.client.host if request.client else "unknown"


@dataclass(frozen=True, slots=True)
class Principal:
    account: Row
    token_hash: str

    @property
    def id(self) -> str:
        return str(self.account.id)


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is not None:
        token: str | None = credentials.credentials
    else:  # the web app's cookie session: unsafe methods also need its CSRF token
        token = request.cookies.get(cookies.SESSION_COOKIE)
        if token:
            cookies.check_session_csrf(request.method, token,
                                       request.headers.get(cookies.CSRF_HEADER))
    account, token_hash = await service.authenticate(get_app(request), token)
    return Principal(account, token_hash)


Me = Annotated[Principal, Depends(authenticated)]


def bearer_token(headers: Headers) -> str | None:
    """The token of an ``Authorization: Bearer`` header, read as ``HTTPBearer`` reads it (for
    hot routes, which answer only requests that carry one)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def account_out(row: Row) -> AccountOut:
    return AccountOut(id=row.id, handle=row.handle, display_name=row.display_name, kind=row.kind)


async def me_out(app: App, row: Row) -> MeOut:
    from directo.brands.service import brands_of

    brands = [BrandRole.model_validate({"brand": account_out(brand), "role": role})
              for brand, role in await brands_of(app, row.id)]
    return MeOut(id=row.id, handle=row.handle, display_name=row.display_name, kind=row.kind,
                 dm_policy=row.dm_policy, created_at=row.created_at, brands=brands)


@router.post("/accounts", status_code=201, response_model=AccountOut,
             responses=errors(400, 409, 413, 422))
async def create_account(body: AccountCreate, app: AppDep) -> AccountOut:
    row = await service.create_account(app, body.handle, body.password, body.display_name,
                                       body.kind)
    return account_out(row)


@router.post("/sessions", status_code=201, response_model=SessionOut,
             responses=errors(400, 401, 413, 422, 429), tags=["sessions"])
async def create_session(body: SessionCreate, request: Request, app: AppDep) -> SessionOut:
    token, account = await service.login(app, body.handle, body.password, _client_host(request))
    return SessionOut(token=token, account=await me_out(app, account))


@router.delete("/sessions/current", status_code=204, responses=errors(401), tags=["sessions"])
async def delete_session(me: Me, app: AppDep) -> Response:
    await service.logout(app, me.token_hash)
    return Response(status_code=204)


@router.get("/me", response_model=MeOut, responses=errors(401))
async def get_me(me: Me, app: AppDep) -> MeOut:
    return await me_out(app, me.account)


@router.patch("/me", response_model=MeOut, responses=errors(400, 401, 413, 422))
async def patch_me(body: MeUpdate, me: Me, app: AppDep) -> MeOut:
    row = await service.update_me(app, me.account, body.display_name, body.dm_policy)
    return await me_out(app, row)


@router.delete("/me", status_code=204, responses=errors(400, 401, 413, 422, 429))
async def erase_me(body: AccountErase, request: Request, me: Me, app: AppDep) -> Response:
    """Erase your account for good (send your password again). The keys of its conversations
    are destroyed, so their texts can never be read again; each peer's conversation
    disappears (404) and their stream gets a `conversation.removed` event."""
    await service.erase_account(app, me.account, body.password, _client_host(request))
    return Response(status_code=204)


@router.get("/accounts/{handle}", response_model=AccountOut, responses=errors(401, 404))
async def get_account(handle: HandleParam, me: Me, app: AppDep) -> AccountOut:
    return account_out(await service.find(app, handle))


Relation = Literal["following", "followers", "blocked"]


@router.get("/me/{relation}", response_model=AccountList, responses=errors(401))
async def list_relation(relation: Relation, me: Me, app: AppDep) -> AccountList:
    rows = await service.list_related(app, me.account, relation)
    return AccountList(items=[account_out(row) for row in rows])


@router.put("/me/following/{handle}", status_code=204, responses=errors(401, 404, 422))
async def follow(handle: HandleParam, me: Me, app: AppDep) -> Response:
    await service.set_following(app, me.account, handle, True)
    return Response(status_code=204)


@router.delete("/me/following/{handle}", status_code=204, responses=errors(401, 404, 422))
async def unfollow(handle: HandleParam, me: Me, app: AppDep) -> Response:
    await service.set_following(app, me.account, handle, False)
    return Response(status_code=204)


@router.put("/me/blocked/{handle}", status_code=204, responses=errors(401, 404, 422))
async def block(handle: HandleParam, me: Me, app: AppDep) -> Response:
    await service.set_blocked(app, me.account, handle, True)
    return Response(status_code=204)


@router.delete("/me/blocked/{handle}", status_code=204, responses=errors(401, 404, 422))
async def unblock(handle: HandleParam, me: Me, app: AppDep) -> Response:
    await service.set_blocked(app, me.account, handle, False)
    return Response(status_code=204)
