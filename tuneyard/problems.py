"""The problems a failed job or a refused request carries, as lines a person reads.

A job's `error.details` holds what the runner found: `problems` (spec fields) or `errors` (data
lines), each item naming the offending field or file line. The CLI and the console show them
under the one-line message, the same way, so a user sees which field or line to fix.
"""

from __future__ import annotations

from typing import Any

SHOWN = 10
"""More than this many problems are summarised as a count: the full list stays in the API."""


def error_detail_lines(details: Any, limit: int = SHOWN) -> list[str]:
    """One line per problem in `details` (field problems, then data lines), at most `limit` and a count."""
    if not isinstance(details, dict):
        return []
    lines = [_line(item) for key in ("problems", "errors") for item in details.get(key) or [] if isinstance(item, dict)]
    if len(lines) > limit:
        return [*lines[:limit], f"… and {len(lines) - limit} more"]
    return lines


def _line(item: dict[str, Any]) -> str:
    message = str(item.get("message", ""))
    if "field" in item:
        return f"{item['field']}: {message}"
    line = f"line {item['line']}" if "line" in item else None
    where = " ".join(str(part) for part in (item.get("file"), line) if part)
    return f"{where}: {message}" if where else message
