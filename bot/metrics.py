"""Prometheus metrics: counters bumped where things happen, gauges read from the database."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from storage import outbox, subscribers
from storage.db import Database
from storage.errors import StorageError

REGISTRY = CollectorRegistry(auto_describe=True)

MESSAGES_SENT = Counter(
    "trending_messages_sent", "Messages delivered to chats", ["platform"], registry=REGISTRY
)
MESSAGES_FAILED = Counter(
    "trending_messages_failed",
    "Messages that failed to send, by reason (permanent, transient, gave_up)",
    ["platform", "reason"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "trending_rate_limited", "429 / RetryAfter answers from chat platforms", ["platform"],
    registry=REGISTRY,
)  # fmt: skip
SOURCE_ERRORS = Counter(
    "trending_source_errors", "Failed polls per source", ["source"], registry=REGISTRY
)
SOURCE_POLLS = Counter(
    "trending_source_polls", "Successful polls per source", ["source"], registry=REGISTRY
)
DIGEST_BUILD_SECONDS = Histogram(
    "trending_digest_build_seconds", "Time to rank and record one tick's digests",
    registry=REGISTRY, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)  # fmt: skip
RANKING_SECONDS = Histogram(
    "trending_ranking_seconds", "Time spent in the ranking pass", registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)  # fmt: skip


class DatabaseGauges(Collector):
    """Outbox depth and active subscribers, read at scrape time."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the gauges; a database error yields nothing rather than failing the scrape."""
        try:
            counts = outbox.counts(self.db)
            active = len(subscribers.active(self.db))
        except StorageError:
            return
        depth = GaugeMetricFamily("trending_outbox_messages", "Outbox rows by status",
                                  labels=["status"])  # fmt: skip
        for status in ("pending", "sending", "sent", "failed"):
            depth.add_metric([status], counts.get(status, 0))
        yield depth
        yield GaugeMetricFamily(
            "trending_active_subscribers", "Subscribers that are active and not paused",
            value=active,
        )  # fmt: skip
