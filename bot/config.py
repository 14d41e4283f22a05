"""Settings, read from ``TP_*`` environment variables and an optional ``.env`` file.

Every setting has a default that works offline on a laptop; secrets are ``SecretStr`` so
they never show up in logs, reprs or error messages.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Annotated

from platformdirs import user_data_dir
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.admin import parse_admin_id
from bot.logs import register_secrets


def default_database_url() -> str:
    """A SQLite file in the user's data directory (created on first use)."""
    path = Path(user_data_dir("trending-papers", appauthor=False)) / "trending-papers.db"
    return f"sqlite:///{path}"


class Settings(BaseSettings):
    """All runtime configuration. Field ``foo_bar`` is set with ``TP_FOO_BAR``."""

    model_config = SettingsConfigDict(
        env_prefix="TP_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # "TP_TELEGRAM_TOKEN=" in an env file means "not set", not an empty token.
        env_ignore_empty=True,
    )

    # --- storage ---------------------------------------------------------------------------
    database_url: str = Field(
        default_factory=default_database_url,
        description="SQLAlchemy URL: sqlite:///path.db (default, in the user data dir) "
        "or postgresql+psycopg://user@host/db",
    )

    # --- HTTP and sources ------------------------------------------------------------------
    contact_email: str = Field(
        default="trending-papers@example.invalid",
        description="Contact address sent in the User-Agent, as arXiv and Reddit ask",
    )
    http_timeout: float = Field(default=20.0, description="Read timeout for source requests (s)")
    http_max_retries: int = Field(default=4, description="Retries for 429/5xx/network errors")
    http_max_bytes: int = Field(
        default=50_000_000, description="Largest response body accepted from a source (bytes)"
    )
    arxiv_categories: Annotated[list[str], NoDecode] = Field(
        default=["cs.LG", "cs.CL", "cs.CV", "cs.AI", "stat.ML"],
        description="Announcement feeds to poll (comma-separated or JSON list)",
    )
    reddit_subreddits: Annotated[list[str], NoDecode] = Field(
        default=["MachineLearning", "LocalLLaMA"], description="Subreddits scanned for arXiv links"
    )
    reddit_client_id: str | None = Field(default=None, description="Reddit OAuth app id")
    reddit_client_secret: SecretStr | None = Field(default=None, description="Reddit app secret")
    bluesky_handle: str | None = Field(default=None, description="Bluesky login for search")
    bluesky_app_password: SecretStr | None = Field(default=None, description="Bluesky app password")
    semantic_scholar_api_key: SecretStr | None = Field(
        default=None, description="Semantic Scholar API key (optional)"
    )
    huggingface_token: SecretStr | None = Field(default=None, description="Hugging Face token")

    # --- ranking ---------------------------------------------------------------------------
    freshness_days: int = Field(default=3, description="Digest considers papers this recent")
    digest_size: int = Field(default=10, description="Papers per digest for new subscribers")
    trend_half_life_hours: float = Field(default=36.0, description="Trend decay half-life (h)")
    title_weight: int = Field(default=2, description="How many times the title counts vs abstract")
    trend_weights: dict[str, float] = Field(
        default={
            "hackernews": 1.0,
            "reddit": 0.8,
            "bluesky": 1.0,
            "huggingface": 1.0,
            "semanticscholar": 0.5,
        },
        description="Weight of each source in the trend score (JSON); unlisted sources count 1",
    )
    trend_velocity_weight: float = Field(default=0.5, description="Weight of 24-hour growth")
    trend_window_days: float = Field(
        default=7.0, description="Days of snapshots read for the trend and its percentiles"
    )
    trend_scale_floor: float = Field(
        default=10.0, description="A source's scale is at least log1p of this"
    )
    trend_circle_weight: float = Field(
        default=1.0, description="Extra trend per log1p(people you follow who posted it)"
    )
    engagement_sources: Annotated[list[str], NoDecode] = Field(
        default=["hackernews", "reddit", "bluesky", "huggingface", "semanticscholar"],
        description="Engagement sources to poll",
    )
    engagement_lookback_days: float = Field(
        default=3.0, description="Each engagement poll re-reads posts this recent"
    )
    citations_min_age_days: float = Field(
        default=3.0, description="Semantic Scholar is asked about papers at least this old"
    )
    citations_max_age_days: float = Field(default=30.0, description="…and at most this old")

    # --- chat ------------------------------------------------------------------------------
    telegram_token: SecretStr | None = Field(default=None, description="Bot token from @BotFather")
    telegram_api_base_url: str = Field(
        default="https://api.telegram.org/bot",
        description="Bot API base URL (point at a self-hosted telegram-bot-api or a test server)",
    )
    telegram_webhook_url: str | None = Field(
        default=None, description="Public HTTPS URL for webhook mode (polling when unset)"
    )
    telegram_webhook_secret: SecretStr | None = Field(
        default=None, description="Secret Telegram sends in X-Telegram-Bot-Api-Secret-Token"
    )
    slack_bot_token: SecretStr | None = Field(default=None, description="xoxb- bot token")
    slack_signing_secret: SecretStr | None = Field(default=None, description="Slack signing secret")
    slack_app_token: SecretStr | None = Field(
        default=None, description="xapp- app-level token: enables Socket Mode"
    )
    slack_api_base_url: str = Field(
        default="https://slack.com/api/", description="Slack Web API base URL"
    )
    slack_client_id: str | None = Field(
        default=None, description="Slack app client id: OAuth installs into many workspaces"
    )
    slack_client_secret: SecretStr | None = Field(
        default=None, description="Slack app client secret (OAuth)"
    )
    slack_scopes: Annotated[list[str], NoDecode] = Field(
        default=[
            "commands",
            "chat:write",
            "chat:write.public",
            "users:read",
            "im:write",
            "im:history",
            "app_mentions:read",
        ],
        description="Bot scopes the OAuth install asks for (comma-separated or JSON list)",
    )
    slack_redirect_uri: str | None = Field(
        default=None, description="Public URL of /slack/oauth_redirect (OAuth)"
    )
    slack_command: str = Field(
        default="/papers", description="The app's slash command, as named in its manifest"
    )
    admin_ids: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Bot admins who may use /stats and /announce: platform:user id, comma-separated "
            "(telegram:123456789, slack:U0123ABCD)"
        ),
    )
    digest_staleness_hours: float = Field(
        default=6.0,
        description="A digest missed by more than this (service down) is skipped, not sent late",
    )
    default_timezone: str = Field(default="UTC", description="Time zone for new subscribers")
    default_digest_time: str = Field(default="08:00", description="Local digest time (HH:MM)")

    # --- service ---------------------------------------------------------------------------
    http_host: str = Field(default="127.0.0.1", description="Address of /healthz, webhooks")
    http_port: int = Field(default=8080, description="Port of /healthz, /metrics and webhooks")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: str = Field(default="text", description="text (human) or json")

    @field_validator(
        "arxiv_categories",
        "reddit_subreddits",
        "engagement_sources",
        "slack_scopes",
        "admin_ids",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("admin_ids")
    @classmethod
    def _check_admin_ids(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_admin_id(entry)
        return value

    @model_validator(mode="after")
    def _mask_secrets_in_logs(self) -> Settings:
        # Registered as soon as they are read, so no log line can show them, whenever
        # (and wherever) logging was configured.
        register_secrets(self.secret_values())
        return self

    @cached_property
    def user_agent(self) -> str:
        """Descriptive User-Agent with a contact address (arXiv and Reddit ask for one)."""
        from importlib.metadata import version

        return f"trending-papers/{version('trending-papers')} (+mailto:{self.contact_email})"

    def secret_values(self) -> list[str]:
        """Every configured secret (and the database password), for masking in logs."""
        secrets = [
            value.get_secret_value()
            for value in self.__dict__.values()
            if isinstance(value, SecretStr) and value.get_secret_value()
        ]
        try:
            password = make_url(self.database_url).password
        except ArgumentError:
            password = None
        if password:
            secrets.append(str(password))
        return secrets

    @property
    def is_sqlite(self) -> bool:
        """True when the database is the embedded SQLite default."""
        return self.database_url.startswith("sqlite")
