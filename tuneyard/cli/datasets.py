"""`tuneyard datasets`: upload files as a dataset, wait for validation, list and inspect."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tuneyard.cli.common import EXIT_API, emit_json, fields, options, size, stdout, table, usage_error, when
from tuneyard.client import TuneyardClient
from tuneyard.spec.formats import format_choices

app = typer.Typer(help="Datasets: uploaded files, validated line by line.", no_args_is_help=True)

FORMATS = format_choices()


def upload_dataset(client: TuneyardClient, files: list[Path], name: str, data_format: str = "auto",
                   *, quiet: bool = False) -> dict[str, Any]:
    """Upload `files`, create the dataset and return it once validated (ready or invalid)."""
    file_ids = []
    for path in files:
        uploaded = client.upload_file(path)
        file_ids.append(uploaded["id"])
        if not quiet:
            stdout.print(f"uploaded {path.name} as {uploaded['id']} ({size(uploaded['bytes'])})", markup=False)
    dataset = client.create_dataset(name, file_ids, format=data_format)
    if not quiet:
        stdout.print(f"dataset {dataset['name']} ({dataset['id']}): validating", markup=False)
    return client.wait_dataset(dataset["id"])


def problem_lines(dataset: dict[str, Any], names: list[str] | None = None) -> list[str]:
    """Each validation problem as `file line N: message`."""
    labels = names or list(dataset["file_ids"])
    lines = []
    for error in dataset.get("errors") or []:
        index = error.get("file_index")
        file = labels[index] if isinstance(index, int) and 0 <= index < len(labels) else "?"
        lines.append(f"  {file} line {error.get('line', '?')}: {error.get('message', '')}")
    return lines


def _summary(dataset: dict[str, Any]) -> str:
    return (f"{dataset['status']}: {dataset.get('examples') or 0:,} examples, "
            f"~{dataset.get('tokens_est') or 0:,} tokens, format {dataset['format']}")


@app.command("upload")
def upload(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="JSONL, CSV or Parquet files.", exists=True, dir_okay=False,
                                                readable=True)],
    name: Annotated[str | None, typer.Option(help="The dataset's name (default: the first file's stem).")] = None,
    data_format: Annotated[str, typer.Option("--format", help=f"One of {', '.join(FORMATS)}.")] = "auto",
) -> None:
    """Upload files as one dataset and wait for validation; exit 1 when it is invalid."""
    opts = options(ctx)
    if data_format not in FORMATS:
        usage_error(f"--format {data_format!r} is not one of {', '.join(FORMATS)}")
    with opts.client() as client:
        dataset = upload_dataset(client, files, name or files[0].stem, data_format, quiet=opts.json)
    if opts.json:
        emit_json(dataset)
    else:
        stdout.print(_summary(dataset), markup=False)
    if dataset["status"] == "invalid":
        for line in problem_lines(dataset, [f.name for f in files]):
            stdout.print(line, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_API)


@app.command("list")
def list_datasets(ctx: typer.Context) -> None:
    """The organization's datasets."""
    opts = options(ctx)
    with opts.client() as client:
        items = client.list_datasets()
    if opts.json:
        emit_json(items)
        return
    table(["ID", "NAME", "STATUS", "FORMAT", "EXAMPLES", "TOKENS", "SIZE", "CREATED"],
          [(d["id"], d["name"], d["status"], d["format"], d.get("examples"), d.get("tokens_est"),
            size(d.get("bytes")), when(d["created_at"])) for d in items])


@app.command("get")
def get(ctx: typer.Context, dataset_id: Annotated[str, typer.Argument(help="The dataset's id (ds_...).")]) -> None:
    """One dataset, with its validation problems if any."""
    opts = options(ctx)
    with opts.client() as client:
        dataset = client.get_dataset(dataset_id)
    if opts.json:
        emit_json(dataset)
        return
    fields([("id", dataset["id"]), ("name", dataset["name"]), ("status", dataset["status"]),
            ("format", dataset["format"]), ("examples", dataset.get("examples")),
            ("tokens", dataset.get("tokens_est")), ("size", size(dataset.get("bytes"))),
            ("files", ", ".join(dataset["file_ids"])), ("created", when(dataset["created_at"]))])
    for line in problem_lines(dataset):
        stdout.print(line, markup=False, soft_wrap=True)
