"""Per-lead locks on PostgreSQL (repo.lock_leads): every key of the call is locked for the
rest of the transaction, in one round trip, and released at its end."""

from __future__ import annotations

from sqlalchemy import Connection, event, text

from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store


def _free(store: Store, key: str) -> bool:
    """Whether another session could take the key's lock now (it gives it back at once)."""
    with store.begin() as other:
        return bool(
            other.execute(
                text("SELECT pg_try_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key}
            ).scalar_one()
        )


def _statements(conn: Connection, keys: list[str]) -> int:
    """How many statements `lock_leads` sends for these keys."""
    sent: list[object] = []

    def count(*args: object) -> None:
        sent.append(args[2])

    event.listen(conn, "before_cursor_execute", count)
    repo.lock_leads(conn, keys)
    event.remove(conn, "before_cursor_execute", count)
    return len(sent)


def test_every_key_is_locked_until_the_transaction_ends(pg_url: str) -> None:
    store = Store(pg_url)
    try:
        keys = [f"lead-{i:03d}" for i in range(300, 0, -1)]
        with store.begin() as conn:
            assert _statements(conn, [*keys, keys[0]]) == 1  # one round trip, not one per key
            assert not _free(store, "lead-001") and not _free(store, "lead-300")
        assert _free(store, "lead-001") and _free(store, "lead-300")  # released at commit
        with store.begin() as conn:
            assert _statements(conn, []) == 0  # nothing to lock: nothing sent
    finally:
        store.dispose()
