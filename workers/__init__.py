"""Dramatiq actors, the log relay and the scheduler: time and events turned into ledger commands."""
