"""Exports of trained models: request one, run it in its own process, list what was made.

An export is durable: its row is written before any work, the work runs in a child process
(`python -m tuneyard.export`, its own process group, at the runners' nice), and the outcome is
stored from the file the child leaves. At start-up, exports left running are queued again and
every queued one is run (`run_unfinished`); a child still at work holds its export's lock file,
and is waited for and its outcome taken, never run twice. One export runs at a time per process.
"""

from __future__ import annotations

import fcntl
import json
import logging
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import IO, Any

from tuneyard.export.gguf import default_converter_dir
from tuneyard.export.request import ExportRequest, check_request
from tuneyard.settings import Settings
from tuneyard.store import catalog
from tuneyard.store import exports as store
from tuneyard.store.engine import Database
from tuneyard.store.tables import ModelExport

log = logging.getLogger(__name__)

EXPORTS_DIR = "exports"
OUTCOME_FILE_SUFFIX = ".outcome.json"
LOCK_FILE_SUFFIX = ".lock"
"""Held (flock) by whoever runs the export's child, and by the child itself, for as long as it runs."""
REQUEST_FILE_SUFFIX = ".request.json"


def request_export(db: Database, settings: Settings, org_id: str, model_id: str, *, format: str,
                   quantization: str | None, variant: str, start: bool = True) -> ModelExport:
    """Queue an export of the model (422 naming the field for a bad request) and start it."""
    model = catalog.get_trained_model(db, org_id, model_id)
    check_request(format, quantization, variant, model.kind)
    if format == "gguf" and quantization is None:
        quantization = "q8_0"
    row = store.create_export(db, org_id, model_id, format=format, quantization=quantization, variant=variant,
                              exports_dir=str(exports_dir(settings)))
    if start:
        start_pending(db, settings)
    return row


def list_exports(db: Database, org_id: str, model_id: str) -> list[ModelExport]:
    catalog.get_trained_model(db, org_id, model_id)
    return store.list_exports(db, org_id, model_id)


def get_export(db: Database, org_id: str, model_id: str, export_id: str) -> ModelExport:
    return store.get_export(db, org_id, model_id, export_id)


def exports_dir(settings: Settings) -> Path:
    return settings.data_dir / EXPORTS_DIR


def start_pending(db: Database, settings: Settings) -> threading.Thread:
    """Run every queued export in a background thread (not awaited: an export takes minutes)."""
    thread = threading.Thread(target=run_pending, args=(db, settings), daemon=True, name="exports")
    thread.start()
    return thread


def run_unfinished(db: Database, settings: Settings) -> None:
    """At start-up: requeue what a dead process left running, then run the queue."""
    requeued = store.requeue_running(db)
    if requeued:
        log.info("exports %s were running when the service stopped; queued again", ", ".join(requeued))
    run_pending(db, settings)


_RUNNERS: weakref.WeakKeyDictionary[Database, threading.Lock] = weakref.WeakKeyDictionary()
_RUNNERS_GUARD = threading.Lock()


def run_pending(db: Database, settings: Settings) -> None:
    """Run the queue, one export at a time per database in this process: each loads a model's weights
    and runs llama.cpp, so N requests must not start N of them. A call that finds the queue being
    run returns at once; the running loop picks its export up."""
    with _RUNNERS_GUARD:
        runner = _RUNNERS.setdefault(db, threading.Lock())
    while runner.acquire(blocking=False):
        try:
            for export_id in store.queued_ids(db):
                if store.claim(db, export_id):  # another process may have taken it
                    run_one(db, settings, export_id)
        finally:
            runner.release()
        if not store.queued_ids(db):  # else one was queued while this loop was letting go: go again
            return


def run_one(db: Database, settings: Settings, export_id: str) -> None:
    """Run a claimed export to its end and store the outcome; never raises."""
    try:
        outcome = _run_child(db, settings, export_id)
    except Exception as exc:  # the API must live on whatever an export does; the row says what happened
        log.exception("export %s could not be run", export_id)
        outcome = {"status": "failed", "error": {"error_type": "platform_error",
                                                 "message": f"{type(exc).__name__}: {exc}", "details": {}}}
    if outcome.get("status") == "completed":
        store.finish(db, export_id, manifest=outcome["manifest"])
    else:
        store.finish(db, export_id, error=outcome.get("error") or {"error_type": "platform_error",
                                                                    "message": "the export left no outcome"})


def _lock(handle: IO[bytes]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _run_child(db: Database, settings: Settings, export_id: str) -> dict[str, Any]:
    with db.read() as session:
        row = session.get(ModelExport, export_id)
        assert row is not None
        model = catalog.get_trained_model(db, row.org_id, row.model_id)
    folder = Path(row.path)
    folder.parent.mkdir(parents=True, exist_ok=True)
    request = ExportRequest(
        model_path=model.path, model_kind=model.kind, format=row.format, quantization=row.quantization,
        variant="adapter" if row.variant == "adapter" else "merged", out_dir=str(folder),
        model_cache_dir=str(settings.resolved_model_cache_dir),
        converter_dir=str(settings.gguf_converter_dir or default_converter_dir()),
        threads=settings.export_threads, nice=settings.runner_nice, model_name=model.id)
    request_file = folder.with_name(folder.name + REQUEST_FILE_SUFFIX)
    outcome_file = folder.with_name(folder.name + OUTCOME_FILE_SUFFIX)
    with open(folder.with_name(folder.name + LOCK_FILE_SUFFIX), "a+b") as lock:
        if not _lock(lock):
            # The child of a process that died (or of another API process, whose start-up requeued
            # this export) is still at work and holds the lock: wait for it and take its outcome,
            # rather than start a second child on the same folder.
            log.info("export %s is still being run by an earlier process; waiting for it", export_id)
            fcntl.flock(lock, fcntl.LOCK_EX)
            if outcome_file.is_file():
                adopted: dict[str, Any] = json.loads(outcome_file.read_text(encoding="utf-8"))
                return adopted
        request_file.write_text(json.dumps(request.to_dict()), encoding="utf-8")
        outcome_file.unlink(missing_ok=True)
        argv = [settings.runner_python or sys.executable, "-m", "tuneyard.export", str(request_file),
                str(outcome_file)]
        log_file = folder.with_name(folder.name + ".log")
        with open(log_file, "wb") as log_handle:
            # Own session: a signal to the API's process group does not reach it. The child inherits
            # the lock, so it stays held for as long as the child runs, whatever becomes of this process.
            done = subprocess.run(argv, stdout=log_handle, stderr=subprocess.STDOUT, start_new_session=True,
                                  pass_fds=(lock.fileno(),), check=False)
    if outcome_file.is_file():
        outcome: dict[str, Any] = json.loads(outcome_file.read_text(encoding="utf-8"))
        return outcome
    tail = log_file.read_text(encoding="utf-8", errors="replace")[-2000:]
    return {"status": "failed", "error": {"error_type": "platform_error", "details": {},
                                          "message": f"the export process exited {done.returncode}: {tail}"}}

