"""``credits demo``: a month of three seed products on a simulated clock, then ``verify``.

Three accounts, one per seed product: an AI platform billing tokens (gpt-4o, claude-sonnet-4,
claude-haiku, attributed to agents, members and flows, under a monthly budget), a GPU cloud
billing deployment hours (gpu-s and gpu-m deployments charged at the start of every hour, one
paused and resumed, one stopped, plus reserved-and-settled H100 training runs) and a messaging
product (email, SMS, voice minutes, speech synthesis). Purchases with fake Stripe ids, a coupon,
an operator grant, refunds, grant expiry and the next month's allowance happen along the way.

The demo keeps to a database of its own (``CREDITS_DEMO_DATABASE``, default the ledger's
database name + ``_demo``: ``credits_demo`` on the embedded default), dropped
and created afresh on each run on the same server as the ledger's (``DATABASE_URL`` or the
embedded default): a server running on the ledger's database never sees the simulated month
(its relay would raise the month's alerts at wall-clock times), and the served ledger never
holds demo accounts. ``credits balance --demo …`` (and ``history``, ``verify``) look at it after.

The clock starts at the start of the current month (UTC) and moves an hour at a time; each
hour's commands go to the ledger in one ``execute_many`` (one group commit), so a month takes
seconds. Every command carries an idempotency key and every random quantity comes from a
generator seeded with the run id, so the same run id always issues the same commands. The
account ids carry the run id (by default the month).
"""

from __future__ import annotations

import asyncio
import calendar
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import make_url

from ledger import commands as c
from ledger.bootstrap import database_url, open_ledger
from ledger.cli import render
from ledger.clock import HOUR, ManualClock
from ledger.db import recreate_database, with_database
from ledger.errors import InvalidRequest, LedgerError
from ledger.events import (
    AllowanceGranted,
    Attribution,
    CouponApplied,
    CreditsGranted,
    CreditsPurchased,
    CreditsReleased,
    CreditsReserved,
    DebtSettled,
    DeploymentPaused,
    DeploymentResumed,
    DeploymentStarted,
    DeploymentStopped,
    Event,
    GrantExpired,
    RefundIssued,
    UsageMetered,
)
from ledger.money import UCR_PER_CREDIT, format_credits
from ledger.rates import price
from ledger.service import Ledger
from ledger.settings import Settings, load_settings
from ledger.store import Result
from ledger.verify import verify

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
class _Deployment:
    account: str
    next_hour: int = 0
    running: bool = True


