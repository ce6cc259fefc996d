"""What a running API process holds: the ledger, the rate limiter, Redis, metrics and caches."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from redis.asyncio import Redis

from ledger.api.metrics import Metrics
from ledger.api.ratelimit import RateLimiter
from ledger.billing.gateway import StripeGateway
from ledger.errors import RateLimited, UnknownAccount
from ledger.keys import Principal, authenticate
from ledger.revocations import announce
from ledger.service import Ledger
from ledger.settings import Settings


@dataclass
class Runtime:
    ledger: Ledger
    settings: Settings
    limiter: RateLimiter | None = None
    redis: Redis | None = None
    metrics: Metrics = field(default_factory=Metrics)
    #: Stripe, built from the settings on first use (no key: those routes answer 503).
    stripe: StripeGateway | None = None
    _keys: dict[str, tuple[Principal, float]] = field(default_factory=dict)  # float-ok: monotonic expiry
    _plans: dict[str, tuple[str, float]] = field(default_factory=dict)  # float-ok: monotonic expiry
    #: Bumped by every forget: a lookup that started before one must not cache what it read.
    _key_epoch: int = 0

    @property
    def gateway(self) -> StripeGateway:
        if self.stripe is None:
            self.stripe = StripeGateway.from_settings(self.settings)
        return self.stripe

    async def principal(self, raw: str) -> Principal | None:
        """The key's principal, trusted for ``key_cache_s`` once verified (or until revoked)."""
        now = time.monotonic()
        hit = self._keys.get(raw)
        if hit is not None and hit[1] > now:
            return hit[0]
        epoch = self._key_epoch
        found = await authenticate(self.ledger.engine, raw)
        if found is not None and self.settings.key_cache_s > 0 and epoch == self._key_epoch:
            if len(self._keys) > 10_000:
                self._keys.clear()
            self._keys[raw] = (found, now + self.settings.key_cache_s)
        return found

    def forget_key(self, key_id: str) -> None:
        """Drop a revoked key from this process's cache at once."""
        self._key_epoch += 1
        for raw in [raw for raw, (p, _) in self._keys.items() if p.key_id == key_id]:
            del self._keys[raw]

    def forget_all_keys(self) -> None:
        """Drop every cached key (revocations may have been missed: see ``ledger.revocations``)."""
        self._key_epoch += 1
        self._keys.clear()

    async def revoked(self, key_id: str) -> None:
        """A key's revocation has committed: forget it here, and tell every other API process."""
        self.forget_key(key_id)
        if self.redis is not None:
            await announce(self.redis, key_id)

    async def _plan_of(self, account_id: str) -> str | None:
        now = time.monotonic()
        hit = self._plans.get(account_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            plan = (await self.ledger.account(account_id)).plan
        except UnknownAccount:  # the route itself answers 404
            return None
        if len(self._plans) > 100_000:
            self._plans.clear()
        self._plans[account_id] = (plan, now + 30.0)
        return plan

    async def rate_limit(self, who: Principal) -> None:
        """Count the request against its plan's per-minute limit; raise ``RateLimited`` over it.

        An account's own keys count against its plan's limit. Operator keys (the product's
        backend, acting for many accounts, e.g. granting credits after a purchase) count against
        the operator limit per key, so one busy free-plan user never throttles the backend.
        """
        if self.limiter is None or not self.settings.rate_limits:
            return
        subject = who.account_id
        if subject is not None:
            plan_id = await self._plan_of(subject)
            plan = self.ledger.card.plans.get(plan_id) if plan_id else None
            if plan is None:
                return
            key, limit = f"account:{subject}", plan.rate_limit_per_minute
        else:
            key, limit = f"key:{who.key_id}", self.settings.operator_rate_limit_per_minute
        decision = await self.limiter.hit(key, limit, count_remaining=False)
        if not decision.allowed:
            raise RateLimited(limit_per_minute=limit, retry_after_s=decision.retry_after_s)
