"""sessions: an index on created_at, for pruning sessions past their lifetime

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 03:45:00
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sessions_created", "sessions", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_sessions_created", "sessions")
