"""The runner's entry: one job, one process, one exit code (see contract.py).

Every failure is turned into a verdict here: user errors exit 3 and are never retried,
a graceful stop exits 75, anything unexpected is a failure with its traceback in the
telemetry so the supervisor can say why without reading the process's mind. A library's
exception that is known to mean the request's fault (failures.py) is a user error too.
"""

from __future__ import annotations

import json
import os
import traceback
from pathlib import Path
from typing import Any

from tuneyard.errors import CheckpointError, UnsupportedError, UserError
from tuneyard.spec import TrainingJobSpec
from tuneyard.training import artifacts, checkpoint, contract, failures, reporting
from tuneyard.training.attention_precision import decide_attention_precision
from tuneyard.training.config import RunConfig, read_spec_file, resolve
from tuneyard.training.control import AbortRequested, RunControl
from tuneyard.training.device import pick_device
from tuneyard.training.distributed import join_process_group, primary_first
from tuneyard.training.footprint import Footprint
from tuneyard.training.model_card import read_lineage
from tuneyard.training.models.catalog import builtin_defaults
from tuneyard.training.models.source import resolve_model_source
from tuneyard.training.precision import decide_bf16
from tuneyard.training.ranks import Ranks
from tuneyard.training.recipes import recipe_for
from tuneyard.training.run_storage import LocalRun, RunCopy
from tuneyard.training.telemetry import Telemetry


def run(spec_path: Path, run_dir: Path, resume: str | None, model_cache_dir: Path, ranks: Ranks | None = None,
        run_copy: RunCopy | None = None) -> int:
    """Train the job in `spec_path` into `run_dir` as rank `ranks` of its processes (one process
    alone by default), committing checkpoints and final/ to `run_copy` too (none by default); return
    the exit code."""
    ranks = ranks or Ranks()
    run_copy = run_copy or LocalRun()
    run_dir.mkdir(parents=True, exist_ok=True)
    # One telemetry stream: rank 0's. The others' records are dropped, and their console shows only
    # warnings and errors, so runner.log reads like one process's.
    if ranks.primary:
        telemetry = Telemetry(run_dir / contract.TELEMETRY_FILE)
    else:
        telemetry = Telemetry(Path(os.devnull), echo_info=False)
    control = RunControl()
    control.install()
    try:
        return _run(spec_path, run_dir, resume, model_cache_dir, ranks, telemetry, control, run_copy)
    except AbortRequested as exc:
        telemetry.log(f"{exc}; exiting without a checkpoint", level="warning")
        return 128 + exc.signum
    except Exception as exc:
        user_error = failures.classify(exc)
        if user_error is not None:
            return _user_error(user_error, telemetry)
        tail = traceback.format_exc().splitlines()[-20:]
        telemetry.emit(contract.KIND_ERROR, error_type="platform_error", message=f"{type(exc).__name__}: {exc}",
                       details={"traceback": tail})
        telemetry.log(f"failed: {type(exc).__name__}: {exc}", level="error")
        return 1
    finally:
        telemetry.close()


def _attach_reporting(resolved: dict[str, Any], run_dir: Path, telemetry: Telemetry) -> None:
    lineage = read_lineage(run_dir)
    # What the run is, in the user's words: the spec's model may be a server path, the lineage has the id asked for.
    shown: dict[str, Any] = {k: resolved[k] for k in ("type", "method", "hyperparams") if k in resolved}
    shown["base_model"] = lineage.get("base_model") or resolved.get("base_model")
    telemetry.attach(reporting.open_sink(resolved.get("wandb_project"), run_dir, lineage, shown,
                                         lambda message: telemetry.log(message, level="warning")))


def _user_error(exc: UserError, telemetry: Telemetry) -> int:
    """Report a user error, naming the field to change, and exit so that it is never retried."""
    message = failures.user_message(exc)
    details = {**exc.details, "field": failures.blamed_field(exc)}
    telemetry.emit(contract.KIND_ERROR, error_type=exc.error_type, message=message, details=details)
    telemetry.log(f"error: {message}", level="error")
    return contract.EXIT_USER_ERROR


