"""engagement rollup: each post's newest snapshot, and its newest snapshot per hour

``engagement_paper`` and ``engagement_kind`` number the papers and the (source, metric) pairs
that snapshots mention. ``engagement_post``: one row per series of ``engagement_snapshot``
(paper, kind, URL, "" for none) with its newest snapshot and when its oldest was taken.
``engagement_hour``: per post and hour (hours since the epoch), the hour's newest snapshot
and when its oldest was taken. Times are microseconds since the epoch. The trend score reads
these instead of every snapshot; ``storage.engagement.add_snapshots`` keeps them in step.

The upgrade fills all four from the snapshots already stored. "Newest" breaks ties between
snapshots taken at the same instant by the larger id, i.e. the one written last, as the
incremental upserts do. Downgrading drops the four tables; the snapshots are untouched.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# observed_at as microseconds since the epoch. SQLite keeps "YYYY-MM-DD HH:MM:SS.ffffff" text;
# strftime('%s') of the whole text would round a fractional second, so the two parts are read
# separately (the same expression as storage.epoch.sql_us).
_MICROS = {
    "sqlite": "(CAST(strftime('%s', substr(observed_at, 1, 19)) AS INTEGER) * 1000000"
    " + CAST(substr(substr(observed_at, 21) || '000000', 1, 6) AS INTEGER))",
    "postgresql": "CAST(extract(epoch FROM observed_at) * 1000000 AS BIGINT)",
}

_SNAPSHOTS = """SELECT id, arxiv_id, source, metric, COALESCE(url, '') AS url, value, weight,
           {micros} AS at_us
    FROM engagement_snapshot"""

_FILL_PAPERS = """INSERT INTO engagement_paper (arxiv_id)
SELECT DISTINCT arxiv_id FROM engagement_snapshot"""

_FILL_KINDS = """INSERT INTO engagement_kind (source, metric)
SELECT DISTINCT source, metric FROM engagement_snapshot"""

# Each snapshot with its post's paper and kind numbers.
_NUMBERED = """SELECT snapshot.id, paper.id AS paper_id, kind.id AS kind_id, snapshot.url,
           snapshot.value, snapshot.weight, snapshot.at_us
    FROM ({snapshots}) AS snapshot
    JOIN engagement_paper AS paper ON paper.arxiv_id = snapshot.arxiv_id
    JOIN engagement_kind AS kind ON kind.source = snapshot.source
                                AND kind.metric = snapshot.metric"""

_FILL_POSTS = """INSERT INTO engagement_post
    (paper_id, kind_id, url, first_at_us, latest_at_us, latest_value, latest_weight)
SELECT paper_id, kind_id, url, first_at_us, at_us, value, weight
FROM (
    SELECT paper_id, kind_id, url, value, weight, at_us,
           MIN(at_us) OVER series AS first_at_us,
           ROW_NUMBER() OVER (series ORDER BY at_us DESC, id DESC) AS newest
    FROM ({numbered}) AS numbered
    WINDOW series AS (PARTITION BY paper_id, kind_id, url)
) AS ranked
WHERE newest = 1"""

_FILL_HOURS = """INSERT INTO engagement_hour
    (hour, post_id, value, weight, observed_at_us, first_at_us)
SELECT ranked.hour, post.id, ranked.value, ranked.weight, ranked.at_us, ranked.first_at_us
FROM (
    SELECT paper_id, kind_id, url, value, weight, at_us, hour,
           MIN(at_us) OVER bucket AS first_at_us,
           ROW_NUMBER() OVER (bucket ORDER BY at_us DESC, id DESC) AS newest
    FROM (SELECT numbered.*, at_us / 3600000000 AS hour FROM ({numbered}) AS numbered) AS timed
    WINDOW bucket AS (PARTITION BY paper_id, kind_id, url, hour)
) AS ranked
JOIN engagement_post AS post
  ON post.paper_id = ranked.paper_id AND post.kind_id = ranked.kind_id AND post.url = ranked.url
WHERE ranked.newest = 1"""


def upgrade() -> None:
    op.create_table(
        "engagement_kind",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "metric", name="uq_engagement_kind"),
    )
    op.create_table(
        "engagement_paper",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("arxiv_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("arxiv_id"),
    )
    op.create_table(
        "engagement_post",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("paper_id", sa.Integer(), nullable=False),
        sa.Column("kind_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(), nullable=False),
        sa.Column("first_at_us", sa.BigInteger(), nullable=False),
        sa.Column("latest_at_us", sa.BigInteger(), nullable=False),
        sa.Column("latest_value", sa.Float(), nullable=False),
        sa.Column("latest_weight", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["kind_id"], ["engagement_kind.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["paper_id"], ["engagement_paper.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("paper_id", "kind_id", "url", name="uq_engagement_post"),
    )
    op.create_index("ix_engagement_post_latest", "engagement_post", ["latest_at_us", "paper_id"])
    op.create_table(
        "engagement_hour",
        sa.Column("hour", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("observed_at_us", sa.BigInteger(), nullable=False),
        sa.Column("first_at_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["post_id"], ["engagement_post.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("hour", "post_id"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_engagement_hour_post", "engagement_hour", ["post_id", "hour"])
    snapshots = _SNAPSHOTS.format(micros=_MICROS[op.get_bind().dialect.name])
    numbered = _NUMBERED.format(snapshots=snapshots)
    op.execute(_FILL_PAPERS)
    op.execute(_FILL_KINDS)
    op.execute(_FILL_POSTS.format(numbered=numbered))
    op.execute(_FILL_HOURS.format(numbered=numbered))


def downgrade() -> None:
    op.drop_index("ix_engagement_hour_post", table_name="engagement_hour")
    op.drop_table("engagement_hour")
    op.drop_index("ix_engagement_post_latest", table_name="engagement_post")
    op.drop_table("engagement_post")
    op.drop_table("engagement_paper")
    op.drop_table("engagement_kind")
