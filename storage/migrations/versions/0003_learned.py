"""learned per-subscriber relevance models

One row per subscriber with a trained logistic-regression model: sparse weights over the
hashed feature space, packed as base64 text so the row is portable across SQLite and
PostgreSQL. Plain CREATE TABLE, so the FTS triggers of 0002 are untouched.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "learned_model",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("space", sa.String(length=32), nullable=False),
        sa.Column("intercept", sa.Float(), nullable=False),
        sa.Column("indices", sa.String(), nullable=False),
        sa.Column("weights", sa.String(), nullable=False),
        sa.Column("positives", sa.Integer(), nullable=False),
        sa.Column("negatives", sa.Integer(), nullable=False),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("subscriber_id"),
    )


def downgrade() -> None:
    op.drop_table("learned_model")
