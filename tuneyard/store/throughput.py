"""What finished jobs measured about their workers: the samples an estimate's time is calibrated on.

Every completed training job's result carries its FLOPs, the seconds its steps took and the host
it ran on (`tuneyard.training.footprint`); read here newest first.
Service-wide on purpose: a worker's speed is a fact about the machine, whoever's job measured it.
"""

from __future__ import annotations

from sqlalchemy import select

from tuneyard.planning.calibration import JobKind, Sample, job_kind
from tuneyard.store.engine import Database
from tuneyard.store.status import JobStatus
from tuneyard.store.tables import Job

SAMPLES_READ = 200
"""The newest completed jobs looked at: enough for every host's recent median, bounded in cost."""


def finished_samples(db: Database, limit: int = SAMPLES_READ) -> list[Sample]:
    """(host, device, FLOPs, seconds, kind) of the newest completed jobs that recorded their compute."""
    stmt = (
        select(Job.result, Job.config)
        .where(Job.status == JobStatus.COMPLETED.value, Job.result.is_not(None))
        .order_by(Job.finished_at.desc(), Job.id.desc())
        .limit(limit)
    )
    samples = []
    with db.read() as session:
        for result, config in session.execute(stmt).all():
            sample = Sample.from_result(result, _kind(config, result))
            if sample is not None:
                samples.append(sample)
    return samples


def _kind(config: object, result: object) -> JobKind | None:
    """The job's kind, its micro-batch tokens as it ran them (`footprint` records them); for a job
    finished before they were recorded, its spec's batch_size x max_seq_length, their upper bound."""
    if not isinstance(config, dict):
        return None
    hp = config.get("hyperparams")
    hp = hp if isinstance(hp, dict) else {}
    compute = result.get("compute") if isinstance(result, dict) else None
    tokens = compute.get("micro_batch_tokens") if isinstance(compute, dict) else None
    if tokens is None:
        batch, seq = hp.get("batch_size"), hp.get("max_seq_length")
        tokens = batch * seq if isinstance(batch, int) and isinstance(seq, int) else None
    return job_kind(config.get("base_model"), config.get("method"), hp.get("gradient_checkpointing"), tokens)


def memory_errors(db: Database, org_id: str, limit: int = SAMPLES_READ) -> list[float]:
    """Each of the organization's newest completed jobs' memory estimate error, in % of what it measured."""
    stmt = (
        select(Job.result)
        .where(Job.org_id == org_id, Job.status == JobStatus.COMPLETED.value, Job.result.is_not(None))
        .order_by(Job.finished_at.desc(), Job.id.desc())
        .limit(limit)
    )
    with db.read() as session:
        results = session.scalars(stmt).all()
    errors = []
    for result in results:
        memory = result.get("memory") if isinstance(result, dict) else None
        error = memory.get("error_pct") if isinstance(memory, dict) else None
        if isinstance(error, int | float):
            errors.append(float(error))
    return errors
