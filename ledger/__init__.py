"""Credit Ledger: an event-sourced credits ledger for usage-based products."""
