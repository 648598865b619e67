"""The job spec: what to run. Pure data; imports no torch.

A spec arrives from a user (YAML/JSON file, HTTP body), is validated whole, then resolved:
defaults filled in from the base model and the schema, each value's origin recorded, so
`spec.json` beside a run says exactly what ran and why. Each job type has its own spec model
(its parameters), registered in `tuneyard.spec.jobtypes`; `tuneyard.spec.parse` validates a spec
as the union of them, discriminated by `type`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, model_validator

from tuneyard.spec.distributed import Distributed
from tuneyard.spec.formats import format_choices
from tuneyard.spec.hyperparams import MAX_STEPS, Hyperparams
from tuneyard.spec.text import Ident, Label, Name, Reference

# Where a resolved value came from, most specific first.
ORIGIN_USER = "user"
ORIGIN_BASE_MODEL = "base_model"
ORIGIN_METHOD = "method"
ORIGIN_DEFAULT = "default"


def _known_format(value: str) -> str:
    if value not in format_choices():
        raise ValueError(f"expected one of {', '.join(format_choices())}")
    return value


DataFormatName = Annotated[
    str, AfterValidator(_known_format), WithJsonSchema({"type": "string", "enum": list(format_choices())})
]
"""A data format a user may name: "auto" or one registered in tuneyard.spec.formats."""


class DatasetRef(BaseModel):
    """One data source: a file path (runner), or a stored dataset by id or name (service)."""

    model_config = ConfigDict(extra="forbid")

    path: Reference | None = Field(None, description="A JSONL, CSV or Parquet file.")
    id: Ident | None = Field(None, description="A stored dataset's id.")
    name: Name | None = Field(None, description="A stored dataset's name.")
    format: DataFormatName = Field(
        "auto", description="The record format (see tuneyard.spec.formats); detected when 'auto'."
    )
    split: Literal["train", "eval"] = Field("train", description="Train on it, or hold it out for eval.")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> DatasetRef:
        given = [k for k in ("path", "id", "name") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of path, id or name")
        return self


class JobSpecBase(BaseModel):
    """What every job names: its type, the model it starts from and its data. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    type: str
    base_model: Reference
    datasets: list[DatasetRef] = Field(default_factory=list)
    wandb_project: Label | None = Field(None, description=(
        "Also report the run's figures to this Weights & Biases project, where wandb is installed (the "
        "operator's WANDB_* settings; WANDB_MODE=offline keeps the run's files in its folder); else a warning "
        "in the job's log."))

    def reporting(self) -> dict[str, Any]:
        """The reporting fields set, for the runner's spec (none set: a spec.json reads as before they existed)."""
        return {"wandb_project": self.wandb_project} if self.wandb_project else {}

    def problems(self) -> list[dict[str, Any]]:
        """Problems between fields, each naming every field involved; [] when none."""
        return []


class TrainingJobSpec(JobSpecBase):
    """A job that trains weights with a method (`tuneyard.spec.methods`) and its hyperparameters.

    `hyperparams` is validated by the method's model (the shared fields plus the method's own)."""

    method: str = "lora"
    hyperparams: Hyperparams = Field(default_factory=Hyperparams)
    distributed: Distributed | None = Field(None, description=(
        "Train data-parallel on several processes (tuneyard.spec.distributed); absent: one process."))

    def processes(self) -> Distributed:
        """The distribution asked for; one process when none is."""
        return self.distributed or Distributed()

    def problems(self) -> list[dict[str, Any]]:
        return self.processes().problems(self.method)


class FinetuneSpec(TrainingJobSpec):
    """Fine-tune a model on data."""

    type: Literal["finetune"] = "finetune"


GROWABLE_MODEL_TYPES = ("llama", "qwen2", "mistral")
"""Architectures (config.json `model_type`) whose growth keeps the function: pre-norm decoder blocks
with `self_attn.o_proj` and `mlp.down_proj` (Llama, Qwen2, Mistral; SmolLM2 and tiny-llama are llama)."""


