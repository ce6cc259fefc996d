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
    #: The database ``credits demo`` creates afresh for each run, on the ledger's server (default:
    #: the ledger's database name + ``_demo``, e.g. ``credits_demo``): never the one ``credits serve``
    #: uses, so the demo's simulated month stays out of the served ledger.
    demo_database: str | None = Field(default=None, min_length=1, max_length=63)
    #: How long the group-commit writer waits for more commands after the first arrives.
    batch_window_ms: float = 0.0  # float-ok: a duration, not money
    batch_max: int = 512
    #: Batches in flight at once (each on its own connection).
    writer_concurrency: int = 2
    #: While a batch is in flight, another starts only once this many commands wait (fewer wait
    #: for it and then share the next one).
    writer_parallel_at: int = 16
    #: PostgreSQL connections per process (a hard cap: callers queue for one beyond it).
    pool_size: int = 20
    #: Seconds between a running process's looks for a newer rate card: a version loaded with
    #: ``credits rates load`` prices new usage in every API and worker process within this time.
    rates_check_s: float = Field(default=2.0, ge=0.05, le=3600)  # float-ok: a duration

    # ---- HTTP API ----
    #: Shown in new keys: ``cl_<env>_...`` (``live`` or ``test``).
    key_env: str = "live"
    #: Seconds a verified key is trusted by one API process before it is looked up again. A
    #: revocation reaches every process at once through Redis (``ledger.revocations``), and
    #: within this time when Redis could not pass it on.
    key_cache_s: float = 5.0  # float-ok: a duration
    #: Per-plan request limits in Redis (off: no limit, no Redis round trip per request).
    rate_limits: bool = True
    #: Requests per minute for each operator key, on every route (never the plan of the account
    #: it names: the backend acting for a tenant is not throttled by that tenant's plan).
    operator_rate_limit_per_minute: int = 60_000

    # ---- Stripe (docs/stripe.md) ----
    #: The secret API key (``sk_live_...`` / ``sk_test_...``); unset: checkout, refunds and the
    #: billing portal answer 503 saying Stripe is not configured.
    stripe_api_key: str | None = Field(default=None, validation_alias="STRIPE_API_KEY")
    #: The webhook endpoint's signing secret (``whsec_...``); unset: every webhook is refused.
    stripe_webhook_secret: str | None = Field(default=None, validation_alias="STRIPE_WEBHOOK_SECRET")
    #: Where Stripe's API is (a local stand-in in tests and demos); default: Stripe itself.
    stripe_api_base: str | None = Field(default=None, validation_alias="STRIPE_API_BASE")
    #: Seconds a webhook's signed timestamp may be old (Stripe's own default).
    stripe_webhook_tolerance_s: int = Field(default=300, ge=1, le=3600)
    #: Seconds one call to Stripe may take before it counts as unreachable.
    stripe_timeout_s: float = Field(default=20.0, gt=0, le=120)  # float-ok: a duration

    # ---- workers ----
    #: The Dramatiq broker: ``redis://...`` or ``amqp://...`` (RabbitMQ); default: ``REDIS_URL``.
    broker_url: str | None = Field(default=None, validation_alias="BROKER_URL")
    #: Prefix of the broker's queues (separate installs, or tests, sharing one Redis).
    broker_namespace: str = "credits"
    #: Redis broker: how long a worker may be silent before its unacked messages go back to the
    #: queue (a worker killed mid-message), and how often (per million commands) that is checked.
    broker_heartbeat_timeout_ms: int = 60_000
    broker_maintenance_chance: int = 1000
    #: ``credits serve`` also runs the relay, a worker and the scheduler in the API process.
    serve_background: bool = True
    #: Threads per worker process running actors (async actors share one event loop).
    worker_threads: int = 8
    #: Seconds between scheduler ticks (hourly charges are found on every tick).
    scheduler_interval_s: float = 30.0  # float-ok: a duration
    #: Seconds the relay sleeps when it has caught up with the log.
    relay_idle_s: float = 0.2  # float-ok: a duration
    #: Deliver webhooks to private, loopback and link-local addresses (off: refused, SSRF guard).
    webhook_allow_private: bool = False
    #: Webhook retries: attempts after the first, and the backoff bounds in milliseconds.
    webhook_max_retries: int = 12
    webhook_min_backoff_ms: int = 10_000
    webhook_max_backoff_ms: int = 6 * 3600 * 1000
    #: A delivery older than this is given up (``dead``) at its next failure, whatever its attempts.
    webhook_max_age_s: int = 3 * 24 * 3600
    #: How long a delivery handed to the broker counts as in flight past its due time; after that
    #: the scheduler's sweep sends it again (the broker lost it). A send counts 2 minutes.
    webhook_lease_s: int = 300


def load_settings() -> Settings:
    return Settings()
