"""Memory-aware admission: a job is queued with its memory estimate, claimed only by a worker
that declared at least that much (`lifecycle.claim`), and refused at submission when no live
worker could ever hold it.

The estimate is the one `POST /v1/estimate` gives (`estimates.planned_memory`), for the device the
job requires (and then only that device's workers count), else the one the newest finished job ran
on. A data-parallel job on CPU needs it once per rank on a node (`distributed.num_processes`): every
rank holds the whole model, its optimizer state and its activations in the host's memory (on CUDA,
each rank has a GPU of its own, and a worker declares one GPU's memory). "Live" is the workers' registry's
window (a heartbeat within a lease); a worker that declared no memory (one from before this) may
take anything, so with one alive nothing is refused, and with no worker alive at all nothing is
known and nothing is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from tuneyard.scheduler.capacity import format_bytes
from tuneyard.scheduler.workers import alive_window_seconds, live_memory
from tuneyard.services import estimates
from tuneyard.services.errors import InvalidRequest
from tuneyard.services.submission import JobPlan
from tuneyard.settings import Settings
from tuneyard.spec.distributed import processes_per_node
from tuneyard.store.engine import Database
from tuneyard.store.jobs import Placed
from tuneyard.store.status import JobStatus

WHAT_TO_CHANGE = ("lower batch_size or max_seq_length, turn on gradient_checkpointing, train with method lora, "
                  "or choose a smaller base_model")


def admit(db: Database, settings: Settings, org_id: str, plan: JobPlan) -> int | None:
    """The job's estimated peak bytes on one node, to queue it with (None: not estimated, any worker
    takes it).

    Raises InvalidRequest, carrying the estimate, when live workers declared their memory and none
    has that much.
    """
    required = plan.request.device
    device = required or estimates.likely_device(db)
    estimate = estimates.planned_memory(db, org_id, plan, device)
    if estimate is None:
        return None
    # Ranks on CPU share the host's memory; on CUDA each has a GPU, and a worker declares one GPU's.
    processes = processes_per_node(plan.config) if device == "cpu" else 1
    need = estimate.peak_bytes * processes
    with db.read() as session:  # a job that requires a device fits only the workers of that device
        declared = live_memory(session, _window(settings), device=required)
    if declared and all(memory is not None and memory < need for memory in declared):
        largest = max(memory for memory in declared if memory is not None)
        worker = f"{required} worker" if required else "worker"
        raise InvalidRequest([{
            "field": "hyperparams",
            "message": (f"the job needs {format_bytes(need)} by its estimate{_per_rank(processes, estimate.peak_bytes)}"
                        f" and the largest {worker} has {format_bytes(largest)}: {WHAT_TO_CHANGE}"),
            "estimate": estimate.to_json(),
        }])
    return need


def _per_rank(processes: int, each: int) -> str:
    return f" ({processes} processes of {format_bytes(each)} each)" if processes > 1 else ""


def waiting_reasons(session: Session, settings: Settings, rows: Sequence[Placed]) -> dict[str, str]:
    """Why each queued job some live worker cannot hold waits: `waiting for a worker with ≥ 11.2 GB`."""
    sized = [job for job in rows if job.status == JobStatus.QUEUED.value and job.memory_estimate_bytes]
    if not sized:
        return {}
    declared = live_memory(session, _window(settings))
    if not declared:
        return {}
    smallest = min((m for m in declared if m is not None), default=None)
    return {job.id: f"waiting for a worker with ≥ {format_bytes(job.memory_estimate_bytes)}" for job in sized
            if smallest is not None and job.memory_estimate_bytes and smallest < job.memory_estimate_bytes}


def _window(settings: Settings) -> float:
    return alive_window_seconds(settings.lease_seconds, settings.heartbeat_seconds)
