"""``credits stripe-standin``: a local Stripe (API, hosted pages, signed webhooks) until Ctrl-C."""

from __future__ import annotations

from typing import Annotated

import typer


def stripe_standin(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: any free one).")] = 12111,
    webhook_url: Annotated[list[str] | None, typer.Option(
        help="Where to POST signed events (repeat for several endpoints).")] = None,
    webhook_secret: Annotated[str | None, typer.Option(
        help="The endpoints' signing secret (whsec_...); a new one is made and printed if not given.")] = None,
    hold: Annotated[bool, typer.Option(
        help="Hold events until POST /_standin/events/{id}/deliver instead of sending them at once.")] = False,
    retry_delay: Annotated[list[float] | None, typer.Option(  # float-ok: a duration
        help="Seconds before sending an event again to an endpoint that did not answer 2xx (repeat: "
             "one retry each).")] = None,
) -> None:
    """Run a Stripe stand-in: point the stripe SDK at the printed base URL (STRIPE_API_BASE) with
    any sk_test_ key, and verify its webhooks with the printed secret (STRIPE_WEBHOOK_SECRET).

    Controls (complete a checkout, renew a subscription, refund, dispute, deliver again...) are
    under /_standin; see the ledger.testing.stripe package documentation.
    """
    import signal
    import sys

    from ledger.testing.stripe import StripeStandIn

    standin = StripeStandIn(webhook_url or [], webhook_secret, host=host, port=port, auto_deliver=not hold,
                            retry_delays=retry_delay or ())
    try:
        sock = standin.bind()
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Stripe stand-in on {standin.base_url}")
    typer.echo(f"STRIPE_API_BASE={standin.base_url}")
    typer.echo(f"STRIPE_API_KEY={standin.api_key}")
    typer.echo(f"STRIPE_WEBHOOK_SECRET={standin.webhook_secret}")
    for url in standin.deliverer.urls:
        typer.echo(f"webhooks -> {url}")
    # uvicorn stops on the signal and then re-raises it: exit 0 instead of dying by it.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: sys.exit(0))
    standin.deliverer.start()
    try:
        standin.server(sock).run(sockets=[sock])  # until SIGINT/SIGTERM
    finally:
        standin.deliverer.stop()
