"""`tuneyard jobs`: submit, watch, steer and collect fine-tuning jobs."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any

import typer

from tuneyard.cli import follow as following
from tuneyard.cli.common import (
    EXIT_API,
    Globals,
    duration,
    emit_json,
    error_line,
    fields,
    options,
    report,
    size,
    stderr,
    stdout,
    table,
    usage_error,
    when,
)
from tuneyard.cli.datasets import problem_lines, upload_dataset
from tuneyard.cli.jobspec import SpecUsageError, Uploader, build_request
from tuneyard.client import TuneyardClient
from tuneyard.problems import error_detail_lines

app = typer.Typer(help="Fine-tuning jobs.", no_args_is_help=True)

JobId = Annotated[str, typer.Argument(help="The job's id (job_...).")]
Follow = Annotated[bool, typer.Option("--follow", "-f", help="Show live progress; exit with the job's outcome.")]
STATUSES = ("queued", "starting", "running", "finalizing", "stopping", "stopped", "completed", "failed", "cancelling",
            "cancelled")


def _progress(job: dict[str, Any]) -> str:
    progress = job.get("progress") or {}
    step, total = progress.get("step"), progress.get("total_steps")
    if step is None:
        return "-"
    return f"{step}/{total or '?'}" + (f" ({progress['percent']:.0f}%)" if progress.get("percent") is not None else "")


def show_job(job: dict[str, Any]) -> None:
    spec = job.get("spec") or {}
    datasets = ", ".join(next(iter(str(v) for k, v in d.items() if k in ("id", "name", "path")), "?")
                         for d in spec.get("datasets") or [] if isinstance(d, dict))
    error = job.get("error") or {}
    fields([
        ("id", job["id"]), ("name", job.get("name")), ("status", job["status"]), ("type", job["type"]),
        ("base model", spec.get("base_model")), ("method", spec.get("method", "lora")), ("datasets", datasets),
        ("progress", _progress(job)), ("loss", job.get("loss")), ("eta", duration(
            (job.get("progress") or {}).get("eta_s")) if job["status"] == "running" else None),
        ("retries", f"{job['retries']} of {job['max_retries']}"), ("checkpoint step", job.get("last_checkpoint_step")),
        ("output model", job.get("output_model_id")), ("project", job.get("project_id")),
        ("created", when(job["created_at"])), ("started", _when_set(job.get("started_at"))),
        ("finished", _when_set(job.get("finished_at"))),
        ("error", f"{error.get('error_type', 'error')}: {error.get('message')}" if error else None),
        *(("", line) for line in error_detail_lines(error.get("details"))),
    ])


def _when_set(iso: str | None) -> str | None:
    return when(iso) if iso else None


def _follow_and_exit(opts: Globals, client: TuneyardClient, job_id: str) -> None:
    code, job = following.follow_job(client, job_id, quiet=opts.json)
    if opts.json:
        emit_json(job)
    elif code != following.EXIT_INTERRUPTED:
        for line in following.outcome_lines(job):
            stdout.print(line, markup=False, soft_wrap=True)
    raise typer.Exit(code)


def _uploader(client: TuneyardClient, quiet: bool) -> Uploader:
    """Uploads a spec's local data file once: a dataset named after its content is reused."""
    def upload(path: Path, data_format: str) -> str:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        name = f"{path.stem}-{digest}"
        known = [d for d in client.list_datasets() if d["name"] == name and d["status"] == "ready"]
        if known:
            return str(known[0]["id"])
        dataset = upload_dataset(client, [path], name, data_format, quiet=quiet)
        if dataset["status"] != "ready":
            error_line(f"dataset {path} is invalid:")
            for line in problem_lines(dataset, [path.name]):
                stderr.print(line, markup=False, soft_wrap=True)
            raise typer.Exit(EXIT_API)
        return str(dataset["id"])
    return upload


