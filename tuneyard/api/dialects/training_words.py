"""Document 002's words (a local "Training API" on /api/training) and the services': its job body in,
its answers out. Both 002 and 003 put their jobs at /api/training/jobs; this module holds 002's part.

| 002 config field            | tuneyard                                                         |
|-----------------------------|------------------------------------------------------------------|
| base_model                  | base_model (a catalog or registered id, a trained model's, a checkpoint's) |
| dataset_path                | a dataset copied from the file under the dataset root, else from a hub (dataset_paths) |
| method                      | method (lora, qlora, full)                                       |
| num_epochs                  | hyperparams.epochs                                               |
| batch_size, learning_rate, lora_rank, lora_alpha, max_seq_length, eval_split | the same hyperparams |
| eval_steps (0: no periodic eval) | hyperparams.eval_steps                                      |
| use_gradient_checkpointing  | hyperparams.gradient_checkpointing                               |
| distributed, num_nodes      | distributed: DDP, DISTRIBUTED_PROCESSES ranks; num_nodes > 1 a 400 (local) |
| hf_token                    | a secret: refused wherever it would be stored, never answered    |
| wandb_project               | spec.wandb_project: the runner reports to W&B; else a warning    |
| run_name                    | the job's name                                                   |
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from tuneyard.spec.text import Label, Name, Reference

DIALECT = "local_training"

HYPERPARAMS = {"num_epochs": "epochs", "batch_size": "batch_size", "learning_rate": "learning_rate",
               "lora_rank": "lora_rank", "lora_alpha": "lora_alpha", "max_seq_length": "max_seq_length",
               "eval_split": "eval_split", "eval_steps": "eval_steps",
               "use_gradient_checkpointing": "gradient_checkpointing"}
"""002's hyperparameter fields and the engine's names for them."""
NAMES = {"base_model": "base_model", "datasets": "dataset_path", "datasets.0": "dataset_path", "method": "method",
         "name": "run_name", **{f"hyperparams.{engine}": field for field, engine in HYPERPARAMS.items()}}
"""The services' field paths in 002's words."""
NAMES.update({"distributed.num_nodes": "num_nodes", "distributed.num_processes": "distributed",
              "distributed.strategy": "distributed"})
DISTRIBUTED_PROCESSES = 2
"""Ranks a node for 002's `distributed: true`, which names no count: two data-parallel processes (the
smallest run that is distributed at all); a native spec's `distributed.num_processes` gives any other."""
CHECKPOINT_NAME = re.compile(r"^checkpoint-([0-9]{1,10})$")
"""HF Trainer's checkpoint folder names, `checkpoint-500`: the step is the number."""


class LocalTrainingJob(BaseModel):
    """POST /api/training/jobs in 002's words (every field of its "Training config fields")."""

    model_config = ConfigDict(extra="forbid")

    base_model: Reference = Field(description="The model to fine-tune: a base model id or a hub id.")
    dataset_path: Reference = Field(description=(
        "A file under the dataset root (relative paths resolve there); else a hub dataset id: owner/name (its "
        "train split), owner/name:split or owner/name:config:split, fetched from the server's hub with hf_token."))
    method: Literal["lora", "qlora", "full"] = "lora"
    num_epochs: int | None = Field(None, ge=1, le=1000)
    batch_size: int | None = Field(None, ge=1, le=4096)
    learning_rate: float | None = Field(None, gt=0, le=1.0)
    lora_rank: int | None = Field(None, ge=1, le=4096)
    lora_alpha: float | None = Field(None, gt=0, le=65536)
    max_seq_length: int | None = Field(None, ge=8, le=1_048_576)
    eval_split: float | None = Field(None, ge=0.0, lt=1.0)
    eval_steps: int | None = Field(None, ge=0, le=10_000_000, description="0: no periodic evaluation.")
    use_gradient_checkpointing: bool | None = None
    distributed: bool = False
    num_nodes: int = Field(1, ge=1, le=1024)
    hf_token: SecretStr | None = Field(None, description="A Hugging Face token: never stored or answered.")
    wandb_project: Label | None = None
    run_name: Name | None = None

    def spec(self, base_model: str, dataset_id: str | None) -> dict[str, Any]:
        """The engine's spec this body asks for (`dataset_id` None: checked without its data)."""
        hyperparams = {engine: getattr(self, field) for field, engine in HYPERPARAMS.items()
                       if getattr(self, field) is not None}
        if hyperparams.get("eval_steps") == 0:
            del hyperparams["eval_steps"]
        if self.method == "full":
            for field in ("lora_rank", "lora_alpha"):
                hyperparams.pop(field, None)
        spec: dict[str, Any] = {"type": "finetune", "base_model": base_model, "method": self.method,
                                "hyperparams": hyperparams}
        if dataset_id is not None:
            spec["datasets"] = [{"id": dataset_id}]
        if self.distributed or self.num_nodes > 1:  # the service refuses the nodes its executor cannot reach
            spec["distributed"] = {"strategy": "ddp", "num_nodes": self.num_nodes,
                                   "num_processes": DISTRIBUTED_PROCESSES if self.distributed else 1}
        if self.wandb_project:  # the runner reports to it where wandb is installed (training/reporting.py)
            spec["wandb_project"] = self.wandb_project
        return spec

    def shown_config(self) -> dict[str, Any]:
        """The config as 002 answers it: what was asked, the token left out."""
        return self.model_dump(mode="json", exclude={"hf_token"}, exclude_none=True)

    def warnings(self) -> list[str]:
        if self.wandb_project and importlib.util.find_spec("wandb") is None:
            return [f"wandb_project {self.wandb_project!r}: wandb is not installed on this server, so this run "
                    "reports to no W&B project"]
        return []


def checkpoint_ref(name: str) -> tuple[str, int | None]:
    """("step", N) for HF Trainer's `checkpoint-N`, else ("id", None): a native checkpoint id."""
    match = CHECKPOINT_NAME.match(name)
    return ("step", int(match.group(1))) if match else ("id", None)