@dataclass
class Demo:
    """One simulated month: what was issued, what came back, and what to remember between hours."""

    ledger: Ledger
    clock: ManualClock
    start: datetime
    run_id: str
    out: Console
    rng: random.Random = field(init=False)
    ids: dict[str, str] = field(init=False)
    commands: int = 0
    appended: int = 0
    replayed: int = 0
    refused: int = 0
    deployments: dict[str, _Deployment] = field(default_factory=dict)
    purchases: dict[str, UUID] = field(default_factory=dict)
    reservations: dict[str, UUID] = field(default_factory=dict)
    ai_spent_ucr: int = 0
    alerts: set[int] = field(default_factory=set)
    in_debt: set[str] = field(default_factory=set)
    newsletter_emails: int = 0
    #: While the month runs, notes print above its progress bar.
    progress: Progress | None = None

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

    # ---- what happens when ---------------------------------------------------------------------

    def _purchase(self, product: str, n: int, **kw: object) -> c.RecordPurchase:
        # Fake Stripe ids; the key is derived from the Stripe event, as the webhook handler would.
        evt = f"evt_demo_{self.run_id}_{n}"
        if kw.get("kind") == "pack":  # paid at the card's price, as Stripe checkout charges it
            kw["cents_paid"] = self.ledger.card.pack(str(kw["pack_id"])).price_cents
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

    # ---- running it ------------------------------------------------------------------------------

    async def step(self, h: int) -> None:
        """Set the clock to hour ``h`` and submit everything due then in one group commit."""
        self.clock.set(self.start + h * HOUR)
        if h == self.newsletter_hour:
            # Sized from the balance, whatever the month's usage: what it covers and 1,000 emails more.
            available = (await self.ledger.balance(self.ids[MSG], recent=0)).available_ucr
            email = price(self.ledger.card, "email", {"messages": 1}).amount_ucr
            self.newsletter_emails = max(available, 0) // email + NEWSLETTER_OVER
        first = self.scheduled(h)
        touched = {cmd.deployment_id for cmd in first if isinstance(
            cmd, c.StartDeployment | c.StopDeployment | c.PauseDeployment | c.ResumeDeployment)}
        # Accounts open before anything else touches them; the rest of the hour is one batch,
        # decided in this order (the writer keeps arrival order within a batch).
        for batch in ([cmd for cmd in first if isinstance(cmd, c.OpenAccount)],
                      [cmd for cmd in first if not isinstance(cmd, c.OpenAccount)]
                      + self.hourly_charges(h, touched) + self.usage(h)):
            if not batch:
                continue
            results = await self.ledger.execute_many(batch)
            self.commands += len(batch)
            for cmd, result in zip(batch, results, strict=True):
                self.take(cmd, result)

    def take(self, cmd: c.Command, result: Result) -> None:
        """Count a result and remember what later hours need (grant, reservation, deployment ids)."""
        if isinstance(result, LedgerError):
            self.refused += 1
            self.note(cmd.account_id, f"[red]refused[/] {type(cmd).__name__}: {escape(result.detail)}")
            return
        if result.replayed:
            self.replayed += 1
        else:
            self.appended += len(result.events)
        for event in result.events:
            self.follow(cmd, event)

    def follow(self, cmd: c.Command, e: Event) -> None:
        """Track one event (deployment hours, ids for later steps, budget) and note what matters."""
        a = e.account_id
        match e:
            case UsageMetered():
                if e.deployment_id is not None and e.hour_index is not None:
                    self.deployments[e.deployment_id].next_hour = e.hour_index + 1
                elif e.reservation_id is not None:
                    self.note(a, f"training run settled: {e.quantities.get('minutes')} min,"
                                 f" {format_credits(e.cost_ucr)} credits")
                if e.debt_added_ucr and a not in self.in_debt:
                    self.in_debt.add(a)
                    self.note(a, f"[yellow]usage beyond every grant[/]: {format_credits(e.debt_added_ucr)} credits"
                                 " of debt (metered usage is never refused)")
                if a == self.ids[AI] and e.occurred_at < self.next_month:
                    self.ai_spent_ucr += e.cost_ucr
                    self.budget_alerts()
            case DeploymentStarted():
                self.deployments[e.deployment_id] = _Deployment(a)
                self.note(a, f"deployment {e.deployment_id} started on {e.instance_type}"
                             f" ({format_credits(e.hourly_ucr)} credits/hour)")
            case DeploymentPaused():
                self.deployments[e.deployment_id].running = False
                self.note(a, f"deployment {e.deployment_id} paused: {e.reason}")
            case DeploymentResumed():
                self.deployments[e.deployment_id].running = True
                self.note(a, f"deployment {e.deployment_id} resumed")
            case DeploymentStopped():
                d = self.deployments[e.deployment_id]
                d.running = False
                self.note(a, f"deployment {e.deployment_id} stopped after {d.next_hour} hours")
            case CreditsReserved():
                if cmd.idempotency_key is not None:
                    self.reservations[cmd.idempotency_key] = e.reservation_id
                self.note(a, f"reserved {format_credits(e.held_ucr)} credits for {e.operation}")
            case CreditsReleased():
                self.note(a, f"released {format_credits(e.released_ucr)} unused credits ({e.reason})")
            case CreditsPurchased():
                self.purchases[cmd.idempotency_key or str(e.event_id)] = e.event_id  # its ledger entry id
                what = f"pack {e.pack_id}" if e.pack_id else e.kind
                self.note(a, f"purchase {e.stripe_payment_intent}: {what},"
                             f" {render.money(e.cents_paid, self.ledger.card.currency)}"
                             f" -> {format_credits(e.amount_ucr)} credits")
            case CouponApplied():
                self.note(a, f"coupon {e.code}: {format_credits(e.amount_ucr)} credits"
                             f" until {render.when(e.expires_at)}")
            case CreditsGranted():
                self.note(a, f"{e.source} grant ({e.reason}): {format_credits(e.amount_ucr)} credits"
                             f" until {render.when(e.expires_at)}")
            case RefundIssued():
                capped = " (capped at what was left)" if e.capped else ""
                self.note(a, f"refund {e.direction}: {render.signed(e.amount_ucr)} credits, {e.reason}{capped}")
            case GrantExpired():
                self.note(a, f"{e.source} grant expired: {format_credits(e.expired_ucr)} credits")
            case AllowanceGranted():
                if e.cycle > 0:
                    self.note(a, f"{e.plan} allowance for cycle {e.cycle}: {format_credits(e.amount_ucr)} credits")
            case DebtSettled():
                self.in_debt.discard(a)
                self.note(a, f"debt settled: {format_credits(e.settled_ucr)} credits")

    @property
    def next_month(self) -> datetime:
        """Where the simulated month ends (the next cycle begins)."""
        return self.start + self.hours * HOUR

    def budget_alerts(self) -> None:
        """Say once when the AI account's month spend crosses 80 %, 95 % and 100 % of its budget."""
        for pct, level in ((80, "warning"), (95, "critical"), (100, "limit reached")):
            if pct not in self.alerts and self.ai_spent_ucr * 100 >= BUDGET_UCR * pct:
                self.alerts.add(pct)
                self.note(self.ids[AI], f"[yellow]budget {level}[/]: {format_credits(self.ai_spent_ucr)} of"
                                        f" {format_credits(BUDGET_UCR)} credits spent this month ({pct} %)")

    def note(self, account_id: str, message: str) -> None:
        """One timeline line: simulated time, product, what happened (Rich markup)."""
        product = next((LABELS[p] for p, i in self.ids.items() if i == account_id), account_id)
        line = f"[dim]{render.when(self.clock.now())}[/]  {product:<9}  {message}"
        (self.progress.console if self.progress is not None else self.out).print(line)


