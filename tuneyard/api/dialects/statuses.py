"""Every dialect's words for the one state machine (store/status.py), in one place.

Each table maps every JobStatus to a word its document lists (`DOCUMENTED` holds those lists, as
printed); `Dialect.status_names` is one of these tables. Where a document has fewer words than the
state machine, the nearest word a client of that document acts on correctly is used: a job being
claimed is still "requested" to Felix, a stop in progress is still "running" (it may yet complete),
and a finalizing job is running to everyone whose document has no such step.
tests/unit/test_dialect_statuses.py drives every status through every table.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from tuneyard.store.status import JobStatus

S = JobStatus

StatusNames = Mapping[JobStatus, str]


def _table(names: dict[JobStatus, str]) -> StatusNames:
    missing = [s.value for s in JobStatus if s not in names]
    if missing:
        raise ValueError(f"a status table names no word for {', '.join(missing)}")
    return MappingProxyType(names)


NATIVE = _table({status: status.value for status in JobStatus})

FELIX = _table({  # 000: requested, running, complete, failed, stopped
    S.QUEUED: "requested", S.STARTING: "requested", S.RUNNING: "running", S.FINALIZING: "running",
    S.STOPPING: "running", S.STOPPED: "stopped", S.COMPLETED: "complete", S.FAILED: "failed",
    # Felix has no cancel; its DELETE of a job that is queued or stopped is the nearest. A cancel
    # made in another dialect ends the job without a model: failed is what a Felix client can act on.
    S.CANCELLING: "stopped", S.CANCELLED: "failed",
})

# 004: UNKNOWN, REGISTERED, STARTING, RUNNING, COMPLETED, FINALIZING, STOPPING, STOPPED, CANCELLED, FAILED.
# UNKNOWN is never shown: every job has a status of the state machine.
ARCHETYPE = _table({
    S.QUEUED: "REGISTERED", S.STARTING: "STARTING", S.RUNNING: "RUNNING", S.FINALIZING: "FINALIZING",
    S.STOPPING: "STOPPING", S.STOPPED: "STOPPED", S.CANCELLING: "STOPPING", S.COMPLETED: "COMPLETED",
    S.FAILED: "FAILED", S.CANCELLED: "CANCELLED",
})

# OpenAI's fine-tuning job: validating_files, queued, running, succeeded, failed, cancelled, pausing, paused.
# validating_files is never shown: files are validated before the job is created.
OPENAI = _table({
    S.QUEUED: "queued", S.STARTING: "running", S.RUNNING: "running", S.FINALIZING: "running",
    S.STOPPING: "pausing", S.STOPPED: "paused", S.CANCELLING: "cancelled", S.COMPLETED: "succeeded",
    S.FAILED: "failed", S.CANCELLED: "cancelled",
})

FUSION = _table({  # 001 prints "queued" and defers to a lifecycle it does not print: tuneyard's own words
    status: status.value for status in JobStatus
})

LOCAL_TRAINING = _table({  # 002: pending on creation, completed; DELETE cancels
    S.QUEUED: "pending", S.STARTING: "running", S.RUNNING: "running", S.FINALIZING: "running",
    # 002 has no stopped: a job stopped elsewhere ended without its model, as a cancelled one did
    # (its /resume takes either back).
    S.STOPPING: "running", S.STOPPED: "cancelled", S.CANCELLING: "cancelled", S.COMPLETED: "completed",
    S.FAILED: "failed", S.CANCELLED: "cancelled",
})

AGENT_TRAINING = _table({  # 003: queued, running, completed, failed, cancelled (its /status counters)
    S.QUEUED: "queued", S.STARTING: "running", S.RUNNING: "running", S.FINALIZING: "running",
    S.STOPPING: "running", S.STOPPED: "cancelled", S.CANCELLING: "cancelled", S.COMPLETED: "completed",
    S.FAILED: "failed", S.CANCELLED: "cancelled",
})

TABLES: dict[str, StatusNames] = {
    "native": NATIVE, "felix": FELIX, "archetype": ARCHETYPE, "openai": OPENAI, "fusion": FUSION,
    "local_training": LOCAL_TRAINING, "agent_training": AGENT_TRAINING,
}

DOCUMENTED: dict[str, frozenset[str]] = {
    "native": frozenset(s.value for s in JobStatus),
    "felix": frozenset({"requested", "running", "complete", "failed", "stopped"}),
    "archetype": frozenset({"UNKNOWN", "REGISTERED", "STARTING", "RUNNING", "COMPLETED", "FINALIZING", "STOPPING",
                            "STOPPED", "CANCELLED", "FAILED"}),
    "openai": frozenset({"validating_files", "queued", "running", "succeeded", "failed", "cancelled", "pausing",
                         "paused"}),
    "fusion": frozenset(s.value for s in JobStatus),
    # 002 prints pending and completed; running, failed and cancelled (its DELETE) are the words its
    # sibling on the same paths, 003, uses.
    "local_training": frozenset({"pending", "running", "completed", "failed", "cancelled"}),
    "agent_training": frozenset({"queued", "running", "completed", "failed", "cancelled"}),
}
"""The words each document lists, as printed: a table may use only these."""


def statuses_named(table: StatusNames, word: str) -> frozenset[JobStatus]:
    """The statuses a table calls `word` (a list filter in that dialect's words); empty for none."""
    return frozenset(status for status, name in table.items() if name == word)
