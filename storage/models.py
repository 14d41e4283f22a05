"""SQLModel tables. Alembic migrations in ``storage/migrations`` create exactly this schema."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import cast

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, Table, UniqueConstraint, true
from sqlalchemy import Enum as SAEnum
from sqlmodel import Field, SQLModel

from storage.types import UTCDateTime, utcnow


def _enum(enum_cls: type[StrEnum]) -> SAEnum:
    # Store the readable values ("telegram"), not the member names, as VARCHAR on every backend.
    return SAEnum(
        enum_cls,
        native_enum=False,
        length=16,
        values_callable=lambda members: [member.value for member in members],
    )


def _utc(nullable: bool = True, index: bool = False) -> Column:
    return Column(UTCDateTime(), nullable=nullable, index=index)


class Platform(StrEnum):
    """Where a subscriber lives."""

    TELEGRAM = "telegram"
    SLACK = "slack"
    CONSOLE = "console"


class ChatKind(StrEnum):
    """A person, a group chat or a broadcast channel."""

    USER = "user"
    GROUP = "group"
    CHANNEL = "channel"


class InterestKind(StrEnum):
    """What an interest row describes."""

    KEYWORD = "keyword"
    AUTHOR = "author"
    CATEGORY = "category"
    MUTED = "muted"


class OutboxStatus(StrEnum):
    """Lifecycle of one outgoing message."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class Paper(SQLModel, table=True):
    """One arXiv paper, at its latest known version."""

    arxiv_id: str = Field(primary_key=True, max_length=64)
    version: int = 1
    title: str
    abstract: str
    authors: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    categories: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    primary_category: str = Field(index=True, max_length=32)
    published: datetime = Field(sa_column=_utc(nullable=False, index=True))
    updated: datetime = Field(sa_column=_utc(nullable=False))
    announced: datetime | None = Field(default=None, sa_column=_utc(index=True))
    comment: str | None = None
    journal_ref: str | None = None
    doi: str | None = Field(default=None, max_length=255)
    withdrawn: bool = False
    first_seen_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))
    ingested_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))


