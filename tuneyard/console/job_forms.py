"""The new-job form's job types and each type's own fields, taken from the spec's schemas.

Like `hyperparams.py` for a fine-tune's hyperparameters, the fields of `train`, `contract` and
`merge` come from their spec models (`tuneyard.spec.job`), so the form shows each field's default,
bounds and description as the API documents them. A field's name is its path in the request
(`growth.depth_factor`, `hyperparams.turns`), which the page's script follows to build the body.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from tuneyard.console.hyperparams import FormField, schema_field
from tuneyard.spec import JOB_TYPES
from tuneyard.spec.job import ContractSpec, Growth, GrowthHyperparams, TrainSpec

FORM_TYPES = ("finetune", "train", "contract", "merge")
"""The types the form offers, in this order (others are submitted through the API)."""

TYPE_FIELDS: dict[str, tuple[tuple[str, type[BaseModel], tuple[str, ...]], ...]] = {
    "finetune": (),  # its method and hyperparameters: hyperparams.form_fields()
    "train": (
        ("growth", Growth, ("depth_factor", "width_factor")),
        ("", TrainSpec, ("target_params",)),
        ("hyperparams", GrowthHyperparams, ("turns", "cycles", "steps_per_cycle", "lr", "seq_len", "batch_size",
                                            "train_scope", "output_name", "eval_split", "seed")),
    ),
    "contract": (("", ContractSpec, ("contraction_ratio", "num_layers_to_contract", "remove_layers", "heal_steps",
                                     "heal_learning_rate")),),
    "merge": (),
}
"""Where each type's form fields come from: (prefix in the request, model, field names). A name the
model does not have is skipped, so the form shows what the spec takes today."""

BASE_LABELS = {"finetune": "Base model", "train": "Model to grow", "contract": "Model to contract",
               "merge": "LoRA adapter to merge (a trained LoRA model or checkpoint id)"}
DATA_LABELS = {"finetune": "Training data", "train": "Training data",
               "contract": ("Calibration text and healing data (optional: without either, a trained model's own "
                            "held-out training text, else weight magnitude)")}
"""A contraction's calibration_dataset has its own picker in the data fieldset (templates/job_new.html):
a dataset reference, not a number, so not one of TYPE_FIELDS."""


@dataclass(frozen=True)
class TypeForm:
    name: str
    description: str
    base_label: str
    data_label: str | None
    """None for a type that takes no data (merge)."""
    data_required: bool
    fields: list[FormField]


def type_forms() -> list[TypeForm]:
    forms = []
    for name in FORM_TYPES:
        if name not in JOB_TYPES.names() or not JOB_TYPES.get(name).runnable:
            continue
        entry = JOB_TYPES.get(name)
        fields = [schema_field(f"{prefix}.{field}" if prefix else field, model.model_fields[field])
                  for prefix, model, names in TYPE_FIELDS[name] for field in names if field in model.model_fields]
        forms.append(TypeForm(name, entry.description, BASE_LABELS[name], DATA_LABELS.get(name),
                              entry.needs_data, fields))
    return forms
