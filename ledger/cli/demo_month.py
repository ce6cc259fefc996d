"""The month ``credits demo`` simulates: what each hour submits, decided without I/O.

Three accounts, one per seed product: an AI platform billing tokens (gpt-4o, claude-sonnet-4,
claude-haiku, attributed to agents, members and flows, under a monthly budget), a GPU cloud
billing deployment hours (gpu-s and gpu-m deployments charged at the start of every hour, one
paused and resumed, one stopped, plus reserved-and-settled H100 training runs) and a messaging
product (email, SMS, voice minutes, speech synthesis). Purchases with fake Stripe ids, a coupon,
an operator grant, refunds, grant expiry and the next month's allowance happen along the way.

Every command carries an idempotency key and every random quantity comes from a generator seeded
with the run id, so the same run id always issues the same commands. The account ids carry the
run id (by default the month).
"""

from __future__ import annotations

import calendar
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from ledger import commands as c
from ledger.clock import HOUR
from ledger.events import Attribution
from ledger.money import UCR_PER_CREDIT
from ledger.rates import RateCard

AI, GPU, MSG = "ai", "gpu", "msg"
LABELS = {AI: "AI tokens", GPU: "GPU hours", MSG: "Messaging"}
PLANS = {AI: "pro", GPU: "team", MSG: "pro"}
BUDGET_UCR = 4_000 * UCR_PER_CREDIT  # $40 at the sample card's 100 credits per dollar

#: Emails the newsletter sends beyond what the messaging account's balance covers.
NEWSLETTER_OVER = 1_000

AGENTS = ("support-bot", "research-agent", "sales-assistant")
MEMBERS = ("alice", "bob", "carol")
FLOWS = ("triage", "summarize", "outreach")
#: (model, weight, input token range, output token range)
MODELS = (("gpt-4o", 4, (400, 6000), (100, 1200)), ("claude-sonnet-4", 3, (400, 8000), (100, 1500)),
          ("claude-haiku", 3, (200, 4000), (50, 800)))


def at(day: int, hour: int) -> int:
    """Hours since the start of the month of ``day`` (1-based) at ``hour`` o'clock."""
    return (day - 1) * 24 + hour


def month_start(now: datetime) -> datetime:
    """00:00 UTC on the first of ``now``'s month."""
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass
class DeploymentHours:
    """A deployment the month charges hourly: whose, the next hour to charge, whether it runs."""

    account: str
    next_hour: int = 0
    running: bool = True


