"""Built-in job templates: partial job specs a submission names (`"template": "lora-chat"`) and overrides.

A template holds any part of a job spec (type, method, hyperparams, datasets); what the request
gives wins, key by key inside `hyperparams`. Each built-in names its job type; one whose type this
server cannot run is listed with `available: false` and the reason, and refused if named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneyard.spec import JOB_TYPES


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    spec: dict[str, Any]
    builtin: bool = True

    @property
    def job_type(self) -> str:
        return str(self.spec.get("type", "finetune"))

    def unavailable(self) -> str | None:
        """Why a job from this template cannot run here; None when it can."""
        if self.job_type not in JOB_TYPES.names():
            return f"this server has no {self.job_type!r} job type yet"
        if not JOB_TYPES.get(self.job_type).runnable:
            return f"{self.job_type!r} jobs cannot run yet"
        return None

    def to_json(self) -> dict[str, Any]:
        why = self.unavailable()
        return {"name": self.name, "description": self.description, "spec": self.spec, "builtin": self.builtin,
                "type": self.job_type, "available": why is None, **({"unavailable_reason": why} if why else {})}


BUILTIN_TEMPLATES: dict[str, Template] = {t.name: t for t in (
    Template("lora-chat", "LoRA supervised fine-tuning on chat data: rank 16 on every linear layer.", {
        "type": "finetune", "method": "lora",
        "hyperparams": {"lora_rank": 16, "lora_alpha": 32, "learning_rate": 2.0e-4, "epochs": 3,
                        "warmup_ratio": 0.03, "lr_scheduler": "cosine"},
    }),
    Template("full-finetune", "Every weight trained, at a learning rate ten times below LoRA's.", {
        "type": "finetune", "method": "full",
        "hyperparams": {"learning_rate": 2.0e-5, "epochs": 2, "warmup_ratio": 0.03, "weight_decay": 0.01},
    }),
    Template("growth", "Grow the model's depth function-preservingly, then train it.", {"type": "train"}),
    Template("contraction", "Prune the model's MLP width; takes no data.", {"type": "contract"}),
    Template("dpo", "Preference tuning (DPO) on chosen/rejected pairs.", {"type": "dpo", "method": "lora"}),
)}  # fmt: skip


def merged(template: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """The request over the template: its keys win, and inside `hyperparams` each of its keys."""
    out = {**template, **request}
    if isinstance(template.get("hyperparams"), dict) and isinstance(request.get("hyperparams"), dict):
        out["hyperparams"] = {**template["hyperparams"], **request["hyperparams"]}
    return out
