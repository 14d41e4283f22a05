"""announcement opt-out per subscriber

``subscriber.announcements``: whether the chat receives admins' ``/announce`` messages
(``/settings announcements off`` clears it). Existing chats keep receiving them. The
downgrade uses batch mode because SQLite can only drop a column by rebuilding the table.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "subscriber",
        sa.Column("announcements", sa.Boolean(), nullable=False, server_default=sa.true()),
    )


def downgrade() -> None:
    with op.batch_alter_table("subscriber") as batch:
        batch.drop_column("announcements")