@dataclass
class Month:
    """One simulated month's script, and what it remembers between hours (ids the ledger gave)."""

    card: RateCard
    start: datetime
    run_id: str
    rng: random.Random = field(init=False)
    ids: dict[str, str] = field(init=False)
    deployments: dict[str, DeploymentHours] = field(default_factory=dict)
    purchases: dict[str, UUID] = field(default_factory=dict)
    reservations: dict[str, UUID] = field(default_factory=dict)
    #: Set at the newsletter's hour from the messaging account's balance then.
    newsletter_emails: int = 0

    def __post_init__(self) -> None:
        # Seeded by the run id: a re-run issues byte-identical commands, so its keys replay.
        self.rng = random.Random(f"credits-demo:{self.run_id}")
        self.ids = {p: f"demo-{self.run_id}-{p}" for p in (AI, GPU, MSG)}

    @property
    def hours(self) -> int:
        """Hours in the simulated month."""
        return calendar.monthrange(self.start.year, self.start.month)[1] * 24

    @property
    def newsletter_hour(self) -> int:
        """10:00 on the month's last day."""
        return self.hours - 14

    @property
    def next_month(self) -> datetime:
        """Where the simulated month ends (the next cycle begins)."""
        return self.start + self.hours * HOUR

    # ---- what happens when ---------------------------------------------------------------------

    def _purchase(self, product: str, n: int, **kw: object) -> c.RecordPurchase:
        # Fake Stripe ids; the key is derived from the Stripe event, as the webhook handler would.
        evt = f"evt_demo_{self.run_id}_{n}"
        if kw.get("kind") == "pack":  # paid at the card's price, as Stripe checkout charges it
            kw["cents_paid"] = self.card.pack(str(kw["pack_id"])).price_cents
        return c.RecordPurchase.model_validate({
            "account_id": self.ids[product], "stripe_payment_intent": f"pi_demo_{self.run_id}_{n}",
            "stripe_event_id": evt, "idempotency_key": f"stripe:{evt}", **kw})

    def scheduled(self, h: int) -> list[c.Command]:
        """The one-off commands of hour ``h``: sign-ups, purchases, deployments, refunds, ..."""
        ai, gpu, msg = self.ids[AI], self.ids[GPU], self.ids[MSG]
        now = self.start + h * HOUR
        out: list[c.Command] = []
        if h % 24 == 0 and h > 0:
            # The scheduler's daily sweep (debits expire due grants too; this catches idle accounts).
            out += [c.ExpireGrants(account_id=a, idempotency_key=f"expire-grants:{h // 24}") for a in (ai, gpu, msg)]
        if h == 0:
            out += [c.OpenAccount(account_id=self.ids[p], name=f"Demo {LABELS[p]} ({self.run_id})", plan=PLANS[p],
                                  idempotency_key="demo:open") for p in (AI, GPU, MSG)]
            out += [
                self._purchase(AI, 1, kind="pack", pack_id="builder"),
                c.RedeemCoupon(account_id=ai, code="WELCOME10", idempotency_key="demo:coupon"),
                c.SetBudget(account_id=ai, monthly_limit_ucr=BUDGET_UCR, warn_pct=80, critical_pct=95,
                            idempotency_key="demo:budget"),
                c.SetLimit(account_id=ai, scope="agent", subject="research-agent", per_day_ucr=500 * UCR_PER_CREDIT,
                           idempotency_key="demo:limit"),
                self._purchase(GPU, 2, kind="pack", pack_id="scale"),
                self._purchase(GPU, 3, kind="custom", cents_paid=30000),
                c.StartDeployment(account_id=gpu, deployment_id="inference-api", instance_type="gpu-s",
                                  idempotency_key="demo:start:inference-api"),
                self._purchase(MSG, 4, kind="custom", cents_paid=30000),
                c.RedeemCoupon(account_id=msg, code="WELCOME10", idempotency_key="demo:coupon"),
            ]
        if h == at(2, 9):
            out.append(c.GrantCredits(account_id=ai, amount_ucr=1_500 * UCR_PER_CREDIT, source="promotion",
                                      expires_at=now + timedelta(days=14), reason="design partner credits",
                                      idempotency_key="demo:operator-grant"))
        if h == at(3, 10):
            out.append(c.StartDeployment(account_id=gpu, deployment_id="finetune-a100", instance_type="gpu-m",
                                         idempotency_key="demo:start:finetune-a100"))
        if h == at(4, 22):
            out.append(c.StopDeployment(account_id=gpu, deployment_id="finetune-a100",
                                        idempotency_key="demo:stop:finetune-a100"))
        if h == at(8, 0):
            out.append(c.PauseDeployment(account_id=gpu, deployment_id="inference-api", reason="maintenance window",
                                         idempotency_key="demo:pause:inference-api"))
        if h == at(9, 12):
            out.append(c.ResumeDeployment(account_id=gpu, deployment_id="inference-api",
                                          idempotency_key="demo:resume:inference-api"))
        for week, day in enumerate((5, 12, 19, 26), start=1):
            if h == at(day, 14):
                out.append(c.Reserve(account_id=gpu, operation="training_h100_per_minute", quantity=180,
                                     ttl_s=6 * 3600, idempotency_key=f"demo:train:{week}:reserve"))
            rid = self.reservations.get(f"demo:train:{week}:reserve")
            if h == at(day, 18) and rid is not None:
                out.append(c.Settle(account_id=gpu, reservation_id=rid, quantity=60 + (week * 37) % 110,
                                    attribution=Attribution(run=f"train-week-{week}"),
                                    idempotency_key=f"demo:train:{week}:settle"))
        if h == at(10, 16):
            out.append(self._purchase(MSG, 5, kind="custom", cents_paid=1500))
        mistake = self.purchases.get(f"stripe:evt_demo_{self.run_id}_5")
        if h == at(11, 9) and mistake is not None:
            out.append(c.IssueRefund(account_id=msg, direction="clawback", purchase_id=mistake,
                                     reason="refunded in Stripe: bought twice", idempotency_key="stripe:re_demo_1"))
        if h == at(15, 11):
            out.append(c.IssueRefund(account_id=gpu, direction="credit", amount_ucr=500 * UCR_PER_CREDIT,
                                     reason="training run failed on a bad node", idempotency_key="demo:refund:1"))
        if h == at(18, 8):
            out.append(self._purchase(GPU, 6, kind="pack", pack_id="builder"))
        if h == at(20, 10):
            out.append(self._purchase(AI, 7, kind="custom", cents_paid=2500))
        if h == self.newsletter_hour:
            # A newsletter blast to more subscribers than the balance covers: metered, never
            # refused, so it runs the account into debt; the next allowance pays the debt first.
            out.append(c.Meter(account_id=msg, operation="email", quantity=self.newsletter_emails,
                               attribution=Attribution(flow="newsletter"), idempotency_key="demo:newsletter"))
        if h == self.hours:
            out += [c.GrantAllowance(account_id=a, cycle=1, idempotency_key="allowance:1") for a in (ai, gpu, msg)]
        return out

    def usage(self, h: int) -> list[c.Command]:
        """Usage that happened during hour ``h - 1``, metered at the start of hour ``h``."""
        if h == 0:
            return []
        rng = self.rng
        began = self.start + (h - 1) * HOUR
        busy = 8 <= began.hour < 20 and began.weekday() < 5
        out: list[c.Command] = []

        def when() -> datetime:
            return began + timedelta(seconds=rng.randrange(3600))

        for i in range(rng.randint(6, 12) if busy else rng.randint(0, 3)):
            model, _, (in_lo, in_hi), (out_lo, out_hi) = rng.choices(MODELS, weights=[m[1] for m in MODELS])[0]
            who = Attribution(agent=rng.choice(AGENTS), member=rng.choice(MEMBERS), flow=rng.choice(FLOWS),
                              run=f"run-{h}-{i}")
            out.append(c.Meter(account_id=self.ids[AI], operation=model,
                               quantities={"input_tokens": rng.randint(in_lo, in_hi),
                                           "output_tokens": rng.randint(out_lo, out_hi)},
                               attribution=who, occurred_at=when(), idempotency_key=f"usage:{h}:{i}"))
        if busy:
            # An interactive request the product gates on the balance before running it.
            out.append(c.Charge(account_id=self.ids[AI], operation="claude-haiku",
                                quantities={"input_tokens": rng.randint(200, 1500),
                                            "output_tokens": rng.randint(50, 400)},
                                attribution=Attribution(agent="support-bot", flow="live-chat"),
                                idempotency_key=f"charge:{h}"))

        msg = self.ids[MSG]
        emails = rng.randint(20, 80) if busy else rng.randint(0, 10)
        if emails:
            out.append(c.Meter(account_id=msg, operation="email", quantity=emails,
                               attribution=Attribution(flow="notifications"), occurred_at=when(),
                               idempotency_key=f"email:{h}"))
        sms = rng.randint(1, 8) if busy else rng.randint(0, 1)
        if sms:
            out.append(c.Meter(account_id=msg, operation="sms", quantity=sms, attribution=Attribution(flow="alerts"),
                               occurred_at=when(), idempotency_key=f"sms:{h}"))
        for i in range(rng.randint(0, 3) if busy else 0):
            call = Attribution(flow="voice-agent", execution=f"call-{h}-{i}")
            out.append(c.Meter(account_id=msg, operation="voice_minute", quantity=rng.randint(20, 480),
                               attribution=call, occurred_at=when(), idempotency_key=f"voice:{h}:{i}"))
            if rng.random() < 0.3:  # float-ok: a coin toss for the simulation, not money
                out.append(c.Meter(account_id=msg, operation="voice_synthesis_1k_chars",
                                   quantity=rng.randint(300, 1200), attribution=call, occurred_at=when(),
                                   idempotency_key=f"tts:{h}:{i}"))
        return out

    def hourly_charges(self, h: int, touched: set[str]) -> list[c.Command]:
        """The hour each running deployment starts now (the scheduler's job), keyed per hour."""
        return [c.ChargeDeploymentHour(account_id=d.account, deployment_id=dep, hour_index=d.next_hour,
                                       idempotency_key=f"deployment:{dep}:hour:{d.next_hour}")
                for dep, d in sorted(self.deployments.items()) if d.running and dep not in touched]
