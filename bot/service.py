"""``trending-papers run``: chat adapters, scheduler, delivery and the HTTP server in one process.

Every replica serves chats, drains the outbox (claims are ``SKIP LOCKED``) and answers
``/healthz``; only the leader (see ``bot.leader``) runs the scheduled jobs. On SIGTERM the
service stops taking work, lets sends in flight finish (unstarted claims go back to the
outbox), and exits; nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import uvicorn
from starlette.routing import BaseRoute

from bot.chat.sender import ChatSender
from bot.config import Settings
from bot.delivery import DeliveryWorker
from bot.engagement import EngagementJobs
from bot.ingest import ingest_announcements
from bot.leader import LeaderLock
from bot.metrics import DIGEST_BUILD_SECONDS, REGISTRY, DatabaseGauges
from bot.scheduler import Jobs, build_scheduler, digest_tick
from bot.trend import provider_for
from bot.trend_cache import TrendProvider
from bot.web import HealthState, build_web_app
from feeds.http import HttpPolicy, build_client
from storage.db import Database, redact_url
from storage.migrate import upgrade
from storage.models import Platform
from storage.types import utcnow

log = logging.getLogger(__name__)


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave SIGTERM/SIGINT to the service."""
        yield


@dataclass
class ChatPlatform:
    """One configured chat platform, as the service needs it."""

    platform: Platform
    sender: ChatSender
    start: Callable[[], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]
    routes: Sequence[BaseRoute] = field(default_factory=tuple)


def freeze_startup_objects() -> None:
    """Take everything allocated while starting out of the garbage collector's reach.

    Imports and start-up leave about 200,000 long-lived objects (SQLAlchemy, PTB, numpy…);
    every full collection walked them all, a pause of over 100 ms for every chat command in
    flight. ``gc.freeze`` parks them in the permanent generation, after one collection so no
    garbage is parked with them.
    """
    gc.collect()
    gc.freeze()


class MissingConfiguration(Exception):
    """No chat platform is configured; the message says which variables to set."""


def missing_chat_message() -> str:
    """What to tell someone who runs the service without any chat token."""
    return (
        "No chat platform is configured, so there is nobody to send digests to.\n"
        "Set at least one of:\n"
        "  Telegram: TP_TELEGRAM_TOKEN (from @BotFather)\n"
        "  Slack:    TP_SLACK_BOT_TOKEN plus TP_SLACK_APP_TOKEN (Socket Mode) or\n"
        "            TP_SLACK_SIGNING_SECRET (HTTP mode),\n"
        "            or TP_SLACK_CLIENT_ID + TP_SLACK_CLIENT_SECRET (OAuth, many workspaces)\n"
        "Try it offline first with: trending-papers demo"
    )


def http_policy(settings: Settings) -> HttpPolicy:
    """The shared HTTP client's policy from settings."""
    return HttpPolicy(
        user_agent=settings.user_agent,
        read_timeout=settings.http_timeout,
        max_retries=settings.http_max_retries,
        max_bytes=settings.http_max_bytes,
    )


