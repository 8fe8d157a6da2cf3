"""Request and response models for brand teams."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from directo.accounts.schemas import AccountOut, Strict

Role = Literal["owner", "admin", "agent"]


class MemberPut(Strict):
    role: Role


class MemberOut(BaseModel):
    account: AccountOut
    role: Role


class MemberList(BaseModel):
    items: list[MemberOut]
