"""The tables. Landing (`raw_leads`) is append-only and kept forever; everything else can be
rebuilt from it. Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC as _UTC
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine


def utc_for_driver(value: datetime | None, dialect_name: str) -> datetime | str | None:
    """A time as the driver stores it: aware UTC; on SQLite fixed-width ISO-8601 text.

    `UtcDateTime` binds through this, and so does the bulk path (core/store/bulk.py), which
    hands rows to the driver itself: one conversion, so both store the same bytes."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    elif value.tzinfo is not _UTC:
        value = value.astimezone(_UTC)
    if dialect_name == "sqlite":
        return value.isoformat(timespec="microseconds")
    return value


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out: `timestamptz` on PostgreSQL; on SQLite (no time zones)
    fixed-width ISO-8601 text, which sorts correctly and converts in C both ways."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(32))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | str | None:
        return utc_for_driver(value, dialect.name)

    def process_result_value(
        self, value: datetime | str | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value)
        return value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)


# Stable constraint names so Alembic migrations are the same on SQLite and PostgreSQL.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
Id = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER keys only
UTC = UtcDateTime()

raw_leads = Table(
    "raw_leads",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(100), nullable=False),
    Column("source_key", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("received_at", UTC, nullable=False),
    Column("occurred_at", UTC),
    Column("status", String(20), nullable=False, default="new"),  # new | processed | quarantined
    Column("lead_key", String(32)),
    # When retention replaced the payload's personal data (core/sync/retention.py).
    Column("redacted_at", UTC),
    UniqueConstraint("source", "source_key", name="uq_raw_leads_source_key"),
)
Index("ix_raw_leads_status_id", raw_leads.c.status, raw_leads.c.id)
Index("ix_raw_leads_received_at", raw_leads.c.received_at)
Index("ix_raw_leads_lead_key", raw_leads.c.lead_key)

contacts = Table(
    "contacts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("created_at", UTC, nullable=False),
)

leads = Table(
    "leads",
    metadata,
    Column("lead_key", String(32), primary_key=True),
    Column("contact_id", Id, ForeignKey("contacts.id")),
    Column("email", String(320)),
    Column("offer_key", String(300), nullable=False),
    Column("stage", String(20), nullable=False),
    Column("score", Integer, nullable=False, default=0),
    Column("do_not_contact", Boolean, nullable=False, default=False),
    # The full Lead model as pydantic JSON: payloads are built from it. Text, not JSON, so
    # pydantic's own (Rust) serializer writes it: the hottest column on the ingest path.
    Column("data", Text, nullable=False),
    Column("first_seen", UTC),
    Column("last_seen", UTC),
    Column("created_at", UTC, nullable=False),
    Column("updated_at", UTC, nullable=False),
    Column("version", Integer, nullable=False, default=1),
    Column("grade", String(2)),  # fit × engagement cell ("A2"), when configured (issue 24)
)
Index("ix_leads_email", leads.c.email)
# Lookups by stage or by offer use the composite indexes below (their leading column).

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("lead_key", String(32), nullable=False),
    Column("kind", String(30), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("at", UTC, nullable=False),
    Column("data", JSON, nullable=False),
    Column("raw_lead_id", Id),
)
Index("ix_events_lead_key_id", events.c.lead_key, events.c.id)
Index("ix_events_kind_at", events.c.kind, events.c.at)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("raw_lead_id", Id, ForeignKey("raw_leads.id"), nullable=False, unique=True),
    # malformed | test | invalid_email | unprocessable
    Column("reason", String(20), nullable=False),
    Column("field", String(100)),
    Column("message", Text, nullable=False),
    Column("fix", Text),
    Column("at", UTC, nullable=False),
)

cursors = Table(
    "cursors",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UTC, nullable=False),
)

