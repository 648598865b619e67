"""`tuneyard estimate` (what a job would need, take and cost) and `tuneyard templates` (what jobs start from)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tuneyard.cli.common import emit_json, options, report, stdout, table, usage_error
from tuneyard.cli.jobspec import SpecUsageError, build_request, load_spec_file


def _no_upload(path: Path, data_format: str) -> str:
    # an estimate stores nothing: a local file would have to become a dataset first
    raise SpecUsageError(f"{path} is a local file: upload it (tuneyard datasets create) and name the dataset")


def estimate(
    ctx: typer.Context,
    spec_file: Annotated[Path | None, typer.Argument(help="A job spec (YAML or JSON); flags override it.",
                                                     exists=True, dir_okay=False)] = None,
    base_model: Annotated[str | None, typer.Option("--base-model", help="A base model id.")] = None,
    dataset: Annotated[list[str] | None, typer.Option("--dataset", help="A dataset name or id (repeat).")] = None,
    method: Annotated[str | None, typer.Option(help="lora, qlora or full.")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="A hyperparameter, name=value (repeat).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda; by default where the last job ran.")] = None,
) -> None:
    """Peak memory by component, time and cost of a job, without submitting it."""
    opts = options(ctx)
    try:
        body = build_request(spec_file, base_model=base_model, datasets=dataset or [], method=method,
                             sets=sets or [], name=None, project=None, upload=_no_upload)
    except SpecUsageError as exc:
        usage_error(str(exc))
    with opts.client() as client:
        answer = client.estimate(body, device=device)
    if opts.json:
        emit_json(answer)
        return
    show_estimate(answer)


def show_estimate(answer: dict[str, Any]) -> None:
    memory, time, cost = answer["memory"], answer["time"], answer["cost"]
    stdout.print(f"{answer['base_model']} ({answer['model_params']:,} parameters), {answer['method']}, "
                 f"on {answer['device']}", markup=False)
    stdout.print(f"peak memory {_gb(memory['peak_bytes'])} (±{memory['band_pct']} %)", markup=False)
    table(["COMPONENT", "GB"], [(k, _gb(v)) for k, v in memory["components"].items() if v])
    if time["seconds"] is None:
        stdout.print(f"time: not estimated: {time['source']}", markup=False, soft_wrap=True)
    else:
        stdout.print(f"time {time['seconds']:.0f} s ({time['low']:.0f}-{time['high']:.0f} s; {time['source']})",
                     markup=False, soft_wrap=True)
    if cost["usd"] is not None:
        stdout.print(f"cost ${cost['usd']:.4f} (${cost['low']:.4f}-${cost['high']:.4f} at "
                     f"${cost['price_per_device_hour']}/h)", markup=False)


def _gb(value: int) -> str:
    return f"{value / 1e9:.3f}"


templates = typer.Typer(help="Job templates: partial job specs a submission names as `template` and overrides.",
                        no_args_is_help=True)


@templates.command("list")
def list_templates(ctx: typer.Context) -> None:
    """Built-in templates, then your organization's."""
    opts = options(ctx)
    with opts.client() as client:
        items = client.list_templates()
    if opts.json:
        emit_json(items)
        return
    table(["NAME", "TYPE", "BUILT-IN", "AVAILABLE", "DESCRIPTION"],
          [(t["name"], t["type"], t["builtin"], t["available"], t["description"]) for t in items])


@templates.command("create")
def create_template(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="What submissions give as `template`.")],
    spec_file: Annotated[Path, typer.Argument(help="A partial job spec (YAML or JSON).", exists=True, dir_okay=False)],
    description: Annotated[str, typer.Option(help="What the template is for.")] = "",
) -> None:
    """Save a partial job spec as your organization's template."""
    opts = options(ctx)
    try:
        spec = load_spec_file(spec_file)
    except SpecUsageError as exc:
        usage_error(str(exc))
    with opts.client() as client:
        saved = client.create_template(name, spec, description)
    report(opts, saved, f"template {saved['name']} saved")
