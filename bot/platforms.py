"""Which chat platforms the service runs, built from settings."""

from __future__ import annotations

import os
from collections.abc import Sequence

from bot.commands import CommandRouter, digest_builder
from bot.config import Settings
from bot.service import ChatPlatform
from bot.trend_cache import TrendProvider
from storage.db import Database
from storage.models import Platform


def configured_platforms(
    settings: Settings, db: Database, trend: TrendProvider | None = None
) -> Sequence[ChatPlatform]:
    """A ``ChatPlatform`` for every platform whose credentials are set."""
    router = CommandRouter(db, settings, digest=digest_builder(settings, trend))
    platforms: list[ChatPlatform] = []
    if settings.telegram_token is not None:
        platforms.append(telegram_platform(settings, router))
    if settings.slack_bot_token is not None or settings.slack_client_id:
        from bot.chat.slack import slack_platform

        platforms.append(slack_platform(settings, router, db))
    return platforms


def telegram_platform(settings: Settings, router: CommandRouter) -> ChatPlatform:
    """Telegram: polling by default, a webhook route when ``TP_TELEGRAM_WEBHOOK_URL`` is set."""
    # python-telegram-bot warns on every RetryAfter unless durations are timedeltas.
    os.environ.setdefault("PTB_TIMEDELTA", "1")
    from bot.chat.telegram import (
        TelegramSender,
        build_application,
        start_telegram,
        stop_telegram,
        telegram_webhook_route,
        webhook_path,
    )

    application = build_application(settings, router)
    routes = []
    if settings.telegram_webhook_url:
        secret = settings.telegram_webhook_secret
        routes.append(
            telegram_webhook_route(
                application,
                secret.get_secret_value() if secret is not None else "",
                path=webhook_path(settings),
            )
        )

    async def start() -> None:
        await router.warm_up()  # the first commands after a restart then find the papers loaded
        await start_telegram(application)

    async def stop() -> None:
        await stop_telegram(application)

    return ChatPlatform(
        Platform.TELEGRAM, TelegramSender(application.bot), start, stop, routes=routes
    )
