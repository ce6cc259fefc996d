"""Settings from the environment (pydantic-settings); nothing is read at import time."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the servers are and how the writer batches.

    With no ``DATABASE_URL`` / ``REDIS_URL`` the embedded default starts private servers under
    ``CREDITS_DATA_DIR``.
    """

    model_config = SettingsConfigDict(env_prefix="CREDITS_", extra="ignore")

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    data_dir: Path = Path.home() / ".credits"
    #: How long the group-commit writer waits for more commands after the first arrives.
    batch_window_ms: float = 0.0  # float-ok: a duration, not money
    batch_max: int = 512
    #: Batches in flight at once (each on its own connection).
    writer_concurrency: int = 2
    pool_size: int = 10

    # ---- HTTP API ----
    #: Shown in new keys: ``cl_<env>_...`` (``live`` or ``test``).
    key_env: str = "live"
    #: Seconds a verified key is trusted by one API process before it is looked up again; a
    #: revocation reaches other processes within this time (the revoking process at once).
    key_cache_s: float = 5.0  # float-ok: a duration
    #: Per-plan request limits in Redis (off: no limit, no Redis round trip per request).
    rate_limits: bool = True
    #: Requests per minute for operator keys on routes that name no account.
    operator_rate_limit_per_minute: int = 60_000


def load_settings() -> Settings:
    return Settings()
