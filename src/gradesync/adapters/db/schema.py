"""The database schema as SQLAlchemy Core tables.

Every table carries `tenant_id`: isolation is a column in every key, not a convention.
Alembic migrations in `migrations/versions/` create these tables; `tests` check the two agree.
Core (not the ORM) keeps the hot paths (ingest, ledger updates) cheap and explicit.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

ID = 255  # source ids are strings; generous but bounded


def _ts(name: str, nullable: bool = True) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


tenants = Table(
    "tenants",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(ID), nullable=False),
    Column("policy", JSON, nullable=False, default=dict),
    _ts("created_at", nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(ID), nullable=False),
    Column("name", String(ID), nullable=False),
    Column("key_hash", String(128), nullable=False, unique=True),
    Column("scopes", JSON, nullable=False),
    _ts("created_at", nullable=False),
    _ts("revoked_at"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
)

courses = Table(
    "courses",
    metadata,
    Column("tenant_id", String(ID), primary_key=True),
    Column("id", String(ID), primary_key=True),
    Column("title", String(1024), nullable=False),
    Column("time_zone", String(64), nullable=False, default="UTC"),
    _ts("starts_at"),
    _ts("ends_at"),
    Column("policy", JSON, nullable=False, default=dict),
    Column("sync_enabled", Boolean, nullable=False, default=True),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
)

activities = Table(
    "activities",
    metadata,
    Column("tenant_id", String(ID), primary_key=True),
    Column("id", String(ID), primary_key=True),
    Column("course_id", String(ID), nullable=False),
    Column("title", String(1024), nullable=False),
    Column("points_possible", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    _ts("due_at"),
    Column("category", String(ID)),
    Column("published", Boolean, nullable=False, default=True),
    Column("sync_enabled", Boolean, nullable=False, default=True),
    Column("assigned", Boolean, nullable=False, default=True),
    Column("policy", JSON, nullable=False, default=dict),
    ForeignKeyConstraint(
        ["tenant_id", "course_id"], ["courses.tenant_id", "courses.id"], ondelete="CASCADE"
    ),
    Index("ix_activities_course", "tenant_id", "course_id"),
)

people = Table(
    "people",
    metadata,
    Column("tenant_id", String(ID), primary_key=True),
    Column("id", String(ID), primary_key=True),
    Column("name", String(1024), nullable=False, default=""),
    Column("email", String(ID)),
    Column("sis_id", String(ID)),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
)
# Finding a person by email compares lower(email), so the index holds that. Only people
# with an email are in it: the foreign-key check on people (tenant, id) does not say
# `email IS NOT NULL`, so PostgreSQL cannot take this index for it and takes the primary
# key (an index led by the tenant alone it took, filtering every person of the tenant).
Index(
    "ix_people_email",
    people.c.tenant_id,
    func.lower(people.c.email),
    postgresql_where=people.c.email.is_not(None),
    sqlite_where=people.c.email.is_not(None),
)

enrollments = Table(
    "enrollments",
    metadata,
    Column("tenant_id", String(ID), primary_key=True),
    Column("course_id", String(ID), primary_key=True),
    Column("person_id", String(ID), primary_key=True),
    Column("role", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("section_id", String(ID)),
    Column("status_source", String(32)),
    _ts("status_at"),
    ForeignKeyConstraint(
        ["tenant_id", "course_id"], ["courses.tenant_id", "courses.id"], ondelete="CASCADE"
    ),
    ForeignKeyConstraint(
        ["tenant_id", "person_id"], ["people.tenant_id", "people.id"], ondelete="CASCADE"
    ),
)

due_date_overrides = Table(
    "due_date_overrides",
    metadata,
    Column("tenant_id", String(ID), primary_key=True),
    Column("activity_id", String(ID), primary_key=True),
    Column("person_id", String(ID), primary_key=True),
    _ts("due_at", nullable=False),
    ForeignKeyConstraint(
        ["tenant_id", "activity_id"], ["activities.tenant_id", "activities.id"], ondelete="CASCADE"
    ),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(ID), nullable=False),
    Column("source_event_id", String(ID), nullable=False),
    Column("activity_id", String(ID), nullable=False),
    Column("person_id", String(ID), nullable=False),
    Column("score_given", Float),
    Column("score_maximum", Float),
    Column("completed", Boolean, nullable=False, default=True),
    _ts("completed_at", nullable=False),
    _ts("started_at"),
    Column("comment", Text),
    Column("late", Boolean, nullable=False, default=False),
    Column("excused", Boolean, nullable=False, default=False),
    _ts("recorded_at", nullable=False),
    UniqueConstraint("tenant_id", "source_event_id", name="uq_attempts_event"),
    # No foreign keys to activities and people: ingest reads both in the transaction that
    # inserts the attempts and refuses unknown ones, and neither is ever deleted. The
    # per-row checks cost more than half of a batch's insert on PostgreSQL (migration 0024).
    Index("ix_attempts_key", "tenant_id", "activity_id", "person_id"),
)

destinations = Table(
    "destinations",
    metadata,
    Column("tenant_id", String(ID), primary_key=True),
    Column("id", String(ID), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("name", String(ID), nullable=False),
    Column("profile", String(64), nullable=False, default="generic"),
    Column("config", JSON, nullable=False, default=dict),
    Column("secret_ciphertext", Text),  # Fernet token of the JSON secret; never plaintext
    Column("enabled", Boolean, nullable=False, default=True),
    _ts("paused_until"),
    Column("pause_reason", Text),
    # `domain.pauses.PauseCause` of the pause the row holds (NULL when it holds none)
    Column("pause_cause", String(32)),
    _ts("created_at", nullable=False),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
)

course_links = Table(
    "course_links",
    metadata,
    Column("tenant_id", String(ID), primary_key=True),
    Column("destination_id", String(ID), primary_key=True),
    Column("course_id", String(ID), primary_key=True),
    Column("remote_id", String(2048), nullable=False),
    Column("data", JSON, nullable=False, default=dict),
    ForeignKeyConstraint(
        ["tenant_id", "destination_id"],
        ["destinations.tenant_id", "destinations.id"],
        ondelete="CASCADE",
    ),
)

item_links = Table(
    "item_links",
    metadata,
    Column("tenant_id", String(ID), primary_key=True),
    Column("destination_id", String(ID), primary_key=True),
    Column("activity_id", String(ID), primary_key=True),
    Column("remote_id", String(2048), nullable=False),
    Column("details_hash", String(128)),
    Column("data", JSON, nullable=False, default=dict),
    ForeignKeyConstraint(
        ["tenant_id", "destination_id"],
        ["destinations.tenant_id", "destinations.id"],
        ondelete="CASCADE",
    ),
)

person_links = Table(
    "person_links",
    metadata,
    Column("tenant_id", String(ID), primary_key=True),
    Column("destination_id", String(ID), primary_key=True),
    Column("person_id", String(ID), primary_key=True),
    # "" when the link holds for every course (LTI sub); a course id for per-course links
    Column("course_id", String(ID), primary_key=True, default=""),
    Column("remote_id", String(2048), nullable=False),
    Column("data", JSON, nullable=False, default=dict),
    ForeignKeyConstraint(
        ["tenant_id", "destination_id"],
        ["destinations.tenant_id", "destinations.id"],
        ondelete="CASCADE",
    ),
)

# On PostgreSQL its pages keep 30 % room for a claim's lease (fillfactor: migration 0017).
ledger = Table(
    "ledger",
    metadata,
    Column("tenant_id", String(ID), primary_key=True),
    Column("destination_id", String(ID), primary_key=True),
    Column("activity_id", String(ID), primary_key=True),
    Column("person_id", String(ID), primary_key=True),
    Column("course_id", String(ID), nullable=False),
    Column("state", String(16), nullable=False),
    Column("desired_hash", String(64)),
    Column("desired", JSON),
    Column("delivered_hash", String(64)),
    _ts("delivered_at"),
    _ts("last_timestamp"),
    Column("tries", Integer, nullable=False, default=0),
    _ts("next_attempt_at"),
    Column("reason_code", String(64)),
    Column("reason_text", Text),
    Column("remote_status", Integer),
    Column("remote_message", Text),
    _ts("updated_at", nullable=False),
    # when the value being sent became pending, kept through failed sends (delivery latency)
    _ts("pending_since"),
    # 0: a live grade (auto sync); 1: made pending by a run (Sync now, resync, remaster,
    # a schedule). Live grades are claimed first, so a remaster never delays them.
    Column("priority", SmallInteger, nullable=False, default=0, server_default="0"),
    ForeignKeyConstraint(
        ["tenant_id", "destination_id"],
        ["destinations.tenant_id", "destinations.id"],
        ondelete="CASCADE",
    ),
    # The sweep looks for due work by state and time; scope queries go by course.
    # in claim order (`LedgerRepo.claimable`), tie-breakers included: a claim reads only
    # the rows it returns, however many share a time
    Index("ix_ledger_due", "state", "next_attempt_at", "activity_id", "person_id"),
    Index("ix_ledger_course", "tenant_id", "destination_id", "course_id", "state"),
)

# Keys whose facts changed and whose desired state must be recomputed. Written in the same
# transaction as the fact, so a crash between ingest and compute loses nothing; many changes
# to one key collapse into one row (the first step of coalescing). On PostgreSQL its pages
# keep half their room for a key marked again (fillfactor: migration 0021): no index holds
# what a new mark changes, so the row is rewritten in its page (a HOT update).
dirty_keys = Table(
    "dirty_keys",
    metadata,
    Column("tenant_id", String(ID), primary_key=True),
    Column("activity_id", String(ID), primary_key=True),
    Column("person_id", String(ID), primary_key=True),
    Column("course_id", String(ID), nullable=False),
    # when the key was last marked (what `take(marked_at=...)` compares)...
    _ts("marked_at", nullable=False),
    # ...and first marked: how long its grade has waited to be worked out, which marking it
    # again (a new fact, a retry of a key that cannot be set aside) does not reset
    _ts("waiting_since", nullable=False),
    # the one destination the key is recomputed for (a change that concerns it alone), or
    # NULL: every destination of the course
    Column("destination_id", String(ID), nullable=True),
    # its place in the claims' queue: its first mark, which a new mark leaves; only a key
    # that cannot even be set aside goes to the back (`mark_many(behind=True)`). Claims read
    # the queue in order from its index, not sorted whole (migration 0026)
    _ts("queued_at", nullable=False),
    Index("ix_dirty_keys_queue", "queued_at"),
)

# When time alone changes a key's result (a past-due zero falls due), the key is marked
# dirty again at that time; a timer survives restarts and any worker may fire it.
due_timers = Table(
    "due_timers",
    metadata,
    Column("tenant_id", String(ID), primary_key=True),
    Column("activity_id", String(ID), primary_key=True),
    Column("person_id", String(ID), primary_key=True),
    Column("course_id", String(ID), nullable=False),
    _ts("due_at", nullable=False),
    # the one destination the key is recomputed for when the timer fires, as in dirty_keys
    # (NULL: every destination of the course)
    Column("destination_id", String(ID), nullable=True),
    Index("ix_due_timers_due", "due_at"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(ID), nullable=False),
    Column("destination_id", String(ID), nullable=False),
    Column("activity_id", String(ID), nullable=False),
    Column("person_id", String(ID), nullable=False),
    Column("run_id", String(64)),
    _ts("sent_at", nullable=False),
    Column("sent_hash", String(64)),
    Column("payload", JSON),
    Column("outcome", String(16), nullable=False),  # delivered | retrying | rejected
    Column("remote_status", Integer),
    Column("remote_message", Text),
    Column("latency_ms", Float),
    # LTI 1.1: the activity's points a fraction was computed on, or read back on
    # (`domain.held.logs_scale`); NULL for other lines (a SIS's held score reads on its line
    # item's maximum, on the item link) and for lines logged before 0025
    Column("score_scale", Float),
    Index("ix_deliveries_key", "tenant_id", "destination_id", "activity_id", "person_id"),
    Index("ix_deliveries_time", "tenant_id", "sent_at"),
)

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(ID), nullable=False),
    Column("scope_key", String(2048), nullable=False),
    Column("destination_id", String(ID)),
    Column("course_id", String(ID)),
    Column("activity_ids", JSON, nullable=False, default=list),
    Column("trigger", String(16), nullable=False),
    Column("actor", String(ID), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("outcome", String(16)),
    Column("counts", JSON, nullable=False, default=dict),
    Column("stages", JSON, nullable=False, default=list),  # [{stage, at}] as they happened
    Column("message", Text),
    Column("schedule_id", String(64)),
    # the destination's name when the run was asked (NULL: every destination, or asked
    # before 0029 of a destination already deleted): kept once the destination is deleted
    Column("destination_name", String(ID)),
    Column("worker_id", String(ID)),
    _ts("heartbeat_at"),
    _ts("created_at", nullable=False),
    _ts("started_at"),
    _ts("finished_at"),
    Index("ix_sync_runs_tenant", "tenant_id", "created_at"),
    Index("ix_sync_runs_scope", "scope_key", "stage"),
)

# each deletion of a destination, with the name it had: its runs and delivery log outlive it,
# and a destination made again under its id is another one (`domain.destination_names`)
deleted_destinations = Table(
    "deleted_destinations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(ID), nullable=False),
    Column("destination_id", String(ID), nullable=False),
    Column("name", String(ID), nullable=False),
    _ts("deleted_at", nullable=False),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
    Index("ix_deleted_destinations_id", "tenant_id", "destination_id"),
)

# the delivery workers alive (each writes its own row about once a second while it sends),
# so each takes its share of a destination's limits
delivery_workers = Table(
    "delivery_workers",
    metadata,
    Column("worker_id", String(ID), primary_key=True),
    _ts("seen_at", nullable=False),
)

schedules = Table(
    "schedules",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(ID), nullable=False),
    Column("destination_id", String(ID)),
    Column("course_id", String(ID)),
    Column("activity_ids", JSON, nullable=False, default=list),
    Column("kind", String(16), nullable=False),
    Column("spec", String(255), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("posted_by", String(ID), nullable=False),
    Column("trigger", String(16), nullable=False),
    _ts("first_run_at"),
    _ts("next_run_at"),
    _ts("last_run_at"),
    _ts("paused_at"),
    _ts("created_at", nullable=False),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
    Index("ix_schedules_due", "paused_at", "next_run_at"),
)

# A schedule's log: created/edited/paused/resumed/deleted, and every firing with the run it
# started or joined. Kept after the schedule is deleted (no foreign key to it).
schedule_events = Table(
    "schedule_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(ID), nullable=False),
    Column("schedule_id", String(64), nullable=False),
    Column("action", String(16), nullable=False),
    Column("actor", String(ID), nullable=False),
    _ts("at", nullable=False),
    Column("run_id", String(64)),
    Column("joined", Boolean, nullable=False, default=False),
    _ts("slot_at"),
    Column("missed", Integer, nullable=False, default=0),
    Column("message", Text),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
    Index("ix_schedule_events_schedule", "tenant_id", "schedule_id", "at"),
)

# LTI 1.3 tool keys: the private key is encrypted; retired keys stay in the JWKS for overlap.
# Each key has its own generation: a process that makes a key names the generation it
# follows, so processes making the first key at once make one. A key is published when it is
# made and signs from `signs_from` (after the key set's caches hold it); a revoked key is
# no longer published.
tool_keys = Table(
    "tool_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("generation", Integer, nullable=False),
    Column("private_ciphertext", Text, nullable=False),
    Column("public_jwk", JSON, nullable=False),
    _ts("created_at", nullable=False),
    _ts("retired_at"),
    # a default for a key made by a process that predates the column: it signs at once
    Column(
        "signs_from",
        DateTime(timezone=True),
        nullable=False,
        server_default=text("CURRENT_TIMESTAMP"),
    ),
    _ts("revoked_at"),  # withdrawn from the key set at once (a forced rotation)
    Index("uq_tool_keys_generation", "generation", unique=True),
)

# One-time values (OIDC nonces/state, JWT ids) with an expiry, for replay protection.
nonces = Table(
    "nonces",
    metadata,
    Column("value", String(255), primary_key=True),
    Column("purpose", String(32), nullable=False),
    _ts("expires_at", nullable=False),
)

# What an LTI launch told us: who launched, from which context and link, with which roles and
# service endpoints. Diagnostics read it ("never launched from this course").
launches = Table(
    "launches",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(ID), nullable=False),
    Column("destination_id", String(ID), nullable=False),
    Column("course_id", String(ID), nullable=False),
    Column("person_id", String(ID), nullable=False),
    Column("resource_link_id", String(ID)),
    Column("roles", JSON, nullable=False, default=list),
    Column("claims", JSON, nullable=False, default=dict),
    _ts("launched_at", nullable=False),
    Index("ix_launches_person", "tenant_id", "person_id", "course_id"),
)

# Local console accounts. Passwords are stored as scrypt hashes; instructors see the courses
# listed in `course_ids`, admins every course of their tenant.
users = Table(
    "users",
    metadata,
    Column("tenant_id", String(ID), primary_key=True),
    Column("username", String(ID), primary_key=True),
    Column("display_name", String(ID), nullable=False),
    Column("password_hash", String(512), nullable=False),
    Column("role", String(16), nullable=False),
    Column("course_ids", JSON, nullable=False, default=list),
    _ts("created_at", nullable=False),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
)

# Delivery leases (the sync engine): a worker that claims a due ledger row holds it until
# `lease_until`, so two workers never send one key at once; a killed worker's lease expires.
# The claim takes the newest changes first, hence the (state, updated_at) index.
ledger.append_column(Column("lease_owner", String(ID)))
ledger.append_column(Column("lease_until", DateTime(timezone=True)))
Index("ix_ledger_pending", ledger.c.state, ledger.c.priority, ledger.c.updated_at)
# Claims share pending rows between courses: the courses with pending rows of a priority,
# one seek each, and each course's oldest rows.
Index("ix_ledger_fair", ledger.c.state, ledger.c.priority, ledger.c.course_id, ledger.c.updated_at)
# Each destination's soonest retry, one probe each (the delivery loop's wait asks every
# destination it does not leave out, so a paused one's many retrying rows are not read):
# retrying rows alone, few beside the ledger; the query says the same literal.
RETRYING = text("state = 'retrying'")
Index(
    "ix_ledger_retrying",
    ledger.c.tenant_id,
    ledger.c.destination_id,
    ledger.c.next_attempt_at,
    postgresql_where=RETRYING,
    sqlite_where=RETRYING,
)
# The grades set aside as compute_failed, counted at every /metrics scrape: few, so held
# apart (the query says the same literal, or the index cannot be proved to serve it).
COMPUTE_FAILED = text("reason_code = 'compute_failed'")
Index(
    "ix_ledger_compute_failed",
    ledger.c.tenant_id,
    ledger.c.destination_id,
    postgresql_where=COMPUTE_FAILED,
    sqlite_where=COMPUTE_FAILED,
)

# LTI launches refused (bad signature, wrong audience, replayed nonce, unknown deployment, ...)
# and launch claims ignored (an AGS endpoint off the platform's origins), with the reason, so
# support can answer "why did the LMS say the tool failed?". Written outside the launch's
# transaction: a refusal changes nothing else.
lti_rejections = Table(
    "lti_rejections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(ID)),
    Column("destination_id", String(ID)),
    Column("issuer", String(2048)),
    Column("client_id", String(ID)),
    Column("deployment_id", String(ID)),
    Column("code", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("detail", JSON, nullable=False, default=dict),
    _ts("at", nullable=False),
    Index("ix_lti_rejections_tenant", "tenant_id", "at"),
)
