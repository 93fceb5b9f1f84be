"""The usage ledger records which personal API key a generation was made with ('' for a signed-in session).

Revision ID: ai_0002_api_key_usage
Revises: ai_0001_generations
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ai_0002_api_key_usage"
down_revision = "ai_0001_generations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ai_generations") as batch:
        batch.add_column(sa.Column("api_key_id", sa.String(36), nullable=False, server_default=""))
    op.create_index("ix_ai_generations_api_key_id_created_at", "ai_generations", ["api_key_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_ai_generations_api_key_id_created_at", table_name="ai_generations")
    with op.batch_alter_table("ai_generations") as batch:
        batch.drop_column("api_key_id")
