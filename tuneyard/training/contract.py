"""The runner contract shared by the runner and whoever supervises it. No torch here.

Files in a run directory, exit codes, signals and telemetry record kinds. The worker's
supervisor reads exactly these; changing one is changing the contract.
"""

from __future__ import annotations

import re
import signal

SPEC_FILE = "spec.json"
TELEMETRY_FILE = "telemetry.jsonl"
RESULT_FILE = "result.json"
CHECKPOINTS_DIR = "checkpoints"
FINAL_DIR = "final"
MANIFEST_FILE = "manifest.json"
LINEAGE_FILE = "lineage.json"  # optional, from the service: job and dataset ids for the model card
RUNNER_LOG_FILE = "runner.log"  # the child's stderr/stdout, kept for "died without a verdict"

SPEC_DEVICE_FIELD = "device"
"""spec.json's field naming the device the runner must train on (cpu | cuda): set by the service for a
job that requires one (003's `backend`); absent, the best device the runner's host has. A required
device the host lacks fails the run; it is never trained elsewhere (`training/device.py`)."""

JUDGE_KEY_VARIABLE = "TUNEYARD_JUDGE_API_KEY"
"""The runner's environment variable holding the evaluation judge's API key: the worker sets it from
its settings, so the key is in no spec, config or run file."""

CHECKPOINT_NAME = re.compile(r"^step-(\d{6,})$")


def checkpoint_dir_name(step: int) -> str:
    return f"step-{step:06d}"


def pruned_steps(steps: list[int], keep: int) -> list[int]:
    """The checkpoints (by step) that `save_total_limit = keep` deletes: all but the newest `keep`, and
    never the newest. One rule for the run folder and for its copy in run storage."""
    ordered = sorted(steps)
    return ordered[: max(0, len(ordered) - max(keep, 1))]


# Exit codes. Anything not listed is a failure that may be retried.
EXIT_COMPLETED = 0
EXIT_USER_ERROR = 3  # bad spec, data or model: never worth retrying
EXIT_STOPPED = 75  # stopped gracefully with a checkpoint; resumable (EX_TEMPFAIL)

# Signals the runner understands.
SIGNAL_STOP = signal.SIGTERM  # finish this optimizer step, checkpoint, exit 75; twice = abort
SIGNAL_ABORT = signal.SIGINT  # abort at once
SIGNAL_CHECKPOINT = signal.SIGUSR1  # checkpoint at the next step boundary, keep training

# Telemetry record kinds: one JSON object a line, each with "kind" and "ts" (unix seconds).
KIND_PHASE = "phase"  # {"phase": one of PHASES}
KIND_METRIC = "metric"  # step, epoch, phase, and the figures in METRIC_VALUES
KIND_EVAL = "eval"  # step and the figures in EVAL_VALUES
KIND_LOG = "log"  # level, message
KIND_CHECKPOINT = "checkpoint"  # step, path (relative to the run dir), epoch, tokens, loss,
#                                 pruned: the steps of older checkpoints deleted (save_total_limit)
KIND_RESULT = "result"  # the contents of result.json
KIND_ERROR = "error"  # error_type, message, details

PHASES = (
    "loading_model", "loading_data", "baseline_eval", "training", "saving", "final_eval", "done",
    "merging",  # merge: the adapter folded into its base and checked
    "growing",  # train: the model grown, its function preservation measured
    "pruning",  # contract: channels scored and removed
    "healing",  # contract: heal_steps of fine-tuning the contracted model on the calibration text
    "evaluating",  # evaluate: one model's loss and token accuracy on the held-out examples
    "generating",  # evaluate: one model's greedy (and sampled) answers to the held-out prompts
    "scoring",  # evaluate: the answers graded (by the judge, or the reference-based measures)
)

# The figures a record of each kind may carry beside its step (and a metric's epoch and phase); the
# worker stores exactly these as the point's values, so a new figure is added here and nowhere else.
METRIC_VALUES = (
    "loss",  # training loss of this optimizer step
    "lr",  # learning rate used for it
    "grad_norm",  # gradient norm before clipping
    "tokens",  # tokens trained on so far
    "tokens_per_s",  # throughput of this step
    "memory_gb",  # peak accelerator memory; on CPU the process's resident memory
    "elapsed_s",  # training seconds so far
    "eta_s",  # estimated seconds to the last step
    "total_steps",  # optimizer steps the run will take
    "preference_accuracy",  # dpo: share of the step's pairs whose preferred answer the policy rewards more
    "reward_margin",  # dpo: mean over the step's pairs of beta x (preferred's log-ratio - the other's)
)
EVAL_VALUES = (
    "eval_loss",  # mean loss on the evaluated rows
    "eval_ppl",  # exp(eval_loss)
    "eval_tokens",  # tokens evaluated
    "baseline",  # true for the evaluation before training
    "eval_on",  # "eval" (the evaluation split) or "train_sample" (no split: a sample of the training rows)
    "preference_accuracy",  # dpo: as the metric's, over the evaluated pairs
    "reward_margin",  # dpo: as the metric's, over the evaluated pairs
    "dpo_loss",  # dpo: mean DPO loss of the evaluated pairs (eval_loss is the preferred answers' token loss)
)
