"""Resumable upload sessions.

Revision ID: files_0002_upload_sessions
Revises: files_0001_files
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pynode.core.db import UTCDateTime

revision = "files_0002_upload_sessions"
down_revision = "files_0001_files"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.String(36), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("declared_type", sa.String(127), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("file_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload_sessions")),
    )
    op.create_index("ix_upload_sessions_owner_id_state", "upload_sessions", ["owner_id", "state"])
    op.create_index("ix_upload_sessions_state_expires_at", "upload_sessions", ["state", "expires_at"])


def downgrade() -> None:
    op.drop_table("upload_sessions")