class Growth(BaseModel):
    """How much to grow: factors on the layer count and on the MLP width."""

    model_config = ConfigDict(extra="forbid")

    depth_factor: float = Field(1.0, ge=1.0, le=8.0, description=(
        "Layers after growth ÷ before (rounded); each new block starts as the identity."))
    width_factor: float = Field(1.0, ge=1.0, le=8.0, description=(
        "MLP channels after growth ÷ before (rounded); new channels start with zero output weights."))


class GrowthHyperparams(BaseModel):
    """Training the grown model, in Fusion's words (full weights; the rest as tuneyard's defaults)."""

    model_config = ConfigDict(extra="forbid")

    turns: int = Field(1, ge=1, le=100, description="Full passes over the schedule (all cycles).")
    cycles: int | None = Field(None, ge=1, le=10_000, description=(
        "Cosine cycles per turn, the learning rate restarted at each; with steps_per_cycle. Default: one "
        "cycle of one epoch."))
    steps_per_cycle: int | None = Field(None, ge=1, le=MAX_STEPS, description="Optimizer steps per cycle.")
    lr: float = Field(1.0e-4, gt=0, le=1.0, description="Peak learning rate of AdamW.")
    seq_len: int = Field(512, ge=8, le=1_048_576, description="Tokens per row; longer examples are truncated.")
    output_name: Name | None = Field(None, description="A name for the grown model.")
    train_scope: Literal["all", "new"] = Field("all", description=(
        "Train every weight, or only what growth added (new blocks, and the widened MLP projections whole)."))
    batch_size: int = Field(4, ge=1, le=4096, description="Rows per micro-batch.")
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024, description="Micro-batches per optimizer step.")
    eval_split: float = Field(0.1, ge=0.0, lt=1.0, description="Share of the examples held out for evaluation.")
    save_steps: int | None = Field(None, ge=1, le=MAX_STEPS, description="Checkpoint every N steps.")
    eval_steps: int | None = Field(None, ge=1, le=MAX_STEPS, description="Evaluate every N optimizer steps.")
    bf16: bool | Literal["auto"] = Field("auto", description="bf16 autocast; 'auto' where the hardware is fast at it.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seeds data order, growth and dropout.")

    def training_hyperparams(self) -> Hyperparams:
        """The finetune loop's hyperparameters these knobs mean."""
        steps = self.turns * self.cycles * self.steps_per_cycle if self.cycles and self.steps_per_cycle else None
        return Hyperparams(
            epochs=self.turns, max_steps=steps, learning_rate=self.lr, max_seq_length=self.seq_len,
            batch_size=self.batch_size, gradient_accumulation_steps=self.gradient_accumulation_steps,
            eval_split=self.eval_split, save_steps=self.save_steps, eval_steps=self.eval_steps, bf16=self.bf16,
            seed=self.seed,
            lr_scheduler="constant",  # the recipe's own cosine, restarted each cycle, replaces it
        )  # fmt: skip


class TrainSpec(JobSpecBase):
    """Grow the model so that it computes the same function (deeper, wider), then train it.

    With neither `growth` nor `target_params`, depth grows to about 1.5× the parameters."""

    type: Literal["train"] = "train"
    growth: Growth | None = Field(None, description="Grow by these factors.")
    target_params: int | None = Field(None, ge=1, le=10**13, description=(
        "Grow depth to the block count whose parameters come nearest this total."))
    hyperparams: GrowthHyperparams = Field(default_factory=GrowthHyperparams)
    price_per_device_hour: float = Field(0.0, ge=0.0, le=1.0e6, description=(
        "USD per device-hour the result's cost_usd is computed at; set by the service, 0 by default."))

    def problems(self) -> list[dict[str, Any]]:
        if self.growth is not None and self.target_params is not None:
            message = "give growth or target_params, not both: each decides how much to grow"
            return [{"field": "growth", "message": message}, {"field": "target_params", "message": message}]
        steps = (self.hyperparams.cycles, self.hyperparams.steps_per_cycle)
        if (steps[0] is None) != (steps[1] is None):
            message = "give cycles and steps_per_cycle together, or neither (one cycle of one epoch)"
            return [{"field": f"hyperparams.{name}", "message": message} for name in ("cycles", "steps_per_cycle")]
        hp = self.hyperparams
        if hp.cycles is not None and hp.steps_per_cycle is not None and \
                hp.turns * hp.cycles * hp.steps_per_cycle > MAX_STEPS:
            message = (f"turns × cycles × steps_per_cycle is {hp.turns * hp.cycles * hp.steps_per_cycle} steps; "
                       f"at most {MAX_STEPS}")
            return [{"field": f"hyperparams.{name}", "message": message}
                    for name in ("turns", "cycles", "steps_per_cycle")]
        return []


