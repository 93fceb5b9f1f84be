"""Pending invitations: an invited account becomes a member only when it accepts.

Revision ID: chat_0003_invitations
Revises: chat_0002_member_names
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pynode.core.db import UTCDateTime

revision = "chat_0003_invitations"
down_revision = "chat_0002_member_names"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chat_invitations",
        sa.Column("conversation_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("inviter_id", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["chat_conversations.id"],
            name=op.f("fk_chat_invitations_conversation_id_chat_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("conversation_id", "user_id", name=op.f("pk_chat_invitations")),
    )
    op.create_index("ix_chat_invitations_user_id_created_at", "chat_invitations", ["user_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_chat_invitations_user_id_created_at", table_name="chat_invitations")
    op.drop_table("chat_invitations")
