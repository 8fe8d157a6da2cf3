"""Request and response models for accounts and sessions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["person", "creator", "brand"]
DmPolicy = Literal["everyone", "following", "nobody"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountCreate(Strict):
    handle: str = Field(max_length=64, examples=["ana.costa"])
    password: str = Field(max_length=1024)
    display_name: str = Field(max_length=256, examples=["Ana Costa"])
    kind: Kind = "person"


class SessionCreate(Strict):
    handle: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class AccountErase(Strict):
    password: str = Field(max_length=1024, description="the account's password, once more")


class MeUpdate(Strict):
    display_name: str | None = Field(default=None, max_length=256)
    dm_policy: DmPolicy | None = None


class AccountOut(BaseModel):
    id: str
    handle: str
    display_name: str
    kind: Kind


class BrandRole(BaseModel):
    brand: AccountOut
    role: Literal["owner", "admin", "agent"]


class MeOut(AccountOut):
    dm_policy: DmPolicy
    created_at: str
    brands: list[BrandRole] = Field(description="brands whose team this account belongs to")


class SessionOut(BaseModel):
    token: str
    account: MeOut


class AccountList(BaseModel):
    items: list[AccountOut]
