"""Pure decisions about brand teams."""

from __future__ import annotations

from directo.core.errors import Forbidden, Invalid

ROLES = ("owner", "admin", "agent")


def check_may_manage(actor_role: str, target_old_role: str | None, target_new_role: str | None,
                     ) -> None:
    """The brand account and owners manage anyone; admins manage admins and agents."""
    if actor_role == "owner":
        return
    if actor_role == "admin" and "owner" not in (target_old_role, target_new_role):
        return
    raise Forbidden("insufficient_role", "your role in this brand does not allow that")


def check_member_kind(kind: str) -> None:
    if kind == "brand":
        raise Invalid("invalid_member", "a brand cannot be a member of another brand")
