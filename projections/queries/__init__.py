"""Reads of the read models: pages newest first (``limit``/``offset`` and a stable cursor) with the
freshness of what they read, for the API, the CLI and anything else that shows them."""
