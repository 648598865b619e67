"""What every client command shares: global options, one error boundary, and output helpers.

Errors become one line on stderr and an exit code (2 usage, 1 API or service, 130 Ctrl-C) in
`CliGroup.invoke`, the single place they are caught, so no command needs its own try/except.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from tuneyard.client import NoApiKey, TuneyardAPIError, TuneyardClient
from tuneyard.errors import SettingsError, TuneyardError

EXIT_API = 1
EXIT_USAGE = 2
EXIT_STOPPED = 75
EXIT_INTERRUPTED = 130
# Wide enough that ids are never cut when the output is piped; a terminal uses its own width.
PIPE_WIDTH = 200


@dataclass(frozen=True)
class Globals:
    """The global options, resolved once by the root callback."""

    url: str
    api_key: str | None
    data_dir: Path
    json: bool

    def client(self) -> TuneyardClient:
        return connect(self)


def connect(options: Globals) -> TuneyardClient:
    """The client commands talk through; unit tests replace this function with a stub."""
    return TuneyardClient(options.url, options.api_key, data_dir=options.data_dir)


def options(ctx: typer.Context) -> Globals:
    found = ctx.find_object(Globals)
    if found is None:  # a command invoked without the root callback, e.g. in a test
        raise RuntimeError("global options are missing: invoke through tuneyard.cli.main.app")
    return found


stdout = Console(width=None if sys.stdout.isatty() else PIPE_WIDTH, highlight=False)
stderr = Console(stderr=True, width=None if sys.stderr.isatty() else PIPE_WIDTH, highlight=False)


def error_line(message: str) -> None:
    # soft_wrap: one logical line stays one line, whatever the width.
    stderr.print(f"error: {message}", markup=False, soft_wrap=True)


def usage_error(message: str) -> NoReturn:
    error_line(message)
    raise typer.Exit(EXIT_USAGE)


def api_error_lines(exc: TuneyardAPIError) -> list[str]:
    """The envelope's message, then each field problem of a 422 on its own line."""
    problems = exc.details.get("problems") if isinstance(exc.details, dict) else None
    # A 422's message summarises its problems after a colon; they follow one per line instead.
    message = exc.message.partition(": ")[0] if problems else exc.message
    lines = [f"{message} ({exc.status} {exc.code})"]
    for problem in problems or []:
        if isinstance(problem, dict):
            lines.append(f"  {problem.get('field', '?')}: {problem.get('message', '')}")
    if exc.retry_after_s is not None:
        lines.append(f"  retry after {exc.retry_after_s} s")
    return lines


class CliGroup(TyperGroup):
    """The root group: turns every expected failure into a one-line message and an exit code."""

    # Typed Any: typer's own click Context (typer._click) is private to typer.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except TuneyardAPIError as exc:
            lines = api_error_lines(exc)
            error_line(lines[0])
            for line in lines[1:]:
                stderr.print(line, markup=False, soft_wrap=True)
            raise typer.Exit(EXIT_API) from None
        except NoApiKey as exc:
            error_line(f"{exc} (or set TUNEYARD_API_KEY)")
            raise typer.Exit(EXIT_USAGE) from None
        except httpx.HTTPError as exc:
            url = ctx.find_object(Globals)
            where = f" at {url.url}" if url else ""
            error_line(f"cannot reach tuneyard{where}: {exc or type(exc).__name__}")
            raise typer.Exit(EXIT_API) from None
        except SettingsError as exc:  # a TUNEYARD_ variable this process was started with
            usage_error(exc.message)
        except TuneyardError as exc:  # from `keys`, which works on the database directly
            error_line(exc.message)
            raise typer.Exit(EXIT_API) from None
        except KeyboardInterrupt:
            error_line("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None


# -- output -----------------------------------------------------------------------------------


def emit_json(value: Any) -> None:
    """Machine-readable output: one JSON document on stdout."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
    sys.stdout.flush()


def report(opts: Globals, value: Any, text: str) -> None:
    """`value` as JSON under --json, else `text` for people."""
    if opts.json:
        emit_json(value)
    else:
        stdout.print(text, markup=False, soft_wrap=True)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    grid = Table(*columns, box=None, header_style="bold", pad_edge=False)
    for row in rows:
        grid.add_row(*(cell_text(v) for v in row))
    stdout.print(grid)


def fields(pairs: Iterable[tuple[str, Any]]) -> None:
    """A record as aligned `key  value` lines, skipping empty values."""
    shown = [(k, cell_text(v)) for k, v in pairs if v not in (None, "", [], {})]
    width = max((len(k) for k, _ in shown), default=0)
    for key, value in shown:
        stdout.print(f"{key.ljust(width)}  {value}", markup=False, soft_wrap=True)


def cell_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        return when(value.isoformat())
    return str(value)


def when(iso: str | None) -> str:
    """An API timestamp as local `YYYY-MM-DD HH:MM:SS`."""
    if not iso:
        return "-"
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
