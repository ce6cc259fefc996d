"""Money in and out through Stripe, one job per module.

- ``gateway``: the Stripe SDK's client built from the settings; its failures as the ledger's errors.
- ``checkout``: price a pack or a custom amount from the rate card, open a Checkout Session.
- ``stripe_events``: Stripe's webhook events -> ledger commands (pure; the exactly-once keys).
- ``webhook``: verify a delivery and carry out what its event asks.
- ``refunds``: an operator's refund: decided, refunded through Stripe, recorded.
- ``invoices``: what an account paid (from its events) and its billing portal.
"""
