"""One Settings object, built once at the edge (CLI, tests) and passed in.

Nothing below this module reads os.environ: `Settings.from_env()` is the only place that does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "TUNEYARD_"


@dataclass(frozen=True)
class Settings:
    """Where tuneyard keeps its data and how it runs. Every field can be set as TUNEYARD_<NAME>."""

    data_dir: Path = Path("./tuneyard-data")
    """Database (SQLite default), uploads, run folders, models and the admin key live here."""
    database_url: str | None = None
    """SQLAlchemy URL; None means SQLite at DATA_DIR/tuneyard.db."""
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    """Embedded workers started by `tuneyard serve`."""
    lease_seconds: float = 30.0
    """A claimed job is the worker's for this long after each heartbeat."""
    heartbeat_seconds: float = 5.0
    poll_seconds: float = 0.5
    """How often an idle worker looks for work."""
    telemetry_seconds: float = 1.0
    """How often a worker stores what its runners report: how stale live metrics may be. Each store
    is a database transaction on the cores the runner trains on; more often costs training time."""
    max_retries: int = 3
    """Lease expiries tolerated before a job fails."""
    stop_grace_seconds: float = 60.0
    """How long a stopping runner may take to checkpoint before it is killed."""
    cancel_grace_seconds: float = 10.0
    max_upload_bytes: int = 512 * 1024 * 1024
    job_create_rate_per_minute: int = 20
    model_roots: tuple[Path, ...] = field(default_factory=tuple)
    """Folders under which local base models may be registered."""
    model_cache_dir: Path | None = None
    """Where built-in models are made and cached; None means DATA_DIR/cache/models."""
    runner_python: str | None = None
    """Interpreter for runner subprocesses; None means the one running tuneyard."""
    runner_nice: int = 10
    """The nice increment runners start with (0 keeps the worker's priority). Training is throughput
    work: on cores it shares with the API and the supervisors, they must answer first."""

    def __post_init__(self) -> None:
        # Paths are made absolute once, here, against the directory the process started in: they
        # are stored (file and model paths in the database) and handed to runners that work in
        # their run folder, where a relative path would name something else.
        absolute = _absolute_path
        object.__setattr__(self, "data_dir", absolute(self.data_dir))
        if self.model_cache_dir is not None:
            object.__setattr__(self, "model_cache_dir", absolute(self.model_cache_dir))
        object.__setattr__(self, "model_roots", tuple(absolute(root) for root in self.model_roots))
        if self.runner_python is not None and os.sep in self.runner_python:
            object.__setattr__(self, "runner_python", str(absolute(Path(self.runner_python))))

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'tuneyard.db').resolve()}"

    @property
    def resolved_model_cache_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "cache" / "models"

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with the given non-None fields changed (CLI flags over the environment)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _parse(f.name, raw)
        return cls(**values)


def _absolute_path(path: Path | str) -> Path:
    """`path` with `~` expanded, made absolute and normalised; symlinks are kept as the user named them."""
    return Path(os.path.abspath(Path(path).expanduser()))


def _parse(name: str, raw: str) -> Any:
    if name in ("data_dir", "model_cache_dir"):
        return Path(raw)
    if name == "model_roots":
        return tuple(Path(p) for p in raw.split(os.pathsep) if p)
    if name in ("port", "workers", "max_retries", "max_upload_bytes", "job_create_rate_per_minute",
                "runner_nice"):
        return int(raw)
    if name.endswith("_seconds"):
        return float(raw)
    return raw
