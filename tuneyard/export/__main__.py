"""`python -m tuneyard.export REQUEST.json OUTCOME.json` (see run.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from tuneyard.export.run import main

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m tuneyard.export REQUEST.json OUTCOME.json")
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