class CalibrationText(BaseModel):
    """Calibration text resolved to files, as the service hands it to the runner (which reads files,
    never ids): every eval-split record, then the `eval_split` share of the train-split records that
    `seed` holds out, as the job that trained on them held them out."""

    model_config = ConfigDict(extra="forbid")

    origin: Literal["calibration_dataset", "lineage"] = Field(description=(
        "Where it comes from: the job's calibration_dataset, or the held-out split of the source model's "
        "own training data (its lineage)."))
    datasets: list[DatasetRef] = Field(min_length=1, description="The files, by path.")
    eval_split: float = Field(0.0, ge=0.0, lt=1.0, description="Share of the train-split records held out.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="The seed that held them out.")
    source_id: Ident | None = Field(None, description=(
        "What the service resolved it from: the stored dataset (calibration_dataset) or the trained model "
        "whose training held it out (lineage)."))


class ContractSpec(JobSpecBase):
    """Contract the model: fewer MLP channels in its layers (structured: the matrices get smaller).

    Every layer keeps the same number of channels, so a standard config (one `intermediate_size`)
    describes the result and plain transformers loads it. Attention heads are not pruned: a Llama
    config has one head count (and one key/value head count) for every layer, so heads pruned per layer
    would not load with plain transformers; whole layers can go instead (`remove_layers`).

    Calibration text (what channels are scored by their activations on, and perplexity and
    KL(source ‖ contracted) are measured on), the first there is of: `calibration_dataset`; the
    `datasets` (their eval rows, else their training rows); the held-out split of the source model's
    own training data, where `base_model` is a trained model of this service whose training held some
    out (its lineage). Without any, channels are scored by weight magnitude and those figures are null."""

    type: Literal["contract"] = "contract"
    contraction_ratio: float = Field(0.5, gt=0.0, lt=1.0, description=(
        "Share of each layer's MLP channels removed: 0.5 halves the MLP width."))
    num_layers_to_contract: int = Field(8, ge=1, le=10_000, description=(
        "Layers to contract, capped at the model's layer count. A standard config has one MLP width for "
        "every layer, so this version contracts every layer whatever the number; the result says how many."))
    remove_layers: int = Field(0, ge=0, le=10_000, description=(
        "Whole decoder layers removed before the MLPs are contracted: with calibration text the ones that "
        "change the residual stream least (1 − cos of their input and output), else the last ones before the "
        "final layer; never the first or the last, so at most the layer count − 2. Attention heads are never "
        "pruned: a Llama config has one head count for all layers, so per-layer head pruning would not load "
        "with plain transformers."))
    calibration_dataset: DatasetRef | None = Field(None, description=(
        "The text the pruning decision, perplexity and KL are measured on, every record of it: a stored "
        "dataset by id or name (the service), a file by path (the runner). Default: the datasets, else the "
        "held-out split of the source model's own training data (its lineage), else none (weight magnitude)."))
    calibration: CalibrationText | None = Field(None, description=(
        "Set by the service, never given: calibration_dataset or the lineage's held-out split, as files."))
    heal_steps: int = Field(0, ge=0, le=MAX_STEPS, description=(
        "Optimizer steps of a short fine-tune of the contracted model on the datasets' training rows "
        "(every weight, next-token loss, AdamW at heal_learning_rate) before it is measured and saved; "
        "0: none. Needs datasets with a train split."))
    heal_learning_rate: float | None = Field(None, gt=0.0, le=1.0, description=(
        "AdamW's learning rate while healing. Default: the full fine-tuning rate of the model's size (1e-3 up to "
        "20M parameters, 2e-5 up to 1B, 1e-5 up to 10B, 5e-6 beyond: `catalog.heal_learning_rate`), which the "
        "runner reads from the loaded model and writes into the resolved spec with its origin."))

    def problems(self) -> list[dict[str, Any]]:
        if self.heal_steps and not any(d.split == "train" for d in self.datasets):
            return [{"field": "heal_steps", "message": (
                "healing trains on the datasets' training rows: give datasets with a train split, or leave "
                "heal_steps at 0")}]
        return []


class MergeSpec(JobSpecBase):
    """Fold a trained LoRA adapter into its base model. Takes no data.

    `base_model` names the adapter: a trained LoRA model or a checkpoint of a LoRA job (the
    service), or an adapter folder (the runner). Its own base is the one the adapter names."""

    type: Literal["merge"] = "merge"
    adapter_base: Reference | None = Field(None, description=(
        "The base to fold the adapter into, where not the one its adapter_config.json names: the service "
        "gives the folder of a registered base or trained model the adapter names by its id."))
    datasets: list[DatasetRef] = Field(default_factory=list, max_length=0)


class GenerationSettings(BaseModel):
    """How an evaluation generates its answers: greedy, so exact match and ROUGE-L are the same run
    to run; one seeded sampled answer beside it measures consistency where no judge is configured."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(64, ge=1, le=1024, description="Tokens generated per answer at most.")
    temperature: float = Field(0.7, gt=0.0, le=2.0, description=(
        "Temperature of the one sampled answer compared with the greedy one (the consistency score)."))
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seeds the sampled answers.")


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return value


class JudgeEndpoint(BaseModel):
    """An OpenAI-compatible chat completions endpoint that grades answers (set by the service from
    its settings; its key reaches the runner in its environment, never in the spec)."""

    model_config = ConfigDict(extra="forbid")

    base_url: Annotated[Reference, AfterValidator(_http_url)] = Field(description=(
        "The API's base URL, as the openai client takes it: POST {base_url}/chat/completions."))
    model: Name = Field(description="The judge model's name at that endpoint.")
    timeout_s: float = Field(60.0, gt=0.0, le=600.0, description="Seconds one grading call may take.")


class EvaluateSpec(JobSpecBase):
    """Evaluate a trained model against the model it was trained from, side by side, on held-out text.

    `base_model` is the trained model; `compare_with` the model it is compared with (the service
    gives the trained model's own base; without it, an adapter is compared with the base it names).
    The examples are the `datasets`' eval-split records plus the `eval_split` share of their
    train-split records that `seed` holds out, as the training job held them out, so a model is
    measured on text it never trained on."""

    type: Literal["evaluate"] = "evaluate"
    compare_with: Reference | None = Field(None, description=(
        "The model compared with: the trained model's base (the service gives it); by default the base an "
        "adapter names."))
    eval_split: float = Field(0.0, ge=0.0, lt=1.0, description=(
        "Share of the train-split records held out and evaluated, chosen by seed as training chose them."))
    seed: int = Field(0, ge=0, le=2**32 - 1, description="The seed that held the eval split out.")
    max_examples: int = Field(50, ge=1, le=5000, description="Held-out examples evaluated at most.")
    samples: int = Field(3, ge=0, le=50, description="Sample generations shown beside the figures.")
    max_seq_length: int = Field(1024, ge=8, le=1_048_576, description="Tokens per example; longer are cut.")
    batch_size: int = Field(4, ge=1, le=256, description="Examples per forward pass and per generation batch.")
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    judge: JudgeEndpoint | None = Field(None, description=(
        "Where scores come from; without one, from reference-based measures (the result's scores.method)."))

    def problems(self) -> list[dict[str, Any]]:
        if not self.datasets:
            return [{"field": "datasets", "message": "an evaluation needs held-out text: give a dataset"}]
        if self.eval_split == 0.0 and all(ref.split == "train" for ref in self.datasets):
            return [{"field": "eval_split", "message": (
                "no eval-split dataset and eval_split 0: nothing would be held out to evaluate on")}]
        return []


def problems_from(error: ValidationError) -> list[dict[str, Any]]:
    """Every problem pydantic found, as {field, message} with a dotted field path."""
    out = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(body)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        out.append({"field": field, "message": message})
    return out
