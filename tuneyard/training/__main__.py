"""`python -m tuneyard.training SPEC --run-dir DIR [--resume ...]`: the runner alone.

Workers start runners this way: argparse only, so a runner starts without the CLI's
dependencies. `tuneyard train` is the same entry for people. OpenMP's idle threads sleep, torch and
transformers are imported outside the garbage collector's reach, the heap keeps what a step frees for
the next, and the process ends without the interpreter's teardown (tuneyard.child_process).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tuneyard.child_process import exit_now, idle_threads_sleep, imports_outside_collector, keep_freed_memory
from tuneyard.errors import SettingsError
from tuneyard.permissions import private_umask
from tuneyard.settings import Settings
from tuneyard.training.ranks import Ranks
from tuneyard.training.run_storage import open_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuneyard.training", description=__doc__)
    parser.add_argument("spec", type=Path, help="the job spec, YAML or JSON")
    parser.add_argument("--run-dir", type=Path, required=True, help="where this run's files go")
    parser.add_argument("--resume", default=None, help="latest, step-N, or a checkpoint folder")
    parser.add_argument("--model-cache-dir", type=Path, default=None, help="where built-in models are cached")
    parser.add_argument("--nice", type=int, default=0, help="lower this process's CPU priority by N first")
    parser.add_argument("--run-storage", default=None, help="a copy of the run folder to commit to (s3://...)")
    parser.add_argument("--run-storage-endpoint", default=None, help="the run storage's S3 endpoint URL")
    parser.add_argument("--exit-with-parent", action="store_true", help="die when the starting process dies")
    args = parser.parse_args(argv)
    # Run folders hold the spec, logs, telemetry, weights and optimizer state: private to this user
    # (tuneyard.permissions), whoever started the runner.
    private_umask()
    if args.nice:
        # Before torch starts its threads: they inherit the priority of the thread that makes them.
        os.nice(args.nice)
    if args.exit_with_parent:
        from tuneyard.child_process import exit_with_parent

        exit_with_parent()
    try:
        cache = args.model_cache_dir or Settings.from_env().resolved_model_cache_dir
        run_copy = open_run(args.run_storage, args.run_storage_endpoint)
    except SettingsError as exc:  # a usage error, as argparse's own: one line, exit 2
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    idle_threads_sleep()
    keep_freed_memory()
    with imports_outside_collector():
        from tuneyard.training.runner import run  # torch loads here, after argument errors are out

    # Under torchrun (tuneyard.training.launch) each rank learns its place from the launcher's variables.
    return run(args.spec, args.run_dir, args.resume, cache, Ranks.from_launcher(os.environ), run_copy)


if __name__ == "__main__":
    exit_now(main())  # run() has closed the telemetry and written every file it promised
