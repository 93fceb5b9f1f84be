"""Per-owner storage usage and the reservations of uploads in flight: the quota is kept by the database.

Revision ID: files_0003_storage_usage
Revises: files_0002_upload_sessions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pynode.core.db import UTCDateTime

revision = "files_0003_storage_usage"
down_revision = "files_0002_upload_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "storage_usage",
        sa.Column("owner_id", sa.String(36), nullable=False),
        sa.Column("used_bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", name=op.f("pk_storage_usage")),
    )
    op.create_table(
        "storage_reservations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.String(36), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_storage_reservations")),
    )
    op.create_index("ix_storage_reservations_expires_at", "storage_reservations", ["expires_at"])
    # What is stored and what active sessions hold (received, or declared when larger) becomes the usage.
    op.execute(
        "INSERT INTO storage_reservations (id, owner_id, bytes, expires_at) "
        "SELECT id, owner_id, CASE WHEN size_bytes > received THEN size_bytes ELSE received END, expires_at "
        "FROM upload_sessions WHERE state = 'active'"
    )
    op.execute(
        "INSERT INTO storage_usage (owner_id, used_bytes) SELECT owner_id, SUM(held) FROM ("
        "SELECT owner_id, size AS held FROM files UNION ALL SELECT owner_id, bytes AS held FROM storage_reservations"
        ") AS holdings GROUP BY owner_id"
    )


def downgrade() -> None:
    op.drop_table("storage_reservations")
    op.drop_table("storage_usage")
