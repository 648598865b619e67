"""`tuneyard serve` (API + embedded workers) and `tuneyard worker` (workers alone)."""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tuneyard.child_process import imports_outside_collector
from tuneyard.permissions import private_umask, secure_data_dir
from tuneyard.settings import Settings

if TYPE_CHECKING:  # the store (SQLAlchemy) loads only for the commands that use it
    import socket

    from tuneyard.store.engine import Database
    from tuneyard.worker.pool import WorkerPool

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data folder (env TUNEYARD_DATA_DIR).")]
Workers = Annotated[int | None, typer.Option("--workers", min=0, help="Workers to run (env TUNEYARD_WORKERS).")]
WorkerMemory = Annotated[float | None, typer.Option(
    "--worker-memory-gb", min=0.001, help=(
        "Memory each worker declares, in GB: it claims only jobs whose estimate fits (env "
        "TUNEYARD_WORKER_MEMORY_BYTES, in bytes). Default: measured, the GPU's memory or MemAvailable."))]


def _memory_bytes(gb: float | None) -> int | None:
    return None if gb is None else round(gb * 1e9)


def _open(settings: Settings) -> Database:
    """The migrated database, after making the data folder private (see tuneyard.permissions)."""
    from tuneyard.store.engine import Database, make_engine
    from tuneyard.store.migrate import migrate

    private_umask()  # before SQLite, the workers and their runners create anything
    secure_data_dir(settings.data_dir)
    db = Database(make_engine(settings))
    migrate(db.engine)
    return db


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (env TUNEYARD_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (env TUNEYARD_PORT).")] = None,
    data_dir: DataDir = None,
    workers: Workers = None,
    auth: Annotated[str | None, typer.Option(
        help="`key` (default): every request needs an API key. `none`: single-user mode, requests without a key "
             "act as the local admin; refused unless --host is loopback (env TUNEYARD_AUTH).")] = None,
    worker_memory_gb: WorkerMemory = None,
    api_processes: Annotated[int | None, typer.Option(
        "--api-processes", min=0, help=(
            "Serve the API from N processes of their own, all on the one port, the workers staying in this "
            "process; 0 (default): API and workers in this one process (env TUNEYARD_API_PROCESSES).")),
    ] = None,
) -> None:
    """Run the API and embedded workers (SQLite in the data folder by default)."""
    # What these imports make lives as long as the process: collections over it took 0.3 to 0.5 s
    # of a start-up's 2 s of CPU (tuneyard.child_process).
    with imports_outside_collector():
        import uvicorn

        from tuneyard.api.app import create_app
        from tuneyard.api.processes import listen
        from tuneyard.api.server import server_config
        from tuneyard.services.admin import ensure_admin_key
        from tuneyard.worker.pool import WorkerPool

    settings = Settings.from_env().with_overrides(host=host, port=port, data_dir=data_dir, auth=auth, workers=workers,
                                                  worker_memory_bytes=_memory_bytes(worker_memory_gb),
                                                  api_processes=api_processes)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    db = _open(settings)
    # Bound before a worker starts: a taken port fails here, with nothing to stop.
    listener = listen(settings) if settings.api_processes else None
    key_file = ensure_admin_key(db, settings)
    pool = WorkerPool(db, settings, dict(os.environ), settings.workers)
    pool.start()
    # Only an empty database gets an organization made here; otherwise admin.key is the operator's to write.
    key_note = (f"admin key in {key_file}" if key_file else
                "no admin key in the data folder (the database has organizations: "
                "`tuneyard keys create NAME --org ORG --admin`)")
    if settings.auth == "none":
        key_note = "single-user mode: requests without a key act as the local admin"
    processes = f" · {settings.api_processes} API processes" if settings.api_processes else ""
    typer.echo(f"tuneyard on http://{settings.host}:{settings.port} · data {settings.data_dir} · "
               f"{settings.workers} worker(s){processes} · {key_note}")
    # uvicorn handles SIGTERM and SIGINT while it serves, and once it has shut down it raises the
    # signal again for whatever handler was there before it. The default handler would end the
    # process here, before the drain below hands the running jobs back; this one lets it run (and
    # remembers a signal that came before uvicorn started).
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    if listener is not None:
        _serve_in_processes(settings, db, pool, listener, stopping)
        return
    app = create_app(settings, db)
    # Everything imported and built so far lives as long as the process: moved out of the
    # collector's reach, full collections no longer walk it (tens of ms each, under load).
    gc.freeze()
    try:
        if not stopping.is_set():
            uvicorn.Server(server_config(app, settings)).run()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C leaves at once
        _drain(pool, db)


def _serve_in_processes(settings: Settings, db: Database, pool: WorkerPool, listener: socket.socket,
                        stopping: threading.Event) -> None:
    """The API in settings.api_processes processes on `listener` (tuneyard.api.processes), supervised
    until SIGTERM or SIGINT sets `stopping`; then they are stopped and the workers drained."""
    from tuneyard.api.processes import ApiProcesses

    # The jobs' secrets stay in this process, whose workers launch the runners; the API processes ask for them.
    api = ApiProcesses(listener, settings, dict(os.environ), db.secrets, settings.api_processes)
    gc.freeze()
    try:
        if not stopping.is_set():
            api.start()
            api.supervise(stopping)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C leaves at once
        typer.echo("stopping the API processes")
        api.stop()
        listener.close()
        _drain(pool, db)


def _drain(pool: WorkerPool, db: Database) -> None:
    typer.echo("draining: handing running jobs back to the queue")
    pool.drain()
    db.dispose()


def worker(data_dir: DataDir = None, workers: Workers = None, worker_memory_gb: WorkerMemory = None) -> None:
    """Run workers alone against a shared database (TUNEYARD_DATABASE_URL) and data folder."""
    from tuneyard.worker.pool import WorkerPool

    settings = Settings.from_env().with_overrides(data_dir=data_dir, workers=workers,
                                                  worker_memory_bytes=_memory_bytes(worker_memory_gb))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    db = _open(settings)
    pool = WorkerPool(db, settings, dict(os.environ), max(settings.workers, 1))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    pool.start()
    typer.echo(f"{len(pool.workers)} worker(s) on {settings.resolved_database_url.split('@')[-1]}")
    stop.wait()
    typer.echo("draining: handing running jobs back to the queue")
    pool.drain()
    db.dispose()
