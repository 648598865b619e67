"""What clients see of the server's disk: a job's paths as its run folder, its uploads and its references.

The store keeps the truth the worker and the runner need: absolute paths in a job's config, and the
runner's messages (logs, events, errors, the result) as it wrote them. Everything an API, the
console or the CLI shows of a job passes through the job's `PathDisplay` first, which rewrites:

* the job's run folder → paths relative to it (`final/adapter_config.json`, `.` for the folder),
  the same paths `/v1/jobs/{id}/artifacts/{path}` takes;
* an uploaded file → the name it was uploaded with and its id (`chats.jsonl (file_ab12…)`);
* the base model the config resolved to a path (a checkpoint, a trained or registered model) → the
  reference the request gave (`ckpt_…`, `model_…`);
* anything else under the data folder → `<data>/` and the path inside it.

A served model's errors (`for_served_model`) show its files as its public name the same way.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tuneyard.services.runs import run_dir
from tuneyard.settings import Settings
from tuneyard.store.datasets import file_names
from tuneyard.store.tables import Job

DATA = "<data>"
"""What the data folder itself is shown as."""
MODEL_CACHE = "<model cache>"
"""What the model cache (built-in models) is shown as."""
GGUF_SUFFIX = ".gguf"
_NAME_CHAR = r"[\w.-]"  # a path that continues with one of these is another path, not this one


@dataclass(frozen=True)
class PathDisplay:
    """Server paths and what clients see in their place, applied to text and to JSON values."""

    names: Mapping[str, str] = field(default_factory=dict)
    """Server path (a folder's with a trailing / for what is inside it) → what is shown."""
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        # Longest first, so a file wins over its folder and the run folder over the data folder; a
        # match starts and ends where a path can (not inside /home/srv when the data folder is /srv).
        keys = sorted((k for k in self.names if k), key=len, reverse=True)
        parts = [re.escape(k) if k.endswith("/") else f"{re.escape(k)}(?!{_NAME_CHAR})" for k in keys]
        pattern = re.compile(f"(?<![\\w./-])(?:{'|'.join(parts)})") if parts else None
        object.__setattr__(self, "_pattern", pattern)

    def text(self, value: str) -> str:
        if self._pattern is None or "/" not in value:
            return value
        return self._pattern.sub(lambda m: self.names[m.group()], value)

    def json_text(self, value: str) -> str:
        """JSON source text with the paths inside its strings shown, each replacement escaped as a
        JSON string's content (an upload's name may hold a quote)."""
        if self._pattern is None or "/" not in value:
            return value
        return self._pattern.sub(lambda m: json.dumps(self.names[m.group()])[1:-1], value)

    def value(self, value: Any) -> Any:
        """A JSON value with every string (keys included) shown; other values as they are."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value


SHOWN_FILE_MAX = 16 * 2**20
"""A run-folder file larger than this is served as it is on disk (telemetry of a very long run, say)."""
_JSON_SUFFIXES = frozenset({".json", ".jsonl"})
_TEXT_SUFFIXES = frozenset({".log", ".md", ".txt", ".yaml", ".yml", ".jinja", ".py", ".csv"})


def file_as_shown(display: PathDisplay, path: Path) -> bytes | None:
    """A run-folder file's bytes with the server's paths shown, or None to serve it as it is on disk.

    The runner's own files name the server's disk (spec.json holds the paths it was given, its log
    and telemetry the folders it wrote); a client reads them, as it reads a job, without those
    paths. Binary files, files over SHOWN_FILE_MAX and files naming no server path go as they are.
    """
    suffix = path.suffix.lower()
    if suffix not in _JSON_SUFFIXES and suffix not in _TEXT_SUFFIXES:
        return None
    try:
        if path.stat().st_size > SHOWN_FILE_MAX:
            return None
        raw = path.read_bytes()
    except OSError:
        return None
    text = raw.decode("utf-8", "surrogateescape")
    shown = display.json_text(text) if suffix in _JSON_SUFFIXES else display.text(text)
    return None if shown == text else shown.encode("utf-8", "surrogateescape")


def for_served_model(settings: Settings, source: str, shown: str) -> PathDisplay:
    """What a served model's errors show in place of the server's paths: its own files as the name the
    request gave (a GGUF export's file by its file name), anything else under the data folder or the
    model cache by that folder's name. The loaders name the path they were given (transformers, peft,
    llama.cpp and tuneyard's own), so without this a failed load would tell a user where models live."""
    names: dict[str, str] = {}
    for root in _roots(settings.resolved_model_cache_dir):
        names[f"{root}/"], names[root] = f"{MODEL_CACHE}/", MODEL_CACHE
    for root in _roots(settings.data_dir):
        names[f"{root}/"], names[root] = f"{DATA}/", DATA
    if Path(source).is_absolute():
        own = Path(source).name if source.endswith(GGUF_SUFFIX) else shown
        for path in _roots(Path(source)):
            names[f"{path}/"], names[path] = f"{own}/", own
    return PathDisplay(names)


def for_job(session: Session, settings: Settings, job: Job) -> PathDisplay:
    return for_jobs(session, settings, [job])[job.id]


def for_jobs(session: Session, settings: Settings, jobs: Sequence[Job]) -> dict[str, PathDisplay]:
    """Each job's display, reading the names of every upload their configs use in one query (for the
    jobs this process has not shown lately: `_SHOWN`)."""
    found = {job.id: shown for job in jobs if (shown := _SHOWN.get((settings.data_dir, job.id))) is not None}
    new = [job for job in jobs if job.id not in found]
    if not new:
        return found
    roots = _roots(settings.data_dir)
    uploads = {job.id: _uploads(job, roots) for job in new}
    wanted = {file_id for paths in uploads.values() for file_id in paths.values()}
    orgs = {job.org_id for job in new}
    names = {k: v for org in orgs for k, v in file_names(session, org, sorted(wanted)).items()} if wanted else {}
    for job in new:
        found[job.id] = _SHOWN.put((settings.data_dir, job.id),
                                   PathDisplay(_names(settings, job, roots, uploads[job.id], names)))
    return found


class _Recent:
    """The displays of the jobs shown lately, by (data folder, job id), the least recently used dropped first.

    A job's display never changes: it is made of its config and spec, written once at submission, its
    run folder, and the names its uploads were given, which no write changes. Polls of a running job
    (a hundred clients, every second) otherwise read those names and compiled the display's pattern
    anew each time: a fifth of a poll's CPU.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._held: OrderedDict[tuple[Path, str], PathDisplay] = OrderedDict()

    def get(self, key: tuple[Path, str]) -> PathDisplay | None:
        with self._lock:
            shown = self._held.get(key)
            if shown is not None:
                self._held.move_to_end(key)
            return shown

    def put(self, key: tuple[Path, str], shown: PathDisplay) -> PathDisplay:
        with self._lock:
            self._held[key] = shown
            self._held.move_to_end(key)
            while len(self._held) > self.size:
                self._held.popitem(last=False)
        return shown


_SHOWN = _Recent(size=2048)


@functools.lru_cache(maxsize=4096)
def _roots(data_dir: Path) -> tuple[str, ...]:
    # The runner may resolve symlinks (/tmp → /private/tmp): both spellings are the data folder.
    # Once a process and folder (the data folder, a job's run folder): resolving is a system call per
    # component, and every read of a job's timeline shows its paths.
    return tuple(sorted({str(data_dir), str(data_dir.resolve())}))


def _uploads(job: Job, roots: Iterable[str]) -> dict[str, str]:
    """Path → file id, for each dataset file of the job's config stored under the data folder's files/."""
    found = {}
    config = job.config or {}
    calibration = config.get("calibration")  # a contraction's calibration text, as files
    calibration_refs = calibration.get("datasets") or [] if isinstance(calibration, dict) else []
    for ref in [*(config.get("datasets") or []), *calibration_refs]:
        path = ref.get("path") if isinstance(ref, dict) else None
        if isinstance(path, str) and any(path.startswith(f"{root}/files/") for root in roots):
            found[path] = Path(path).stem
    return found


def _names(settings: Settings, job: Job, roots: Sequence[str], uploads: dict[str, str],
           file_names: Mapping[str, str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for root in roots:
        names[f"{root}/"], names[root] = f"{DATA}/", DATA
    base, given = (job.config or {}).get("base_model"), (job.spec or {}).get("base_model")
    if isinstance(base, str) and isinstance(given, str) and base != given and Path(base).is_absolute():
        names[base] = given
    for folder in _roots(run_dir(settings, job.id)):
        names[f"{folder}/"], names[folder] = "", "."
    for path, file_id in uploads.items():
        shown = f"{file_names[file_id]} ({file_id})" if file_id in file_names else file_id
        for root in roots:  # the same file under either spelling of the data folder
            for prefix in roots:
                if path.startswith(f"{prefix}/"):
                    names[root + path[len(prefix):]] = shown
    return names
