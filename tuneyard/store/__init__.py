"""The only code that speaks SQL: engine, tables, the job status machine, repositories, migrations."""

from __future__ import annotations

from tuneyard.store import activation_tables as _activation_tables  # noqa: F401 - registers its table
from tuneyard.store import template_tables as _template_tables  # noqa: F401 - registers its table
from tuneyard.store import trajectory_tables as _trajectory_tables  # noqa: F401 - registers its tables
from tuneyard.store.engine import Database, make_engine
from tuneyard.store.migrate import migrate

__all__ = ["Database", "make_engine", "migrate"]
