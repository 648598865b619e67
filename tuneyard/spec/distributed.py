"""How many processes a training job trains on, and how they share the work. Pure data.

`distributed` is absent (or `num_processes: 1`) for a run in one process. With more, the runner is
launched by torchrun, one process (rank) per device or CPU share, and trains data-parallel: each rank
computes its shard of every optimizer step's examples, and the gradients are summed across ranks, so
the step is the one-process step (docs/engine.md, "Data-parallel training").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_PROCESSES = 256
"""Ranks on one node at most: far above the devices a node holds, low enough to catch a typo."""

IMPLEMENTED_STRATEGIES = ("ddp", "fsdp")
"""The strategies the runner trains with; the others are in the schema so a spec naming them is
refused with a reason instead of as an unknown word."""

SINGLE_NODE_EXECUTORS = ("local",)
"""Executors whose runner is launched on one machine (torchrun --standalone)."""


class Distributed(BaseModel):
    """Data-parallel training across processes (002's `distributed` and `num_nodes` map here)."""

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["ddp", "fsdp"] = Field("ddp", description=(
        "ddp: every rank holds the whole model and the gradients are summed across ranks. fsdp: the "
        "weights, gradients and optimizer state are sharded across the ranks (FSDP2), for a full "
        "fine-tune whose model does not fit one device with its optimizer state."))
    num_processes: int = Field(1, ge=1, le=MAX_PROCESSES, description=(
        "Processes (ranks) per node: one per GPU, or CPU processes sharing the node's cores. 1: no "
        "distribution at all."))
    num_nodes: int = Field(1, ge=1, le=1024, description=(
        "Machines the ranks run on; the local executor runs on one."))

    @property
    def world_size(self) -> int:
        return self.num_processes * self.num_nodes

    def problems(self, method: str) -> list[dict[str, Any]]:
        """What this runner cannot do with these settings and `method`, each naming its field."""
        found = []
        if self.strategy not in IMPLEMENTED_STRATEGIES:
            found.append({"field": "distributed.strategy", "message": (
                f"{self.strategy} is not implemented yet; give {' or '.join(IMPLEMENTED_STRATEGIES)}")})
        if self.strategy == "fsdp" and method != "full":
            found.append({"field": "distributed.strategy", "message": (
                f"fsdp shards full fine-tuning only; method {method} trains an adapter, a sliver of the model "
                "that ddp trains as well; give strategy ddp, or method full")})
        if self.world_size > 1 and method == "dpo":
            found.append({"field": "distributed.num_processes", "message": (
                "dpo trains in one process for now; give num_processes 1, or a next-token method (lora, full)")})
        return found

    def executor_problems(self, executor: str) -> list[dict[str, Any]]:
        """What the executor `executor` cannot launch, each naming its field."""
        if self.num_nodes > 1 and executor in SINGLE_NODE_EXECUTORS:
            return [{"field": "distributed.num_nodes", "message": (
                f"the {executor} executor runs a job on one node; give num_nodes 1 (and num_processes for the "
                "ranks on it), or a multi-node executor")}]
        return []


def processes_per_node(config: Mapping[str, object]) -> int:
    """The ranks a resolved config puts on each node (`distributed.num_processes`); 1 without. Each
    holds the whole model, its optimizer and its activations: a node's memory is this many runs'."""
    distributed = config.get("distributed")
    processes = distributed.get("num_processes", 1) if isinstance(distributed, dict) else 1
    return processes if isinstance(processes, int) and processes > 0 else 1
