"""One API process of `tuneyard serve --api-processes N`: `python -m tuneyard.api.child`.

Started by the serve process (tuneyard.api.processes), never by hand: it inherits the listening
socket and its end of the secrets channel as descriptors, its settings as TUNEYARD_ variables
(`Settings.as_environment`), and serves the app with uvicorn on that socket. The database is
migrated and the admin key made by the serve process before any API process starts.
"""

from __future__ import annotations

import argparse
import gc
import logging
import socket

from tuneyard.child_process import exit_with_parent, imports_outside_collector
from tuneyard.permissions import private_umask
from tuneyard.settings import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tuneyard.api.child", description=__doc__)
    parser.add_argument("--listen-fd", type=int, required=True, help="the inherited listening socket")
    parser.add_argument("--secrets-fd", type=int, required=True, help="this process's end of the secrets channel")
    parser.add_argument("--exit-with-parent", action="store_true", help="die when the starting process dies")
    parser.add_argument("--recover-unfinished", action="store_true",
                        help="finish what a dead service left unfinished (one API process, once a serve)")
    args = parser.parse_args(argv)
    if args.exit_with_parent:
        exit_with_parent()
    private_umask()  # uploads and exports this process writes are private, as the serve process's
    settings = Settings.from_env()
    # What these imports make lives as long as the process (tuneyard.child_process).
    with imports_outside_collector():
        import uvicorn

        from tuneyard.api.app import create_app
        from tuneyard.api.server import server_config
        from tuneyard.store.engine import Database, make_engine
        from tuneyard.store.secret_channel import ChannelSecrets

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    listener = socket.socket(fileno=args.listen_fd)
    db = Database(make_engine(settings))
    secrets = ChannelSecrets(socket.socket(fileno=args.secrets_fd))
    db.secrets = secrets  # held by the serve process, whose workers hand them to runners
    app = create_app(settings, db, recover_unfinished=args.recover_unfinished)
    gc.freeze()  # as serve does: what lives as long as the process is no collection's work
    try:
        # uvicorn cancels requests still open GRACEFUL_SHUTDOWN_SECONDS after SIGTERM (api/server.py), so
        # the app's shutdown (the serving process stopped, the engine disposed) runs before serve's SIGKILL.
        uvicorn.Server(server_config(app, settings)).run(sockets=[listener])
    finally:
        secrets.close()
        db.dispose()


if __name__ == "__main__":
    main()
