"""HTTP routes for brand teams."""

from __future__ import annotations

from fastapi import APIRouter, Response

from directo.accounts.api import AppDep, HandleParam, Me, account_out
from directo.brands import service
from directo.brands.schemas import MemberList, MemberOut, MemberPut
from directo.core.http import errors

router = APIRouter(prefix="/api/v1/brands", tags=["brands"])


@router.get("/{handle}/members", response_model=MemberList, responses=errors(401, 404))
async def list_members(handle: HandleParam, me: Me, app: AppDep) -> MemberList:
    rows = await service.list_members(app, me.id, handle)
    return MemberList(items=[MemberOut.model_validate({"account": account_out(row), "role": role})
                             for row, role in rows])


@router.put("/{handle}/members/{member_handle}", status_code=204,
            responses=errors(400, 401, 403, 404, 413, 422))
async def put_member(handle: HandleParam, member_handle: HandleParam, body: MemberPut, me: Me,
                     app: AppDep) -> Response:
    await service.put_member(app, me.id, handle, member_handle, body.role)
    return Response(status_code=204)


@router.delete("/{handle}/members/{member_handle}", status_code=204,
               responses=errors(401, 403, 404))
async def delete_member(handle: HandleParam, member_handle: HandleParam, me: Me,
                        app: AppDep) -> Response:
    await service.put_member(app, me.id, handle, member_handle, None)
    return Response(status_code=204)
