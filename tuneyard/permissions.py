"""The data folder is private to the user tuneyard runs as: folders 0700, files 0600.

It holds every organization's specs, datasets and key hashes (the SQLite database), run logs,
telemetry and optimizer state. Two measures keep it so:

* `private_umask()` at the start of every process that writes there (`serve`, `worker`, the API
  factory, the runner): whatever they or their libraries create (SQLite's database, WAL and SHM
  files, run folders, checkpoints) is born private, and runner subprocesses inherit it.
* `secure_data_dir()` at the start of `serve` and `worker` walks the folder once and takes group and
  other permissions off whatever an older version, another tool or a restore left readable, with a
  warning naming what it fixed.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
"""New files 0600 and folders 0700 (from the usual 0666 / 0777 requested)."""
SHOWN = 10
"""Fixed paths named in the warning; the rest are counted."""


def private_umask() -> None:
    """Make everything this process (and every child it starts) creates private to its user."""
    os.umask(PRIVATE_UMASK)


def secure_data_dir(data_dir: Path) -> list[str]:
    """Create `data_dir` 0700 if missing, then make it and everything under it private.

    Returns what was fixed, as `<path relative to data_dir> <old mode> -> <new mode>`, and logs a
    warning naming it. Symbolic links are not followed (what they point at is not ours to change);
    a path that cannot be changed (another owner) is logged, not fatal.
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fixed: list[str] = []
    _fix(data_dir, data_dir, fixed)
    for folder, dirs, files in os.walk(data_dir):
        for name in dirs + files:
            _fix(Path(folder) / name, data_dir, fixed)
    if fixed:
        more = f" and {len(fixed) - SHOWN} more" if len(fixed) > SHOWN else ""
        log.warning("data folder %s: took group and other permissions off %d path(s) that others could read: "
                    "%s%s", data_dir, len(fixed), ", ".join(fixed[:SHOWN]), more)
    return fixed


def _fix(path: Path, root: Path, fixed: list[str]) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:  # removed while we walked (a run folder cleaned up, say)
        return
    if stat.S_ISLNK(mode) or not mode & 0o077:
        return
    private = stat.S_IMODE(mode) & 0o700  # the owner's bits stay as they were: 0644 -> 0600, 0755 -> 0700
    try:
        os.chmod(path, private)
    except OSError as exc:
        log.warning("data folder %s: cannot make %s private: %s", root, path, exc)
        return
    name = path.relative_to(root).as_posix() if path != root else "."
    fixed.append(f"{name} {stat.S_IMODE(mode):04o} -> {private:04o}")
