"""Alembic migrations, applied by `leadbridge db upgrade` and at start."""
