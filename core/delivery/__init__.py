"""Delivery: the outbox drained into each target, pauses, outcomes."""
