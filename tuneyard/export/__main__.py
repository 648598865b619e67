"""`python -m tuneyard.export REQUEST.json OUTCOME.json` (see run.py).

Started like a runner (tuneyard.child_process): OpenMP's idle threads sleep, torch is imported
outside the garbage collector's reach, and the process ends without the interpreter's teardown
once the outcome is written.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tuneyard.child_process import exit_now, idle_threads_sleep, imports_outside_collector

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m tuneyard.export REQUEST.json OUTCOME.json")
    idle_threads_sleep()
    with imports_outside_collector():
        from tuneyard.export.run import main
    exit_now(main(Path(sys.argv[1]), Path(sys.argv[2])))  # main() has written the outcome, or raised
