"""Members' display names, kept from their accounts when they join (what the other members see).

Revision ID: chat_0002_member_names
Revises: chat_0001_conversations
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "chat_0002_member_names"
down_revision = "chat_0001_conversations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chat_members") as batch:
        batch.add_column(sa.Column("display_name", sa.String(100), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("chat_members") as batch:
        batch.drop_column("display_name")
