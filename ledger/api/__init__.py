"""The HTTP API (FastAPI): parse, call the ledger, render. ``create_app`` builds it."""
