"""Prefixed ids (`job_…`, `ds_…`): the prefix tells a reader (and a route) what an id names."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

PREFIXES = ("org", "proj", "key", "file", "ds", "model", "job", "ckpt", "bm", "exp")


def new_id(prefix: str) -> str:
    """`prefix_` + 24 lowercase hex characters (96 random bits)."""
    return f"{prefix}_{secrets.token_hex(12)}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> str:
    """A random (version 4) UUID in its canonical text form: what dialects that say UUID show."""
    return str(uuid.uuid4())
