"""The ``credits`` command line (Typer + Rich): parse, call the ledger, render. See ``app.py``."""
