"""`tuneyard`: the command line. Each group lives in its own module and is added here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tuneyard.cli import serve as serve_command
from tuneyard.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="tuneyard: fine-tuning jobs you host.")
app.command()(serve_command.serve)
app.command()(serve_command.worker)


@app.command()
def train(
    spec: Annotated[Path, typer.Argument(help="The job spec, YAML or JSON.")],
    run_dir: Annotated[Path, typer.Option("--run-dir", help="Where this run's files go.")],
    resume: Annotated[str | None, typer.Option(help="latest, step-N, or a checkpoint folder.")] = None,
    model_cache_dir: Annotated[Path | None, typer.Option(help="Where built-in models are cached.")] = None,
) -> None:
    """Run one job in this process, without the service (exit 0 done, 75 stopped, 3 bad input)."""
    from tuneyard.training.runner import run

    cache = model_cache_dir or Settings.from_env().resolved_model_cache_dir
    raise typer.Exit(run(spec, run_dir, resume, cache))


if __name__ == "__main__":
    app()