@app.command("create")
def create(
    ctx: typer.Context,
    spec_file: Annotated[Path | None, typer.Argument(help="A job spec (YAML or JSON); flags override it.",
                                                     exists=True, dir_okay=False)] = None,
    job_type: Annotated[str | None, typer.Option("--type", help=(
        "finetune (default), train (grow, then train), contract or merge; --set then names its fields."))] = None,
    base_model: Annotated[str | None, typer.Option("--base-model", help="A base model id.")] = None,
    dataset: Annotated[list[str] | None, typer.Option("--dataset", help="A dataset name or id (repeat).")] = None,
    method: Annotated[str | None, typer.Option(help="lora, qlora or full.")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="A hyperparameter, name=value (repeat).")] = None,
    name: Annotated[str | None, typer.Option(help="A label for people.")] = None,
    project: Annotated[str | None, typer.Option(help="The project id the job belongs to.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Retries with the same key create one job.")] = None,
    follow: Follow = False,
) -> None:
    """Submit a job; `path:` datasets in the spec file are uploaded first."""
    opts = options(ctx)
    with opts.client() as client:
        try:
            body = build_request(spec_file, base_model=base_model, datasets=dataset or [], method=method,
                                 sets=sets or [], name=name, project=project, upload=_uploader(client, opts.json),
                                 job_type=job_type)
        except SpecUsageError as exc:
            usage_error(str(exc))
        job = client.create_job(body, idempotency_key=idempotency_key)
        if not follow:
            report(opts, job, f"{job['id']} {job['status']}")
            return
        if not opts.json:
            stdout.print(f"{job['id']} {job['status']}; following (Ctrl-C leaves it running)", markup=False)
        _follow_and_exit(opts, client, job["id"])


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help=f"One of {', '.join(STATUSES)}.")] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="finetune, train, contract or merge.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many, newest first.")] = 20,
) -> None:
    """The organization's jobs, newest first."""
    opts = options(ctx)
    if status is not None and status not in STATUSES:
        usage_error(f"--status {status!r} is not one of {', '.join(STATUSES)}")
    with opts.client() as client:
        page = client.list_jobs(status=status, type=job_type, limit=limit)
    if opts.json:
        emit_json(page["data"])
        return
    table(["ID", "NAME", "STATUS", "BASE MODEL", "PROGRESS", "LOSS", "CREATED"],
          [(j["id"], j.get("name"), j["status"], (j.get("spec") or {}).get("base_model"), _progress(j),
            j.get("loss"), when(j["created_at"])) for j in page["data"]])
    if page.get("has_more"):
        stdout.print(f"(more: raise --limit above {limit})", style="dim")


@app.command("get")
def get(ctx: typer.Context, job_id: JobId, follow: Follow = False) -> None:
    """One job; with --follow, watch it until it rests and exit with its outcome."""
    opts = options(ctx)
    with opts.client() as client:
        if follow:
            _follow_and_exit(opts, client, job_id)
        job = client.get_job(job_id)
    if opts.json:
        emit_json(job)
    else:
        show_job(job)


@app.command("logs")
def logs(
    ctx: typer.Context, job_id: JobId,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until the job ends.")] = False,
    tail: Annotated[int | None, typer.Option(min=1, help="Only the last N lines.")] = None,
) -> None:
    """The job's log lines; -f follows them live, resuming if the connection drops."""
    opts = options(ctx)
    with opts.client() as client:
        if follow:
            raise typer.Exit(following.follow_logs(client, job_id, tail))
        lines = client.logs(job_id, tail=tail)
    if opts.json:
        emit_json(lines)
        return
    for line in lines:
        following.print_log(line)


def _act(ctx: typer.Context, job_id: str, verb: str, checkpoint: str | None = None) -> None:
    opts = options(ctx)
    with opts.client() as client:
        if verb == "stop":
            job = client.stop_job(job_id)
        elif verb == "cancel":
            job = client.cancel_job(job_id)
        else:
            job = client.resume_job(job_id, checkpoint)
    report(opts, job, f"{job['id']} {job['status']}")


@app.command("stop")
def stop(ctx: typer.Context, job_id: JobId) -> None:
    """Stop gracefully: the job checkpoints and becomes `stopped` (resumable)."""
    _act(ctx, job_id, "stop")


@app.command("resume")
def resume(
    ctx: typer.Context, job_id: JobId,
    checkpoint: Annotated[str | None, typer.Option(help="A checkpoint id of this job (default: the latest).")] = None,
) -> None:
    """Queue a stopped job again under the same id, from a checkpoint."""
    _act(ctx, job_id, "resume", checkpoint)


@app.command("cancel")
def cancel(ctx: typer.Context, job_id: JobId) -> None:
    """Cancel: the runner is terminated and the job becomes `cancelled`."""
    _act(ctx, job_id, "cancel")


@app.command("delete")
def delete(
    ctx: typer.Context, job_id: JobId,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a resting job and its files."""
    opts = options(ctx)
    if not yes:
        typer.confirm(f"delete job {job_id} and all its files?", abort=True)
    with opts.client() as client:
        client.delete_job(job_id)
    report(opts, {"id": job_id, "deleted": True}, f"deleted {job_id}")


@app.command("download")
def download(
    ctx: typer.Context, job_id: JobId,
    output: Annotated[Path, typer.Option("--output", "-o", help="A file, or a folder for JOB_ID.tar.gz.")] = Path("."),
) -> None:
    """Save the trained model (a .tar.gz archive)."""
    opts = options(ctx)
    with opts.client() as client:
        path = client.download(job_id, output)
    written = path.stat().st_size
    report(opts, {"path": str(path), "bytes": written}, f"saved {path} ({size(written)})")
