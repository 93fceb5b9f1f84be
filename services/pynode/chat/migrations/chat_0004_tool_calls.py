"""Tool calls in chat history: an AI reply's calls, and a tool message's call id.

Revision ID: chat_0004_tool_calls
Revises: chat_0003_invitations
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "chat_0004_tool_calls"
down_revision = "chat_0003_invitations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chat_messages") as batch:
        batch.add_column(sa.Column("tool_calls", sa.Text(), server_default="[]", nullable=False))
        batch.add_column(sa.Column("tool_call_id", sa.String(128), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("chat_messages") as batch:
        batch.drop_column("tool_call_id")
        batch.drop_column("tool_calls")
