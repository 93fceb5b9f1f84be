"""The fifth service's one table.

Revision ID: fifth_0001_notes
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "fifth_0001_notes"
down_revision = None
branch_labels = ("fifth",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fifth_notes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("text", sa.String(200), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fifth_notes")),
    )


def downgrade() -> None:
    op.drop_table("fifth_notes")
