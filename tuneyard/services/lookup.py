"""One lookup for every dialect: an object by its native id or its UUID (tuneyard.store.uuids).

A reference of any other shape names nothing and is NotFound before it reaches the database (as
`api/deps.checked_id` does for native routes): PostgreSQL refuses NUL bytes in text, say.
"""

from __future__ import annotations

import re

from tuneyard.services import base_models
from tuneyard.spec.text import ID_PATTERN
from tuneyard.store import uuids
from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound

KINDS = tuple(uuids.KINDS)
"""job, checkpoint, dataset, file, base_model, model (a trained model)."""

_SHAPE = re.compile(ID_PATTERN)


def native_id(db: Database, org_id: str, kind: str, ref: str) -> str:
    """The native id of the organization's `kind` that `ref` names, by native id or UUID; NotFound
    for another organization's, a missing one, or a reference no id could be."""
    if not _SHAPE.match(ref):
        raise NotFound(uuids.KINDS[kind].name, ref[:64].encode("unicode_escape").decode())
    return uuids.native_id(db, org_id, kind, ref)


def model_reference(db: Database, org_id: str, ref: str) -> str:
    """What a job's `base_model` is for a model a dialect named by UUID: the native id of the
    organization's checkpoint, trained model or base model with that UUID (a checkpoint or a trained
    model is then continued from). Anything else is returned as given: the submission resolves a
    native id, and reports one that names nothing, naming the field."""
    if not uuids.is_uuid(ref):
        return ref
    builtin = base_models.builtin_of_uuid(ref)
    if builtin is not None:  # a built-in has no row: its UUID is derived from its id
        return builtin
    for kind in ("checkpoint", "model", "base_model"):
        try:
            return uuids.native_id(db, org_id, kind, ref)
        except NotFound:
            continue
    return ref