def _run(
    spec_path: Path, run_dir: Path, resume: str | None, cache: Path, ranks: Ranks, telemetry: Telemetry,
    control: RunControl, run_copy: RunCopy,
) -> int:
    raw = read_spec_file(spec_path)
    base_model, method = raw.get("base_model"), raw.get("method", "lora")
    defaults = builtin_defaults(base_model, method) if isinstance(base_model, str) and isinstance(method, str) else {}
    config = resolve(raw, spec_path.resolve().parent, cache, defaults)
    config.ranks, config.run_copy = ranks, run_copy
    _check_processes(config)
    if ranks.primary:
        _attach_reporting(config.to_json(), run_dir, telemetry)
    build = recipe_for(config.spec.type)
    resume_from = _resume_point(run_dir, resume, telemetry, ranks)
    if resume_from is not None:
        _check_same_method(resume_from, config.method)
    join_process_group(ranks, config.device)
    if config.hyperparams.bf16 == "auto":
        primary_first(ranks, lambda: decide_bf16(pick_device(config.device), config.model_cache_dir))
    if config.hyperparams.bf16 is not False:  # ranks must attend alike: rank 0 measures, the rest read its verdict
        primary_first(ranks, lambda: decide_attention_precision(pick_device(config.device), config.model_cache_dir))
    if isinstance(config.spec, TrainingJobSpec):  # a built-in base is built once, by rank 0 (see primary_first)
        base_model = config.spec.base_model
        primary_first(ranks, lambda: resolve_model_source(base_model, config.model_cache_dir))
    recipe = build(config, run_dir, telemetry, control)
    footprint = Footprint.start(config.device)
    recipe.setup(resume_from)
    if ranks.primary:
        artifacts.write_json_atomic(run_dir / contract.SPEC_FILE, config.to_json())
    if recipe.run() == "stopped":
        return contract.EXIT_STOPPED
    if not ranks.primary:
        if config.strategy == "fsdp":  # sharded weights: the final evaluation and their gathering need all
            recipe.finish()
        return contract.EXIT_COMPLETED  # the model, its card and the result are rank 0's to write
    result = recipe.finish()
    if (run_dir / contract.FINAL_DIR).is_dir():  # an evaluation's result is its output: no final/
        run_copy.commit_folder(run_dir, run_dir / contract.FINAL_DIR)  # durable before the result says so
    result.update(footprint.report(config, recipe, result))
    artifacts.write_json_atomic(run_dir / contract.RESULT_FILE, result)
    telemetry.emit(contract.KIND_RESULT, **result)
    telemetry.phase("done")
    telemetry.log(_completed_line(result))
    run_copy.push_files(run_dir)
    return contract.EXIT_COMPLETED


def _completed_line(result: dict[str, Any]) -> str:
    """The last log line: perplexity before → after, where the job measured it."""
    before, after = result.get("ppl_baseline"), result.get("ppl_final")
    if isinstance(before, float) and isinstance(after, float):  # null where a job had no text to measure
        return f"completed: ppl {before:.3f} → {after:.3f}"
    return "completed"


def _check_processes(config: RunConfig) -> None:
    """The processes the spec asks for are the ones the launcher started, and they can train it."""
    asked = config.spec.processes() if isinstance(config.spec, TrainingJobSpec) else None
    world = config.ranks.world_size
    if asked is not None and asked.world_size != world:
        raise UserError(f"distributed.num_processes: the spec asks for {asked.num_processes} process(es) on "
                        f"{asked.num_nodes} node(s) and this runner was launched as {world}; launch it with python -m "
                        f"tuneyard.training.launch --nproc-per-node {asked.num_processes} (a worker does)",
                        field="distributed.num_processes")
    if world > 1 and (asked is None or config.spec.type != "finetune" or config.method == "dpo"):
        raise UnsupportedError(f"a {config.spec.type} job with method {config.method} trains in one process; "
                               "only next-token fine-tuning is data-parallel", field="distributed.num_processes")


def _resume_point(run_dir: Path, resume: str | None, telemetry: Telemetry, ranks: Ranks) -> Path | None:
    # Rank 0 alone tidies the folder; the others find the same sealed checkpoints, never a half-made one.
    removed_now = checkpoint.clean_incomplete(run_dir) if ranks.primary else []
    for removed in removed_now:
        telemetry.log(f"removed incomplete checkpoint {removed.name}", level="warning")
    if resume is None:
        if checkpoint.complete_checkpoints(run_dir):
            raise CheckpointError(f"{run_dir} already holds checkpoints: pass --resume latest, or use a new run dir")
        return None
    return checkpoint.locate(run_dir, resume)


def _check_same_method(folder: Path, method: str) -> None:
    """A checkpoint holds the trainable weights of the method that wrote it (an adapter, or every
    weight): continuing it with another method would fail deep inside the restore, or worse not."""
    try:
        saved = json.loads((folder / checkpoint.SPEC_FILE).read_text(encoding="utf-8")).get("method")
    except (OSError, ValueError, AttributeError):
        return  # an older checkpoint without a readable spec: the restore itself will judge it
    if isinstance(saved, str) and saved != method:
        raise CheckpointError(f"method: the checkpoint {folder.name} was trained with method {saved!r}, "
                              f"and this job's method is {method!r}; resume it with {saved!r}",
                              field="method", checkpoint=folder.name)
