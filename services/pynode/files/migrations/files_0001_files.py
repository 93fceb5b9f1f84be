"""Stored files' metadata.

Revision ID: files_0001_files
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pynode.core.db import UTCDateTime

revision = "files_0001_files"
down_revision = None
branch_labels = ("files",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.String(36), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(127), nullable=False),
        sa.Column("declared_type", sa.String(127), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("inline", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("has_thumbnail", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_files")),
    )
    op.create_index("ix_files_owner_id_created_at_id", "files", ["owner_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_table("files")
