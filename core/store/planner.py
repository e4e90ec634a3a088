"""The PostgreSQL planner's picture of a store that a long ingest is growing fast.

PostgreSQL plans each statement from the statistics `ANALYZE` last gathered. A backfill
into a new store starts with none: the planner guesses, and its guess for "leads whose
email is one of these 300" on a table it believes small is a sequential scan. Each batch
then reads the whole leads table to find its people, and the ingest slows as the table
grows. A million-line backfill into PostgreSQL with autovacuum off (this project's CI
server) had landed a third of it after 21 minutes, ~265 leads/s and falling, each batch's
lookup a 0.6 s parallel scan; with this refresh it took 13 minutes, 1,281 leads/s, faster
than at 10,000 (docs/benchmarks.md, "Sixth pass"). Autovacuum analyzes the tables in time
where it is on, but only a minute after they changed at best: long enough on a new store.

So a long ingest analyzes the tables it grows itself, each time they have doubled since
the planner last counted them: nine times over a million rows into a new store (each
reads a sample of at most 30,000 rows a table, PostgreSQL's default), never for a small
poll of a large store. It is a
planner hint, not a write: a lock it would wait for (another replica's ANALYZE, a
migration) is given up after a moment, and a store user that doesn't own the tables gets
PostgreSQL's own warning and a skip. SQLite plans from its indexes without statistics.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from leadbridge.core.store.repo import Store

log = logging.getLogger(__name__)

# The tables an ingest grows: it looks people up in the first three, and delivery reads
# the outbox it fills.
GROWN_TABLES = ("raw_leads", "leads", "contacts", "events", "outbox")
# Never analyze for fewer rows than this: below it a scan is as cheap as an index.
FIRST_AT = 2000
GROWTH = 2  # analyze when the store holds this many times the rows the planner believes
LOCK_WAIT = "2s"  # how long ANALYZE waits for a lock before the refresh is given up


class PlannerStatistics:
    """Told how many raw leads an ingest has landed so far; analyzes the grown tables when
    the store holds `GROWTH` times what the planner believes (at least `FIRST_AT` rows)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.enabled = store.engine.dialect.name == "postgresql"
        self._believed: float | None = None  # raw_leads rows, as the planner counts them
        self._landed_then = 0  # landed by this ingest when `_believed` was read

    def landed(self, count: int) -> None:
        """`count`: raw leads this ingest has landed, in total."""
        if not self.enabled:
            return
        if self._believed is None:
            self._believed = self._planner_rows()
        rows = self._believed + count - self._landed_then
        if rows < max(FIRST_AT, GROWTH * self._believed):
            return
        if self._analyze():
            self._believed, self._landed_then = rows, count

    def _planner_rows(self) -> float:
        """The rows the planner believes raw_leads holds; 0 before any ANALYZE (-1)."""
        with self.store.connect() as conn:
            found = conn.execute(
                text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('raw_leads')")
            ).scalar()
        return max(float(found or 0), 0.0)

    def _analyze(self) -> bool:
        """ANALYZE the grown tables; False (logged) when it couldn't, e.g. a lock held."""
        try:
            with self.store.begin() as conn:
                _analyze_in(conn)
        except DBAPIError as exc:
            log.warning(
                "the planner's statistics were not refreshed; the ingest goes on",
                extra={"error": type(exc.orig).__name__ if exc.orig else type(exc).__name__},
            )
            return False
        log.info("planner statistics refreshed", extra={"tables": list(GROWN_TABLES)})
        return True


def _analyze_in(conn: Connection) -> None:
    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'"))  # a constant, not input
    conn.execute(text("ANALYZE " + ", ".join(GROWN_TABLES)))