class EngagementSnapshot(SQLModel, table=True):
    """One observation of one metric for one paper on one source (a time series, never updated)."""

    __tablename__ = "engagement_snapshot"
    __table_args__ = (
        Index("ix_engagement_paper_time", "arxiv_id", "observed_at"),
        Index("ix_engagement_source_time", "source", "observed_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # No foreign key: a paper can be mentioned before we have ingested it.
    arxiv_id: str = Field(max_length=64)
    source: str = Field(max_length=32)
    metric: str = Field(max_length=32)
    value: float
    observed_at: datetime = Field(sa_column=_utc(nullable=False))
    url: str | None = None
    actor: str | None = Field(default=None, max_length=255)
    weight: float = 1.0


class EngagementPaper(SQLModel, table=True):
    """A paper that snapshots mention, numbered for the rollup (``storage.engagement_rollup``).

    Not a foreign key to ``paper``: a paper can be talked about before it is stored.
    """

    __tablename__ = "engagement_paper"

    id: int | None = Field(default=None, primary_key=True)
    arxiv_id: str = Field(max_length=64, unique=True)


class EngagementKind(SQLModel, table=True):
    """A (source, metric) pair that snapshots use, numbered for the rollup."""

    __tablename__ = "engagement_kind"
    __table_args__ = (UniqueConstraint("source", "metric", name="uq_engagement_kind"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=32)
    metric: str = Field(max_length=32)


class EngagementPost(SQLModel, table=True):
    """One series of snapshots (paper, source and metric, post URL) and its newest snapshot.

    Derived from ``engagement_snapshot`` and kept in step by
    ``storage.engagement.add_snapshots``; with ``engagement_hour`` it lets the trend score read
    one row per post instead of its whole history. Times are microseconds since the epoch.
    """

    __tablename__ = "engagement_post"
    __table_args__ = (
        UniqueConstraint("paper_id", "kind_id", "url", name="uq_engagement_post"),
        Index("ix_engagement_post_latest", "latest_at_us", "paper_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    paper_id: int = Field(foreign_key="engagement_paper.id", ondelete="CASCADE")
    kind_id: int = Field(foreign_key="engagement_kind.id", ondelete="CASCADE")
    url: str = ""
    """The snapshots' URL, "" for snapshots without one."""
    first_at_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    """When the oldest snapshot was taken."""
    latest_at_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    latest_value: float
    latest_weight: float


class EngagementHour(SQLModel, table=True):
    """A post's newest snapshot within one hour (hours since the epoch), for every hour that
    has any, and when the hour's oldest one was taken (see ``storage.engagement_rollup``).

    Keyed by hour first, so reading every post's rows of a few hours is one range; on SQLite
    without a rowid, so that range is the table's own order.
    """

    __tablename__ = "engagement_hour"
    __table_args__ = (
        Index("ix_engagement_hour_post", "post_id", "hour"),
        {"sqlite_with_rowid": False},
    )

    hour: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    post_id: int = Field(primary_key=True, foreign_key="engagement_post.id", ondelete="CASCADE")
    value: float
    weight: float
    observed_at_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    """When the hour's newest snapshot was taken."""
    first_at_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    """When the hour's oldest snapshot was taken."""


class Subscriber(SQLModel, table=True):
    """A chat that receives digests: a person, a group or a channel on one platform."""

    __table_args__ = (UniqueConstraint("platform", "chat_id", name="uq_subscriber_chat"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: Platform = Field(sa_column=Column(_enum(Platform), nullable=False))
    chat_id: str = Field(max_length=128)
    kind: ChatKind = Field(
        default=ChatKind.USER,
        sa_column=Column(_enum(ChatKind), nullable=False),
    )
    workspace_id: str | None = Field(default=None, max_length=64)
    owner_user_id: str | None = Field(default=None, max_length=128)
    display_name: str | None = Field(default=None, max_length=255)
    timezone: str = Field(default="UTC", max_length=64)
    digest_time: str = Field(default="08:00", max_length=5)
    digest_size: int = 10
    digest_days: str = Field(default="0123456", max_length=7)
    """Weekdays (Monday = 0) on which a digest is due."""
    weekly: bool = False
    min_score: float | None = None
    """Only send a digest when some paper scores above this."""
    trend_weight: float = 1.0
    """How much trend counts against relevance (0 = purely personal)."""
    categories_mode: str = Field(default="boost", max_length=8)
    """``filter`` (only these categories) or ``boost`` (prefer them)."""
    bluesky_handle: str | None = Field(default=None, max_length=255)
    active: bool = True
    paused: bool = False
    announcements: bool = Field(default=True, sa_column_kwargs={"server_default": true()})
    """Receives admins' ``/announce`` messages (``/settings announcements off`` opts out)."""
    created_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))


class Interest(SQLModel, table=True):
    """One keyword, followed author, category or muted term of a subscriber."""

    __table_args__ = (UniqueConstraint("subscriber_id", "kind", "value", name="uq_interest"),)

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", ondelete="CASCADE", index=True)
    kind: InterestKind = Field(sa_column=Column(_enum(InterestKind), nullable=False))
    value: str = Field(max_length=255)


class Feedback(SQLModel, table=True):
    """A subscriber's rating (👍 = 1, 👎 = -1, none = 0) and bookmark of one paper."""

    __table_args__ = (UniqueConstraint("subscriber_id", "arxiv_id", name="uq_feedback"),)

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", ondelete="CASCADE", index=True)
    arxiv_id: str = Field(max_length=64)
    rating: int = 0
    saved: bool = False
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))


class Digest(SQLModel, table=True):
    """One digest built for one subscriber; scheduled ones are unique per local date."""

    __table_args__ = (
        UniqueConstraint("subscriber_id", "scheduled_for", name="uq_digest_local_date"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", ondelete="CASCADE", index=True)
    scheduled_for: date | None = None
    """The subscriber's local date for a scheduled digest; None for an on-demand one."""
    created_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))
    paper_count: int = 0


class Delivery(SQLModel, table=True):
    """A paper given to a subscriber in a digest: at most once per subscriber, ever."""

    __table_args__ = (UniqueConstraint("subscriber_id", "arxiv_id", name="uq_delivery"),)

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", ondelete="CASCADE", index=True)
    digest_id: int = Field(foreign_key="digest.id", ondelete="CASCADE", index=True)
    arxiv_id: str = Field(max_length=64)
    rank: int
    score: float
    why: str = ""
    created_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))


class OutboxMessage(SQLModel, table=True):
    """A rendered message waiting to be sent, sent, or parked as failed."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", ondelete="CASCADE", index=True)
    digest_id: int | None = Field(default=None, foreign_key="digest.id", ondelete="CASCADE")
    idempotency_key: str = Field(max_length=128, unique=True)
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: OutboxStatus = Field(
        default=OutboxStatus.PENDING,
        sa_column=Column(_enum(OutboxStatus), nullable=False),
    )
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))
    platform_message_id: str | None = Field(default=None, max_length=128)
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=_utc())


class SourceCursor(SQLModel, table=True):
    """Where each source left off, and how healthy it is."""

    __tablename__ = "source_cursor"

    source: str = Field(primary_key=True, max_length=64)
    """``arxiv:rss:cs.LG``, ``arxiv:oai``, ``hackernews``…"""
    last_poll_at: datetime | None = Field(default=None, sa_column=_utc())
    last_success_at: datetime | None = Field(default=None, sa_column=_utc())
    etag: str | None = Field(default=None, max_length=255)
    last_modified: str | None = Field(default=None, max_length=64)
    resumption_token: str | None = None
    cursor: str | None = None
    last_error: str | None = None
    last_error_at: datetime | None = Field(default=None, sa_column=_utc())
    consecutive_failures: int = 0


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a SQLModel table class, typed (the class stubs do not declare it)."""
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


# Core tables, for typed query expressions: ``PAPERS.c.arxiv_id.in_(…)``.
PAPERS = table_of(Paper)
SNAPSHOTS = table_of(EngagementSnapshot)
MENTIONED = table_of(EngagementPaper)
KINDS = table_of(EngagementKind)
POSTS = table_of(EngagementPost)
HOURS = table_of(EngagementHour)
SUBSCRIBERS = table_of(Subscriber)
INTERESTS = table_of(Interest)
FEEDBACK = table_of(Feedback)
DIGESTS = table_of(Digest)
DELIVERIES = table_of(Delivery)
OUTBOX = table_of(OutboxMessage)
CURSORS = table_of(SourceCursor)


class LearnedModel(SQLModel, table=True):
    """A subscriber's learned relevance model: sparse weights over a hashed feature space.

    Trained in batch (``trending-papers train``), never at digest time. The feature space is
    a hash of words, bigrams and author names, so the weights stay valid as vocabulary changes.
    """

    __tablename__ = "learned_model"

    subscriber_id: int = Field(primary_key=True, foreign_key="subscriber.id", ondelete="CASCADE")
    space: str = Field(max_length=32)
    """Feature space the weights live in (``hash18-v1``); other spaces are ignored."""
    intercept: float
    indices: str
    """Feature indices, little-endian uint32, base64."""
    weights: str
    """Weights for those features, little-endian float32, base64."""
    positives: int = 0
    negatives: int = 0
    trained_at: datetime = Field(default_factory=utcnow, sa_column=_utc(nullable=False))


LEARNED = table_of(LearnedModel)
