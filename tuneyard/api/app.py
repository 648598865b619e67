"""The app factory. No module-level app or engine: everything the app needs is passed in.

`uvicorn --factory tuneyard.api.app:factory` builds one from the environment (the only place the
API reads it, through Settings.from_env).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from tuneyard import __version__
from tuneyard.api.deps import AppContext
from tuneyard.api.dialects import DialectRegistry, registered
from tuneyard.api.errors import install_error_handlers
from tuneyard.api.hot_reads import HotReads
from tuneyard.api.limits import BodyLimit
from tuneyard.api.openapi import install_openapi
from tuneyard.api.routes import system
from tuneyard.console import install_console
from tuneyard.permissions import private_umask, secure_data_dir
from tuneyard.services import auto_promotion, auto_training, datasets, exports, serving
from tuneyard.settings import Settings
from tuneyard.store.engine import Database, make_engine
from tuneyard.store.migrate import migrate

API_THREADS = 16
"""Threads that run the blocking part of requests. More would not run faster on a few cores (the
GIL), and every one of them may hold a database connection: the pool is sized for this many."""


STREAM_POLL_SECONDS = 30.0
"""How often an open stream reads its job with no notice of a change: every committed change wakes it
(this process's at once, another's through `store/notices.py`), so this is only a safety net under a
lost notice, and N streams of an idle job cost N reads every 30 s."""


def create_app(settings: Settings, db: Database | None = None, *, stream_poll_seconds: float = STREAM_POLL_SECONDS,
               dialects: DialectRegistry | None = None, recover_unfinished: bool = True) -> FastAPI:
    """The API's dialects (`registered()` unless given: the native one) on `db`, or on a new database
    from `settings`, migrated and disposed with the app. With `recover_unfinished` (the default: one
    process serving the API), its start finishes what a dead service left unfinished: datasets left
    validating, exports left running (queued again), auto-training runs left fired. Of several API
    processes on one database only one may, once (`api/processes.py`): another would queue again the
    export a live one is running."""
    owned = db is None
    if owned:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    database = db if db is not None else Database(make_engine(settings))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = API_THREADS
        if owned:
            migrate(database.engine)
        if recover_unfinished:  # not awaited: a large dataset must not hold up the API's start
            threading.Thread(target=datasets.validate_unfinished, args=(database,), daemon=True,
                             name="validate-unfinished").start()
            threading.Thread(target=exports.run_unfinished, args=(database, settings), daemon=True,
                             name="exports-unfinished").start()
            threading.Thread(target=auto_training.recover_unfinished, args=(database, settings), daemon=True,
                             name="auto-training-unfinished").start()
        promoting = auto_promotion.start(database, settings, supervisor)
        yield
        promoting.set()
        supervisor.stop()  # the serving process, if one was started, with escalating signals
        if owned:
            database.dispose()

    app = FastAPI(title="tuneyard", version=__version__, lifespan=lifespan,
                  description="Self-hosted fine-tuning jobs: native API.")
    app.state.context = AppContext(database, settings, stream_poll_seconds)
    supervisor = serving.make_supervisor(settings)  # the serving process starts on first use
    app.state.serving = supervisor
    served = dialects if dialects is not None else registered()
    app.state.dialects = served
    install_error_handlers(app, served.renderer_for)  # each error in the words of the dialect of its path
    for dialect in served.in_route_order():
        app.include_router(dialect.router)
    app.include_router(system.operator_router)
    install_openapi(app)  # errors documented as JSON on every route, creations linked to what they made
    app.add_middleware(BodyLimit, upload_limit=settings.max_upload_bytes, upload_paths=served.upload_paths(),
                       renderer_for=served.renderer_for, read_timeout=settings.body_read_timeout_seconds,
                       total_timeout=settings.body_total_timeout_seconds,
                       max_uploads_per_key=settings.max_concurrent_uploads_per_key)
    # Outside everything but the console's cookie → bearer (added next, so around it): a poll it answers
    # meets none of the rest (api/hot_reads.py says which and why), the console's as well as a client's.
    app.add_middleware(HotReads, context=app.state.context)
    install_console(app)  # the web console at / (pages, static assets, session cookie → bearer for /v1)
    return app


def factory() -> FastAPI:
    """For `uvicorn --factory`: settings from the environment, the data folder made private."""
    settings = Settings.from_env()
    private_umask()
    secure_data_dir(settings.data_dir)
    return create_app(settings)
