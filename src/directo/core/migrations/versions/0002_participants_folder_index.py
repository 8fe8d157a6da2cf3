"""participants: the folder index ends with conversation_id, for keyset pages

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 19:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OLD = ["account_id", "state", "archived", "pinned", "sort_at"]
NEW = [*OLD, "conversation_id"]


def upgrade() -> None:
    with op.batch_alter_table("participants") as batch:
        batch.drop_index("ix_participants_list")
        batch.create_index("ix_participants_folder", NEW)


def downgrade() -> None:
    with op.batch_alter_table("participants") as batch:
        batch.drop_index("ix_participants_folder")
        batch.create_index("ix_participants_list", OLD)
