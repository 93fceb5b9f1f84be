"""Personal API keys: metadata and the SHA-256 of each secret (never the secret).

Revision ID: auth_0003_api_keys
Revises: auth_0002_audit_events
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pynode.core.db import UTCDateTime

revision = "auth_0003_api_keys"
down_revision = "auth_0002_audit_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_api_keys_user_id_users"), ondelete="CASCADE"),
        sa.CheckConstraint("scope IN ('full', 'ai', 'read_only')", name=op.f("ck_api_keys_scope_known")),
    )
    op.create_index("ix_api_keys_user_id_created_at_id", "api_keys", ["user_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_api_keys_user_id_created_at_id", table_name="api_keys")
    op.drop_table("api_keys")
