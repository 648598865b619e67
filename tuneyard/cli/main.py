"""`tuneyard`: the command line. Each group lives in its own module and is added here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tuneyard.cli import catalog, datasets, jobs, keys, orgs, planning
from tuneyard.cli import serve as serve_command
from tuneyard.cli import trajectories as trajectory_commands
from tuneyard.cli.common import CliGroup, Globals
from tuneyard.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, cls=CliGroup, pretty_exceptions_enable=False,
                  help="tuneyard: fine-tuning jobs you host.")
app.command()(serve_command.serve)
app.command()(serve_command.worker)
app.add_typer(orgs.app, name="orgs")
app.add_typer(keys.app, name="keys")
app.add_typer(catalog.base_models, name="base-models")
app.add_typer(datasets.app, name="datasets")
app.add_typer(jobs.app, name="jobs")
app.add_typer(catalog.models, name="models")
app.add_typer(trajectory_commands.app, name="trajectories")
app.command("estimate")(planning.estimate)
app.add_typer(planning.templates, name="templates")


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(
        envvar="TUNEYARD_URL", show_envvar=False,
        help="The server (env TUNEYARD_URL; default http://TUNEYARD_HOST:TUNEYARD_PORT).")] = None,
    api_key: Annotated[str | None, typer.Option(
        envvar="TUNEYARD_API_KEY", show_envvar=False,
        help="An API key (env TUNEYARD_API_KEY; default the one in DATA_DIR/admin.key).")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="The data folder, for admin.key and `keys` (env TUNEYARD_DATA_DIR).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")] = False,
) -> None:
    """Global options come before the command: `tuneyard --json jobs list`."""
    settings = Settings.from_env().with_overrides(data_dir=data_dir)
    # A server listening on every interface is reached on loopback.
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    ctx.obj = Globals(url=url or f"http://{host}:{settings.port}", api_key=api_key or None,
                      data_dir=settings.data_dir, json=json_output)


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
