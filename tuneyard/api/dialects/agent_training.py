"""Document 003 (an agent's training API) at /api/training:
jobs in 003's words, cancel, models, import-ollama, activate, benchmark.

Its routes join 002's under the one dialect that owns the prefix (`training_api.dialect`).
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["training"])
