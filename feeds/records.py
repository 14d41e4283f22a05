"""Plain record types that feed adapters produce and storage persists.

These are the only types shared across the ``feeds`` → ``storage`` boundary, so they carry
no behaviour beyond small derived properties.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class AnnounceType(StrEnum):
    """How a paper appeared in an arXiv announcement (``arxiv:announce_type``)."""

    NEW = "new"
    CROSS = "cross"
    REPLACE = "replace"
    REPLACE_CROSS = "replace-cross"


@dataclass(frozen=True, slots=True)
class Paper:
    """One arXiv paper at one version, as read from any arXiv format."""

    arxiv_id: str
    """Identifier without version: ``2401.12345`` or ``hep-th/9901001``."""
    version: int
    title: str
    abstract: str
    authors: tuple[str, ...]
    categories: tuple[str, ...]
    primary_category: str
    published: datetime
    """When version 1 appeared (timezone-aware UTC)."""
    updated: datetime
    """When this version appeared (timezone-aware UTC)."""
    comment: str | None = None
    journal_ref: str | None = None
    doi: str | None = None
    announce_type: AnnounceType | None = None
    announced: datetime | None = None
    """When an announcement feed listed it (None when read from the API or OAI-PMH)."""
    withdrawn: bool = False

    @property
    def abs_url(self) -> str:
        """Canonical abstract page, always the latest version."""
        return f"https://arxiv.org/abs/{self.arxiv_id}"

    @property
    def pdf_url(self) -> str:
        """PDF of this exact version."""
        return f"https://arxiv.org/pdf/{self.arxiv_id}v{self.version}"


@dataclass(frozen=True, slots=True)
class Signal:
    """One engagement observation: a metric value for a paper on one source at one time."""

    arxiv_id: str
    source: str
    """``hackernews``, ``reddit``, ``bluesky``, ``huggingface``, ``semanticscholar``…"""
    metric: str
    """``points``, ``comments``, ``likes``, ``reposts``, ``upvotes``, ``citations``…"""
    value: float
    observed_at: datetime
    url: str | None = None
    """Evidence: the post, story or page the number was read from."""
    actor: str | None = None
    """Who posted it (a Bluesky DID, HN user…), for circle signals; None when not known."""
    weight: float = 1.0
    """Source-specific reach weight of the actor (e.g. follower-weighted Bluesky posts)."""


@dataclass(frozen=True, slots=True)
class PageInfo:
    """Paging facts of one API response (opensearch totals, OAI resumption, cursors)."""

    total: int | None = None
    start: int | None = None
    per_page: int | None = None
    resumption_token: str | None = None
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class PaperBatch:
    """What one parse of an arXiv payload yields: the papers and how to get the next page."""

    papers: tuple[Paper, ...]
    page: PageInfo = field(default_factory=PageInfo)
    deleted_ids: tuple[str, ...] = ()
    """OAI-PMH records with ``status="deleted"``."""
