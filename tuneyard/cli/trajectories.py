"""`tuneyard trajectories`: list, show and import agent trajectories, and build datasets from them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from tuneyard.cli.common import emit_json, options, stdout, table

app = typer.Typer(help="Agent trajectories and the datasets built from them.", no_args_is_help=True)


def _time(epoch_ms: int | None) -> str:
    return "-" if epoch_ms is None else datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


@app.command("list")
def list_trajectories(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    task: Annotated[str | None, typer.Option(help="Only this task's.")] = None,
    status: Annotated[str | None, typer.Option(help="completed, failed or running.")] = None,
    source: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Newest first, with how many match in all."""
    opts = options(ctx)
    with opts.client() as client:
        page = client.list_trajectories(limit=limit, offset=offset, task=task, status=status, source=source)
    if opts.json:
        emit_json(page)
        return
    rows = [[t["id"], t["status"], t["task"] or "-", t["source"], str(t["llmCallCount"]), _time(t["startTime"])]
            for t in page["trajectories"]]
    table(["ID", "STATUS", "TASK", "SOURCE", "CALLS", "STARTED"], rows)
    stdout.print(f"{offset + len(rows)} of {page['total']}", markup=False)


@app.command("show")
def show(ctx: typer.Context, trajectory_id: str) -> None:
    """One trajectory with its calls as a chat."""
    opts = options(ctx)
    with opts.client() as client:
        trajectory = client.get_trajectory(trajectory_id)
    if opts.json:
        emit_json(trajectory)
        return
    stdout.print(f"{trajectory['id']}: {trajectory['status']}, task {trajectory['task'] or '-'}, "
                 f"source {trajectory['source']}, started {_time(trajectory['startTime'])}", markup=False)
    for number, call in enumerate(trajectory["llmCalls"], start=1):
        stdout.print(f"\ncall {number} ({call['model']})", markup=False)
        for message in call["messages"]:
            stdout.print(f"  {message['role']}: {message['content']}", markup=False, soft_wrap=True)
        stdout.print(f"  assistant: {call['response']}", markup=False, soft_wrap=True)


@app.command("import")
def import_file(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="OpenAI-style chat logs, one JSON object a line.", exists=True,
                                         dir_okay=False, readable=True)],
    source: Annotated[str, typer.Option(help="The source the trajectories are recorded with.")] = "import",
    task: Annotated[str | None, typer.Option(help="The task of lines that name none.")] = None,
) -> None:
    """Import chat logs; any bad line refuses the whole file (each named by its number)."""
    opts = options(ctx)
    with opts.client() as client:
        done = client.import_trajectories(file.read_bytes(), source=source, task=task)
    if opts.json:
        emit_json(done)
        return
    stdout.print(f"imported {len(done['created'])} trajectories ({len(done['existing'])} already there)",
                 markup=False)


@app.command("build")
def build(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(help="The dataset's name (default: from its content).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many trajectories, the latest.")] = None,
    min_calls: Annotated[int | None, typer.Option("--min-calls", min=1, help="Minimum LLM calls each.")] = None,
    status: Annotated[list[str] | None, typer.Option(help="Statuses to take (repeat); completed by default.")] = None,
    task: Annotated[str | None, typer.Option()] = None,
    source: Annotated[str | None, typer.Option()] = None,
    model: Annotated[str | None, typer.Option(help="Only calls to this model.")] = None,
    since: Annotated[int | None, typer.Option(help="Started at or after (epoch ms).")] = None,
    until: Annotated[int | None, typer.Option(help="Started before (epoch ms).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count only; build nothing.")] = False,
) -> None:
    """Build a dataset from the trajectories that match (the same filters again give the same dataset)."""
    opts = options(ctx)
    with opts.client() as client:
        built = client.build_dataset(name=name, limit=limit, minLlmCallsPerTrajectory=min_calls, status=status,
                                     task=task, source=source, model=model, since=since, until=until,
                                     dryRun=dry_run or None)
    if opts.json:
        emit_json(built)
    elif dry_run:
        stdout.print(f"{built['trajectoryCount']} trajectories, {built['exampleCount']} examples", markup=False)
    else:
        stdout.print(f"dataset {built['name']} ({built['id']}): {built['status']}, {built['trajectoryCount']} "
                     f"trajectories, {built['exampleCount']} examples", markup=False)
