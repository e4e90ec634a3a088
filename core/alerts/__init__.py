"""Alerts: a notification outbox in the store, sent to people through apprise channels."""