class Service:
    """Owns every long-running part of one replica."""

    def __init__(
        self,
        settings: Settings,
        platforms: Sequence[ChatPlatform],
        *,
        db: Database | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        trend_provider: TrendProvider | None = None,
        serve_http: bool = True,
        leader_retry_seconds: float = 10.0,
        shutdown_grace_seconds: float = 20.0,
    ) -> None:
        if not platforms:
            raise MissingConfiguration(missing_chat_message())
        self.settings = settings
        self.platforms = list(platforms)
        self.db = db or Database(settings.database_url)
        self.transport = transport
        self.trend_provider = trend_provider or provider_for(settings)
        self.engagement: EngagementJobs | None = None
        self.serve_http = serve_http
        self.shutdown_grace_seconds = shutdown_grace_seconds
        self.leader = LeaderLock(self.db, retry_seconds=leader_retry_seconds)
        self.worker = DeliveryWorker(self.db, {p.platform: p.sender for p in self.platforms})
        self.health = HealthState(self.db, is_leader=lambda: self.leader.is_leader)
        self.client: httpx.AsyncClient | None = None
        self.server: uvicorn.Server | None = None
        self._gauges = DatabaseGauges(self.db)

    # --- jobs --------------------------------------------------------------------------------

    def _leader_only(
        self, name: str, job: Callable[[], Awaitable[Any]]
    ) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            if not self.leader.is_leader:
                return
            try:
                await job()
            except Exception:
                log.exception("scheduled job failed: job=%s", name)

        return run

    async def _digest_tick(self) -> None:
        started = time.perf_counter()
        report = await asyncio.to_thread(
            digest_tick,
            self.db,
            utcnow(),
            staleness=timedelta(hours=self.settings.digest_staleness_hours),
            freshness_days=self.settings.freshness_days,
            title_weight=self.settings.title_weight,
            trend_provider=self.trend_provider,
        )
        if report.built or report.stale or report.empty:
            DIGEST_BUILD_SECONDS.observe(time.perf_counter() - started)
            log.info(
                "digest tick: built=%d papers=%d empty=%d stale=%d",
                report.built, report.papers, report.empty, report.stale,
            )  # fmt: skip

    async def _poll_arxiv(self) -> None:
        assert self.client is not None
        await ingest_announcements(self.db, self.client, self.settings.arxiv_categories)

    async def _poll_recent(self) -> None:
        assert self.engagement is not None
        await self.engagement.poll_recent()

    async def _poll_older(self) -> None:
        assert self.engagement is not None
        await self.engagement.poll_older()  # also refreshes subscribers' Bluesky circles

    async def _retrain(self) -> None:
        from bot.learning import train_all

        report = await asyncio.to_thread(
            train_all, self.db, utcnow(), title_weight=self.settings.title_weight
        )
        log.info(
            "retrain: trained=%d eligible=%d removed=%d failed=%d seconds=%.1f",
            report.trained, report.eligible, report.removed, len(report.failed), report.seconds,
        )  # fmt: skip

    def jobs(self) -> Jobs:
        """The scheduled jobs of this service (each runs only on the leader)."""
        return Jobs(
            digest_tick=self._leader_only("digest_tick", self._digest_tick),
            poll_arxiv=self._leader_only("poll_arxiv", self._poll_arxiv),
            poll_engagement_recent=self._leader_only("poll_recent", self._poll_recent),
            poll_engagement_older=self._leader_only("poll_older", self._poll_older),
            retrain=self._leader_only("retrain", self._retrain),
        )

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Start everything, wait for ``stop``, then shut down cleanly."""
        await asyncio.to_thread(upgrade, self.db)
        log.info("database ready: %s", redact_url(self.db.url))
        self.client = build_client(http_policy(self.settings), transport=self.transport)
        self.engagement = EngagementJobs(self.db, self.client, self.settings)
        REGISTRY.register(self._gauges)
        scheduler = build_scheduler(self.jobs())
        started: list[ChatPlatform] = []
        tasks: list[asyncio.Task[Any]] = []
        try:
            for platform in self.platforms:
                await platform.start()
                started.append(platform)
                log.info("chat platform started: %s", platform.platform.value)
            freeze_startup_objects()
            self.leader.try_acquire()
            self.leader.start()
            scheduler.start()
            self.health.scheduler_alive = lambda: bool(scheduler.running)
            worker_task = asyncio.create_task(self.worker.run_forever(), name="delivery")
            self.health.worker = worker_task
            tasks.append(worker_task)
            if self.serve_http:
                tasks.append(asyncio.create_task(self._serve_http(), name="http"))
            if self.leader.is_leader:
                # Catch up on digests that fell due while the service was down.
                await self._leader_only("digest_tick", self._digest_tick)()
            await stop.wait()
            log.info("shutting down: finishing messages in flight")
        finally:
            if scheduler.running:
                scheduler.shutdown(wait=False)
            self.worker.stop()
            if self.server is not None:
                self.server.should_exit = True
            if tasks:
                done, pending = await asyncio.wait(tasks, timeout=self.shutdown_grace_seconds)
                for task in pending:
                    task.cancel()
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        log.error("task %s ended with an error", task.get_name(),
                                  exc_info=task.exception())  # fmt: skip
            for platform in reversed(started):
                with contextlib.suppress(Exception):
                    await platform.stop()
            await self.leader.release()
            REGISTRY.unregister(self._gauges)
            await self.client.aclose()
            self.db.dispose()
            log.info("stopped")

    async def _serve_http(self) -> None:
        routes = [route for platform in self.platforms for route in platform.routes]
        config = uvicorn.Config(
            build_web_app(self.health, routes),
            host=self.settings.http_host,
            port=self.settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        self.server = EmbeddedServer(config)
        await self.server.serve()
