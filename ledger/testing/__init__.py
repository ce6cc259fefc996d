"""Stand-ins for outside services the ledger talks to, for tests, demos and local runs."""
