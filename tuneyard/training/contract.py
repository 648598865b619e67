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
RUNNER_LOG_FILE = "runner.log"  # the child's stderr/stdout, kept for "died without a verdict"

CHECKPOINT_NAME = re.compile(r"^step-(\d{6,})$")


def checkpoint_dir_name(step: int) -> str:
    return f"step-{step:06d}"


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
KIND_METRIC = "metric"  # step, total_steps, epoch, phase, loss, lr, grad_norm, tokens, tokens_per_s,
#                         memory_gb, elapsed_s, eta_s
KIND_EVAL = "eval"  # step, eval_loss, eval_ppl, eval_tokens; "baseline": true before training
KIND_LOG = "log"  # level, message
KIND_CHECKPOINT = "checkpoint"  # step, path (relative to the run dir), epoch, tokens, loss,
#                                 pruned: the steps of older checkpoints deleted (save_total_limit)
KIND_RESULT = "result"  # the contents of result.json
KIND_ERROR = "error"  # error_type, message, details

PHASES = ("loading_model", "loading_data", "baseline_eval", "training", "saving", "final_eval", "done")