offer_aliases = Table(
    "offer_aliases",
    metadata,
    Column("title_key", String(300), primary_key=True),
    Column("offer_id", String(300), nullable=False),
    Column("learned_at", UTC, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("lead_key", String(32), nullable=False),
    Column("target", String(100), nullable=False),
    Column("created_at", UTC, nullable=False),
    Column("next_attempt_at", UTC, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("claimed_by", String(100)),
    Column("claimed_until", UTC),
    UniqueConstraint("lead_key", "target", name="uq_outbox_lead_target"),
)
Index("ix_outbox_target_next", outbox.c.target, outbox.c.next_attempt_at)

target_links = Table(
    "target_links",
    metadata,
    Column("lead_key", String(32), primary_key=True),
    Column("target", String(100), primary_key=True),
    Column("external_id", String(200)),
    Column("pushed_hash", String(64)),
    Column("pushed_stage", String(20)),
    Column("pushed_at", UTC),
    Column("state", String(20), nullable=False, default="active"),  # active | converted
    # When the CRM said it created the record for leadbridge: erasure deletes only these.
    Column("created_at", UTC),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("lead_key", String(32), nullable=False),
    Column("target", String(100), nullable=False),
    Column("error_class", String(30), nullable=False),
    Column("error", Text, nullable=False),
    Column("body", JSON),
    Column("created_at", UTC, nullable=False),
    Column("resolved_at", UTC),
    Column("resolution", String(20)),  # replayed | discarded
)
Index("ix_dead_letters_open", dead_letters.c.target, dead_letters.c.resolved_at)

# Each running `leadbridge run` process (a replica), its heartbeat and the jobs it has in
# hand: what `leadbridge status` shows, and how a dead replica is told from a live one.
replicas = Table(
    "replicas",
    metadata,
    Column("name", String(200), primary_key=True),  # host:pid
    Column("engine", String(20), nullable=False),
    Column("started_at", UTC, nullable=False),
    Column("heartbeat_at", UTC, nullable=False),
    Column("stopped_at", UTC),
    Column("doing", JSON, nullable=False),  # job ids in hand, e.g. ["deliver:sales"]
)

# One row per job run (ingest:<source>, process, deliver:<target>, pull:<target>): who ran
# it, why (its period for a periodic run), when, and how it ended. Kept a week.
job_runs = Table(
    "job_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("job", String(200), nullable=False),
    Column("replica", String(200), nullable=False),
    Column("trigger", String(20), nullable=False),  # periodic | wake | retry
    Column("period", BigInteger),  # the period's start (epoch seconds) of a periodic run
    Column("started_at", UTC, nullable=False),
    Column("finished_at", UTC),
    Column("outcome", String(20)),  # ok | error; none while running or if the replica died
)
Index("ix_job_runs_job_started", job_runs.c.job, job_runs.c.started_at)

# --- alerts (issue 18): the notification outbox and each channel's state ---------------------

# One row per (alert, channel): the alert is queued in the transaction of the fact it reports
# (a CRM's confirmation, a dead letter), once — `dedupe_key` names the fact, e.g.
# hot_lead:<lead>:<stage> — and each channel's copy is sent, retried and marked on its own.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("channel", String(100), nullable=False),
    Column("event", String(30), nullable=False),
    Column("dedupe_key", String(300), nullable=False),
    Column("data", JSON, nullable=False),  # what the message says, minus record links
    Column("created_at", UTC, nullable=False),
    Column("next_attempt_at", UTC, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("claimed_by", String(100)),
    Column("claimed_until", UTC),
    Column("state", String(20), nullable=False, default="pending"),  # pending | sent | dropped
    Column("sent_at", UTC),
    Column("grouped", Boolean, nullable=False, default=False),  # sent inside a summary
    UniqueConstraint("dedupe_key", "channel", name="uq_alerts_dedupe_channel"),
)
Index("ix_alerts_channel_due", alerts.c.channel, alerts.c.state, alerts.c.next_attempt_at)

# Each channel's health and its grouping window: `status` shows the last success and failure.
alert_channels = Table(
    "alert_channels",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("last_success_at", UTC),
    Column("last_failure_at", UTC),
    Column("last_error", Text),
    Column("failures", Integer, nullable=False, default=0),  # in a row; 0 after a success
    Column("retry_at", UTC),  # a failing channel's back-off: nothing is sent before it
    Column("window_start", UTC),
    Column("window_sent", Integer, nullable=False, default=0),  # messages sent in the window
)

# --- scoring (issue 24): fit × engagement ------------------------------------------------------
# `leads list --grade`, the funnel by grade and the daily rescore select leads by grade.
Index("ix_leads_grade", leads.c.grade)

# --- people and companies (issue 16): accounts and the CRM records of contacts/accounts ---------
# The person's and company's records a lead hangs off in each CRM (a Dataverse contact and
# account), beside the lead's own in target_links: `leads show` lists all three per CRM.
record_links = Table(
    "record_links",
    metadata,
    Column("lead_key", String(32), primary_key=True),
    Column("target", String(100), primary_key=True),
    Column("kind", String(20), primary_key=True),  # contact | account
    Column("external_id", String(200), nullable=False),
    Column("linked_at", UTC, nullable=False),
    # When the CRM said it created the record for leadbridge (set once): erasure may delete
    # only these, never a contact or account someone else made.
    Column("created_at", UTC),
)

# --- privacy (issue 17): the suppression list and the erasures asked for --------------------

# A forgotten person's keyed hash (core/domain/suppression.py): a new raw lead with the same
# address is quarantined `erased`, never a lead again. No address is kept.
suppressions = Table(
    "suppressions",
    metadata,
    Column("person_hash", String(64), primary_key=True),
    Column("created_at", UTC, nullable=False),
)

# One `leads forget` and what it still has to do in each CRM (resumable): the plan holds the
# CRMs' record ids and each one's state, never the person's data.
erasures = Table(
    "erasures",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("person_hash", String(64), nullable=False),
    Column("requested_at", UTC, nullable=False),
    Column("requested_by", String(100), nullable=False),
    Column("finished_at", UTC),
    Column("removed", JSON, nullable=False),  # what left the store: counts per table
    Column("plan", JSON, nullable=False),  # {target: [{kind, external_id, state, error}]}
)
Index("ix_erasures_person_hash", erasures.c.person_hash)
Index("ix_erasures_open", erasures.c.finished_at)

# --- the operator console (issue 19): its users, its signing key, its audit log -------------

# A person who may sign in to /console/; the password only as an argon2 hash.
console_users = Table(
    "console_users",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("role", String(20), nullable=False),  # viewer | operator
    Column("password_hash", String(200), nullable=False),
    Column("created_at", UTC, nullable=False),
)

# The key session cookies are signed with: in the store, so every replica accepts a cookie
# any of them made, and a restart does not sign everyone out.
console_keys = Table(
    "console_keys",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("created_at", UTC, nullable=False),
)

# Every change made from the console (and every sign-in): who, what, when.
console_audit = Table(
    "console_audit",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UTC, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("action", String(50), nullable=False),
    Column("detail", JSON, nullable=False),
)
Index("ix_console_audit_at", console_audit.c.at)
# the console's lead search lists the newest of a stage or an offer: read in index order
Index("ix_leads_stage_last_seen", leads.c.stage, leads.c.last_seen)
Index("ix_leads_offer_last_seen", leads.c.offer_key, leads.c.last_seen)
