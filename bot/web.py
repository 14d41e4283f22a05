"""The one HTTP server: ``/healthz``, ``/metrics``, and the chat platforms' webhook routes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.metrics import REGISTRY
from storage import cursors
from storage.db import Database
from storage.errors import StorageError
from storage.types import utcnow


@dataclass
class HealthState:
    """What ``/healthz`` looks at; the service fills it in as parts start."""

    db: Database
    scheduler_alive: Callable[[], bool] | None = None
    """None when this replica is not the leader (the scheduler runs elsewhere)."""
    worker: asyncio.Task[Any] | None = None
    is_leader: Callable[[], bool] = field(default=lambda: False)
    now: Callable[[], datetime] = utcnow

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details): the database answers, and our scheduler and worker are alive."""
        details: dict[str, Any] = {"leader": self.is_leader()}
        healthy = True
        try:
            self.db.ping()
            details["database"] = "ok"
        except StorageError as exc:
            details["database"] = f"unreachable: {exc}"
            healthy = False
        if self.is_leader() and self.scheduler_alive is not None:
            alive = self.scheduler_alive()
            details["scheduler"] = "running" if alive else "stopped"
            healthy = healthy and alive
        if self.worker is not None:
            details["delivery"] = "stopped" if self.worker.done() else "running"
            healthy = healthy and not self.worker.done()
        if details["database"] == "ok":
            now = self.now()
            details["sources"] = {
                cursor.source: {
                    "last_success_age_s": (
                        round((now - cursor.last_success_at).total_seconds())
                        if cursor.last_success_at
                        else None
                    ),
                    "consecutive_failures": cursor.consecutive_failures,
                }
                for cursor in cursors.all_cursors(self.db)
            }
        details["status"] = "ok" if healthy else "unhealthy"
        return healthy, details


def build_web_app(health: HealthState, routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The ASGI app; ``routes`` adds the Telegram webhook and Slack endpoints when enabled."""

    async def healthz(_: Request) -> JSONResponse:
        healthy, details = await asyncio.to_thread(health.report)
        return JSONResponse(details, status_code=200 if healthy else 503)

    async def metrics(_: Request) -> Response:
        body = await asyncio.to_thread(generate_latest, REGISTRY)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", metrics), *routes])