async def demo_database_url(settings: Settings) -> tuple[str, str]:
    """The ledger's database URL and the demo's: a database of its own on the same server
    (``CREDITS_DEMO_DATABASE``, default the ledger's database name + ``_demo``)."""
    served = await asyncio.to_thread(database_url, settings)
    served_name = make_url(served).database or "postgres"
    name = settings.demo_database or f"{served_name}_demo"
    if name == served_name:
        raise InvalidRequest(f"credits demo recreates database {name!r} for each run, and that is the ledger's own:"
                             " set CREDITS_DEMO_DATABASE to another name")
    return served, with_database(served, name)


async def run_demo(run_id: str | None = None, settings: Settings | None = None) -> bool:
    """Run the demo in a database of its own (``demo_database_url``), created afresh on each run;
    True when ``verify`` is clean."""
    settings = settings or load_settings()
    out = render.console()
    start = month_start(datetime.now(UTC))
    run_id = run_id or f"{start:%Y%m}"
    clock = ManualClock(start)
    began = time.perf_counter()
    served, url = await demo_database_url(settings)
    name = make_url(url).database
    assert name is not None
    # Its own database: a running server (its relay, scheduler, alerts) never sees the simulated
    # month, and the month never mixes with the served ledger.
    await recreate_database(served, name)
    async with open_ledger(settings, clock=clock, url=url) as ledger:
        demo = Demo(ledger, clock, start, run_id, out)
        out.print(f"[bold]credits demo[/] run {run_id}: {start:%B %Y} hour by hour, rate card {ledger.card.version},"
                  f" in database {name}")
        progress = Progress(TextColumn("[bold]simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("hours"),
                            TimeElapsedColumn(), console=out)
        demo.progress = progress
        with progress:
            task = progress.add_task("month", total=demo.hours + 1)
            for h in range(demo.hours + 1):
                await demo.step(h)
                progress.advance(task)
        demo.progress = None
        simulated = time.perf_counter() - began
        balances = [(LABELS[p], await ledger.balance(demo.ids[p], recent=0)) for p in (AI, GPU, MSG)]
        out.print(render.balances_table(f"balances after {start:%B %Y} (next cycle granted)", balances))
        out.print(f"{demo.commands} commands: {demo.appended} events appended, {demo.replayed} replayed"
                  f" (idempotency keys), {demo.refused} refused; simulated in {simulated:.1f} s")
        report = await verify(ledger.engine, accounts=list(demo.ids.values()))
    for mismatch in report.mismatches:
        out.print(str(mismatch), markup=False)
    out.print(f"look around: credits balance --demo {demo.ids[AI]}", markup=False, highlight=False)
    out.print(report.summary(), markup=False)
    return report.clean
