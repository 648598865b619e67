"""`python -m tuneyard.serving` (see process.py)."""

from __future__ import annotations

import sys

from tuneyard.serving.process import main

if __name__ == "__main__":
    sys.exit(main())
