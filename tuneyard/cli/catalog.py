"""`tuneyard base-models` (what can be fine-tuned) and `tuneyard models` (what jobs produced)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tuneyard.cli.common import emit_json, options, stdout, table, usage_error, when

base_models = typer.Typer(help="Base models: the built-in ones and those registered.", no_args_is_help=True)
models = typer.Typer(help="Trained models, the output of completed jobs.", no_args_is_help=True)

KINDS = ("auto", "local", "gguf", "hub")


def _base_row(m: dict[str, Any]) -> tuple[Any, ...]:
    return (m["id"], m["source_kind"], m.get("name"), m.get("architecture"), m.get("parameters"),
            m.get("context_length"), ",".join(m.get("methods") or []))


@base_models.command("list")
def list_base_models(ctx: typer.Context) -> None:
    """Base models this organization can fine-tune."""
    opts = options(ctx)
    with opts.client() as client:
        items = client.list_base_models()
    if opts.json:
        emit_json(items)
        return
    table(["ID", "KIND", "NAME", "ARCHITECTURE", "PARAMETERS", "CONTEXT", "METHODS"], map(_base_row, items))


@base_models.command("register")
def register(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="A folder or .gguf file under a model root, or a hub id.")],
    name: Annotated[str | None, typer.Option(help="A label for people.")] = None,
    kind: Annotated[str, typer.Option(help=f"One of {', '.join(KINDS)}; detected when auto.")] = "auto",
    description: Annotated[str | None, typer.Option(help="What the model is.")] = None,
) -> None:
    """Register a base model by its source, checked by the server."""
    opts = options(ctx)
    if kind not in KINDS:
        usage_error(f"--kind {kind!r} is not one of {', '.join(KINDS)}")
    with opts.client() as client:
        model = client.register_base_model(source, kind=kind, name=name, description=description)
    if opts.json:
        emit_json(model)
        return
    stdout.print(f"registered {model['id']} ({model['source_kind']}: {model['source']})", markup=False)


@models.command("list")
def list_models(ctx: typer.Context) -> None:
    """Models trained by this organization's jobs."""
    opts = options(ctx)
    with opts.client() as client:
        items = client.list_models()
    if opts.json:
        emit_json(items)
        return
    table(["ID", "KIND", "BASE MODEL", "JOB", "CREATED"],
          [(m["id"], m["kind"], m["lineage"]["base_model"], m["lineage"].get("job_id"), when(m["created_at"]))
           for m in items])


FIGURES = ("loss", "perplexity", "token_accuracy", "exact_match", "rouge_l")
SCORES = ("coherence", "consistency", "helpfulness")


@models.command("evaluate")
def evaluate(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(help="The trained model to evaluate beside its base.")],
    dataset: Annotated[str | None, typer.Option(help=(
        "A dataset id or name evaluated whole; by default what the model's training held out."))] = None,
    max_examples: Annotated[int | None, typer.Option(help="Held-out examples evaluated at most.")] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Wait for it and print its figures.")] = False,
) -> None:
    """Evaluate a trained model beside its base on held-out text (an evaluate job)."""
    from tuneyard.cli.follow import follow_job, outcome_lines

    opts = options(ctx)
    with opts.client() as client:
        evaluation = client.evaluate_model(model_id, dataset=dataset, max_examples=max_examples)
        if not follow:
            if opts.json:
                emit_json(evaluation)
            else:
                stdout.print(f"evaluation {evaluation['id']} {evaluation['status']}: "
                             f"`tuneyard jobs get {evaluation['id']} --follow` to watch it", markup=False)
            return
        code, job = follow_job(client, evaluation["id"], quiet=opts.json)
        evaluation = client.get_evaluation(evaluation["id"])
    if opts.json:
        emit_json(evaluation)
    elif evaluation["status"] == "completed":
        _print_evaluation(evaluation)
    else:
        for line in outcome_lines(job):
            stdout.print(line, markup=False)
    if code:
        raise typer.Exit(code)


def _print_evaluation(evaluation: dict[str, Any]) -> None:
    base, trained = evaluation["base"] or {}, evaluation["trained"] or {}
    rows = [(name, _figure(base.get(name)), _figure(trained.get(name))) for name in FIGURES]
    rows += [(name, _figure((base.get("scores") or {}).get(name)), _figure((trained.get("scores") or {}).get(name)))
             for name in SCORES]
    table(["FIGURE", f"BASE ({evaluation['compare_with']})", "TRAINED"], rows)
    stdout.print(f"{evaluation['examples']} held-out examples; scores by {evaluation['method']}", markup=False)


def _figure(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "—"
