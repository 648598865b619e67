"""OpenAI-style names of what a job trained: `ft:<base>:<suffix>:<model id>` for its model, and
`ft:<base>:<suffix>:<job id>:ckpt-step-<N>` for a checkpoint, each usable wherever a request names a
model (a new job's base, `/v1/chat/completions`' model).

The last part carries the id, so a name resolves without a table of names: serving reads a model
name's last part as the trained model's id (`services/serving.trained_model_id`); a checkpoint name
is its job and step. `<base>` and `<suffix>` are for people, never trusted on the way back.
"""

from __future__ import annotations

import re

from tuneyard.store import telemetry
from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.store.jobs import get_job

PREFIX = "ft:"
_CHECKPOINT = re.compile(r"^ft:[^:]*:[^:]*:(?P<job>[A-Za-z0-9_.-]+):ckpt-step-(?P<step>\d{1,12})$")
_MODEL = re.compile(r"^ft:[^:]*:[^:]*:(?P<model>[A-Za-z0-9_.-]+)$")


def base_of(model: str) -> str:
    """The base a name shows: a fine-tuned name's own base (trained further, it is still that base's)."""
    return model.split(":")[1] if model.startswith(PREFIX) and model.count(":") >= 3 else model


def model_name(base: str, suffix: str | None, model_id: str) -> str:
    return f"{PREFIX}{base_of(base)}:{suffix or ''}:{model_id}"


def checkpoint_name(base: str, suffix: str | None, job_id: str, step: int) -> str:
    return f"{PREFIX}{base_of(base)}:{suffix or ''}:{job_id}:ckpt-step-{step}"


def resolve(db: Database, org_id: str, name: str) -> str:
    """What a `ft:` name means to the submission: the trained model's id, or the checkpoint's id.
    A name of any other shape is given back as it is; NotFound for a `ft:` name naming nothing of
    the organization's."""
    if not name.startswith(PREFIX):
        return name
    found = _CHECKPOINT.match(name)
    if found:
        job = get_job(db, org_id, found["job"])
        with db.read() as session:
            step = int(found["step"])
            for ckpt in telemetry.read_checkpoints(session, job.id):
                if ckpt.step == step:
                    return ckpt.id
        raise NotFound("checkpoint", name)
    found = _MODEL.match(name)
    if found is None:
        raise NotFound("model", name)
    return found["model"]
