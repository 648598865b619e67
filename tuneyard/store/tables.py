"""The tables, as SQLAlchemy 2.0 typed declarative classes.

Changing a table means a new Alembic revision in migrations/versions (the tests compare the two).
Times are stored as naive UTC and read back as aware UTC on every dialect (UTCDateTime), so code
never mixes naive and aware datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tuneyard.store.ids import new_uuid, utcnow


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in Python, naive UTC in the database (SQLite has no time zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


# Stable constraint names, so migrations can refer to them on every dialect.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}

ID = String(40)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
        str: String(255),
    }


def _uuid() -> Mapped[str]:
    """The object's UUID beside its native id, for the dialects whose documents say UUID (tuneyard.store.uuids).

    Given at every insert by this default. Nullable in the database only because migration 0009 added
    it to tables with rows: SQLite cannot add a NOT NULL column without a constant default, and
    rebuilding the tables would run their ON DELETE CASCADEs. The migration backfilled every row.
    """
    return mapped_column(String(36), default=new_uuid, nullable=True, unique=True, index=True)


def _org_fk() -> Mapped[str]:
    return mapped_column(ID, ForeignKey("organizations.id", ondelete="CASCADE"), index=True)


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("org_id", "name"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = _org_fk()
    name: Mapped[str]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """A user of one organization. Only the key's sha256 is kept; `prefix` is shown in listings."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = _org_fk()
    name: Mapped[str]
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class File(Base):
    __tablename__ = "files"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    uuid: Mapped[str] = _uuid()
    org_id: Mapped[str] = _org_fk()
    filename: Mapped[str]
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(String(32), default="fine-tune")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("org_id", "name"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    uuid: Mapped[str] = _uuid()
    org_id: Mapped[str] = _org_fk()
    name: Mapped[str]
    file_ids: Mapped[list[Any]]
    format: Mapped[str] = mapped_column(String(32), default="auto")
    status: Mapped[str] = mapped_column(String(16), default="validating")  # validating|ready|invalid
    examples: Mapped[int | None]
    tokens_est: Mapped[int | None] = mapped_column(BigInteger)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    errors: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class BaseModelEntry(Base):
    """A registered base model; org_id None means every organization sees it."""

    __tablename__ = "base_models"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    uuid: Mapped[str] = _uuid()
    org_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    source_kind: Mapped[str] = mapped_column(String(16))  # builtin | local | gguf | hub
    source: Mapped[str] = mapped_column(Text)  # a path, or a hub id
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # Same user + same idempotency key = same job; NULL keys never collide.
        UniqueConstraint("user_key_id", "idempotency_key"),
        Index("ix_jobs_queue", "status", "created_at", "id"),
        Index("ix_jobs_org_created", "org_id", "created_at", "id"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    uuid: Mapped[str] = _uuid()
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id", ondelete="CASCADE"))
    project_id: Mapped[str | None] = mapped_column(ID, ForeignKey("projects.id", ondelete="SET NULL"))
    user_key_id: Mapped[str | None] = mapped_column(ID, ForeignKey("api_keys.id", ondelete="SET NULL"))
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None]
    status: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]]  # as submitted
    config: Mapped[dict[str, Any]]  # resolved, what the runner gets
    attempt: Mapped[int] = mapped_column(default=0)  # the fencing token; +1 on every claim
    retries: Mapped[int] = mapped_column(default=0)  # lease expiries counted against max_retries
    max_retries: Mapped[int] = mapped_column(default=3)
    worker_id: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]
    last_checkpoint_step: Mapped[int | None]
    resume_from: Mapped[str | None] = mapped_column(ID)  # a checkpoint id
    stop_requested: Mapped[bool] = mapped_column(default=False)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[dict[str, Any] | None]
    result: Mapped[dict[str, Any] | None]
    output_model_id: Mapped[str | None] = mapped_column(ID)
    # Each dialect's own fields of the job, by dialect name (tuneyard.store.labels).
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    idempotency_key: Mapped[str | None]
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # Per-job counters handed out by guarded UPDATEs, so seq numbers never race.
    event_seq: Mapped[int] = mapped_column(default=0)
    log_seq: Mapped[int] = mapped_column(default=0)
    # Bumped by every write that changes what a read of the job, its metrics or its logs shows
    # (tuneyard.store.changes): those reads' ETag, so an unchanged job answers 304 from this row alone.
    revision: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    # Bytes of the run's telemetry.jsonl whose records are stored, committed with those records;
    # the next attempt reads on from here. NULL on jobs from before it was kept (read from the end).
    telemetry_offset: Mapped[int | None] = mapped_column(BigInteger, default=0)
    # The attempt whose runner writes the telemetry past telemetry_offset: what a later attempt
    # finds there unstored is that attempt's. NULL until an attempt is about to start its runner.
    telemetry_attempt: Mapped[int | None]
    # Peak bytes its estimate says the job needs (tuneyard.planning.memory), set at submission; a
    # worker claims it only with at least this much memory. NULL: nothing estimated, any worker.
    memory_estimate_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # The device the job must train on (cpu | cuda, tuneyard.planning.memory.Device), from a request
    # that names one (003's `backend`); a worker claims it only if it trains on that device. NULL: any.
    required_device: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class JobAlias(Base):
    """A dialect's id for a job (a vendor's UUID, a name-shaped id): one job per org, dialect and id."""

    __tablename__ = "job_aliases"
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    dialect: Mapped[str] = mapped_column(String(32), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    job_id: Mapped[str] = mapped_column(ID, ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def _job_fk() -> Mapped[str]:
    return mapped_column(ID, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)


class JobEvent(Base):
    __tablename__ = "job_events"
    job_id: Mapped[str] = _job_fk()
    seq: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MetricPoint(Base):
    """One step's values; kind is `train` or `eval`, and (job, kind, step) is unique."""

    __tablename__ = "metric_points"
    job_id: Mapped[str] = _job_fk()
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    step: Mapped[int] = mapped_column(primary_key=True)
    epoch: Mapped[float | None]
    phase: Mapped[str | None] = mapped_column(String(32))
    values: Mapped[dict[str, Any]]
    ts: Mapped[datetime] = mapped_column(default=utcnow)
    attempt: Mapped[int | None]  # whose runner wrote it; NULL on rows from before it was kept


class LogLine(Base):
    __tablename__ = "log_lines"
    job_id: Mapped[str] = _job_fk()
    seq: Mapped[int] = mapped_column(primary_key=True)
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    ts: Mapped[datetime] = mapped_column(default=utcnow)
    attempt: Mapped[int | None]  # whose runner wrote it; NULL on rows from before it was kept


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "step"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    uuid: Mapped[str] = _uuid()
    job_id: Mapped[str] = mapped_column(ID, ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int]
    path: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempt: Mapped[int | None]  # whose runner committed it; NULL on rows from before it was kept


class TrainedModel(Base):
    __tablename__ = "trained_models"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    uuid: Mapped[str] = _uuid()
    org_id: Mapped[str] = _org_fk()
    # The model outlives a deleted job; its lineage stays in base_model and datasets.
    job_id: Mapped[str | None] = mapped_column(ID, ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    base_model: Mapped[str] = mapped_column(Text)
    datasets: Mapped[list[Any]] = mapped_column(default=list)
    kind: Mapped[str] = mapped_column(String(16))  # adapter | full
    path: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelExport(Base):
    """One export of a trained model (store/exports.py holds its statuses and moves)."""

    __tablename__ = "model_exports"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = _org_fk()
    model_id: Mapped[str] = mapped_column(ID, ForeignKey("trained_models.id", ondelete="CASCADE"), index=True)
    format: Mapped[str] = mapped_column(String(32))
    quantization: Mapped[str | None] = mapped_column(String(32))
    variant: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    path: Mapped[str] = mapped_column(Text)  # where the sealed export folder lands
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # files, sizes, sha256, verification
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # error_type, message, details (figures)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Worker(Base):
    __tablename__ = "workers"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str]
    pid: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), default="running")  # running | draining | stopped
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    # What it declared at registration (tuneyard.scheduler.capacity): the memory its jobs may use
    # and the device it trains on. NULL on a worker from before admission knew memory: any job.
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    device: Mapped[str | None] = mapped_column(String(8))


class RateLimitSubject(Base):
    """One row per limited subject, locked while its hits are counted (see ratelimit.py)."""

    __tablename__ = "rate_limit_subjects"
    subject: Mapped[str] = mapped_column(String(128), primary_key=True)


class RateLimitHit(Base):
    __tablename__ = "rate_limit_hits"
    __table_args__ = (Index("ix_rate_limit_hits_subject_ts", "subject", "ts"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(128))
    ts: Mapped[datetime]
