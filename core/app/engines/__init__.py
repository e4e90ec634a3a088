"""Engines run the job functions: single (APScheduler) and cluster (procrastinate)."""
