"""One contender of the throughput benchmark, in its own process so its peak RSS is its own.

    python -m benchmarks.throughput_contenders CONFIG.json   # writes CONFIG's "out" JSON

Every contender loads the same weights through tuneyard's loader (the GGUF path is not what
is measured), trains one epoch over the same examples with the same hyperparameters, batch size
(examples per step) and seed, by the config's method (LoRA or full), in fp32 or, for the `-bf16`
contenders, with bf16 autocast; it is timed from the first step to the last (model loading and
tokenization excluded). The held-out loss is computed afterwards by one function for all, in fp32,
on examples tokenized once by the parent, one example per forward pass: mean over loss-bearing tokens.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import TrainerCallback


def _source(cfg: dict[str, Any]) -> Any:
    from tuneyard.training.models import resolve_model_source

    return resolve_model_source(cfg["model"], Path(cfg["model_cache_dir"]))


def _load(cfg: dict[str, Any]) -> tuple[Any, Any]:
    from tuneyard.training.models import load_model, load_tokenizer

    source = _source(cfg)
    return load_model(source, dtype=torch.float32), load_tokenizer(source)


def _epochs(cfg: dict[str, Any]) -> int:
    """Epochs over the case's examples: more than one where the examples alone train too briefly."""
    return int(cfg["hyperparams"].get("epochs", 1))


def _bf16(cfg: dict[str, Any]) -> bool:
    return str(cfg["contender"]).endswith("-bf16")


def _lora_config(hp: dict[str, Any]) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=hp["lora_rank"], lora_alpha=hp["lora_alpha"], lora_dropout=0.0,
        target_modules="all-linear", bias="none", task_type="CAUSAL_LM",
    )  # fmt: skip


@torch.no_grad()
def heldout_loss(model: Any, examples: list[dict[str, list[int]]]) -> float:
    """Mean cross-entropy per loss-bearing token, each example alone (the same for everyone)."""
    model.float().eval()  # a bf16 run keeps its frozen base in bf16: scored in fp32 like the others
    total, count = 0.0, 0
    for example in examples:
        ids = torch.tensor([example["input_ids"]])
        labels = torch.tensor(example["labels"][1:])
        logits = model(input_ids=ids, use_cache=False).logits[0, :-1].float()
        total += float(F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum"))
        count += int((labels != -100).sum())
    return total / max(count, 1)


def count_params(model: Any) -> tuple[int, int]:
    """(frozen, trainable) weights of the linear layers: what the matmuls of a step multiply by."""
    frozen = trainable = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            if module.weight.requires_grad:
                trainable += module.weight.numel()
            else:
                frozen += module.weight.numel()
    return frozen, trainable


# ---- (a) tuneyard ------------------------------------------------------------------------


def run_tuneyard(cfg: dict[str, Any], compile_: bool = False) -> dict[str, Any]:
    """tuneyard's engine; `compile_`: with compile: true, its first step (the compile) timed apart."""
    from tuneyard.child_process import keep_freed_memory
    from tuneyard.training.config import resolve
    from tuneyard.training.control import RunControl
    from tuneyard.training.recipes.finetune import FinetuneRecipe
    from tuneyard.training.telemetry import Telemetry

    hp = cfg["hyperparams"]
    run_dir = Path(cfg["work_dir"]) / "tuneyard-run"
    raw = {
        "type": "finetune", "base_model": cfg["model"], "method": cfg["method"],
        "datasets": [{"path": cfg["train_path"]}],
        "hyperparams": {
            "epochs": _epochs(cfg), "batch_size": hp["batch_size"], "max_seq_length": hp["max_seq_length"],
            "learning_rate": hp["learning_rate"], "lr_scheduler": "cosine", "warmup_ratio": 0.0,
            "seed": hp["seed"], "bf16": _bf16(cfg), "compile": compile_, **cfg.get("tuneyard_extra", {}),
            **({"lora_rank": hp["lora_rank"], "lora_alpha": hp["lora_alpha"]} if cfg["method"] == "lora" else {}),
        },
    }  # fmt: skip
    keep_freed_memory()  # as the runner's entry does (tuneyard/training/__main__.py): the engine's heap policy
    config = resolve(raw, Path(cfg["work_dir"]), Path(cfg["model_cache_dir"]), {})
    telemetry = Telemetry(run_dir / "telemetry.jsonl", echo=None)
    recipe = FinetuneRecipe(config, run_dir, telemetry, RunControl())
    recipe.setup(None)
    # The engine's baseline eval is not part of what is compared (HF Trainer has none).
    recipe.state.baseline_eval = {}
    started = time.perf_counter()
    recipe.run()
    seconds = time.perf_counter() - started
    telemetry.close()
    first = next(r for r in _records(run_dir / "telemetry.jsonl") if r["kind"] == "metric")
    return {
        "tokens": recipe.state.tokens_seen, "seconds": seconds, "steps": recipe.state.step,
        "examples": len(recipe.data.train), "model": recipe.session.model,
        # the first step holds the compile when there is one: steady figures leave it out
        "first_step_tokens": first["tokens"], "first_step_seconds": first["elapsed_s"],
        "compiled": recipe.session.compiled is not None,
        "frames_compiled": _frames_compiled(),  # 36 on tiny-llama's first step: more are recompiles
    }  # fmt: skip


def _frames_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(counters["frames"]["ok"])


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---- (b) Hugging Face Trainer + peft, the ordinary way ----------------------------------------


def _hf_tokenize(tokenizer: Any, messages: list[dict[str, str]], max_length: int) -> dict[str, list[int]]:
    """The full chat through the template; loss only past the prompt (with generation prompt)."""
    full = list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=True, add_generation_prompt=True, return_dict=True)
    cut = len(prompt["input_ids"])
    labels = [-100] * cut + full[cut:]
    return {"input_ids": full[:max_length], "attention_mask": [1] * len(full[:max_length]),
            "labels": labels[:max_length]}  # fmt: skip


def _hf_text(tokenizer: Any, text: str, max_length: int) -> dict[str, list[int]]:
    ids = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(ids)}


def _training_args(cfg: dict[str, Any], batch_size: int, cls: Any, **extra: Any) -> Any:
    hp = cfg["hyperparams"]
    return cls(
        output_dir=str(Path(cfg["work_dir"]) / f"{cfg['contender']}-out"), num_train_epochs=_epochs(cfg),
        per_device_train_batch_size=batch_size, learning_rate=hp["learning_rate"],
        lr_scheduler_type="cosine", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        seed=hp["seed"], data_seed=hp["seed"], logging_steps=10_000, save_strategy="no",
        report_to=[], use_cpu=True, bf16=_bf16(cfg), disable_tqdm=True, **extra,
    )  # fmt: skip


class _Clock(TrainerCallback):
    """Wall time from the start of training to its end."""

    started = 0.0
    seconds = 0.0

    def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
        self.started = time.perf_counter()

    def on_train_end(self, *args: Any, **kwargs: Any) -> None:
        self.seconds = time.perf_counter() - self.started


def run_hf(cfg: dict[str, Any]) -> dict[str, Any]:
    from peft import get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    hp = cfg["hyperparams"]
    model, tokenizer = _load(cfg)
    records = [json.loads(line) for line in Path(cfg["train_path"]).read_text(encoding="utf-8").splitlines()]
    if "messages" in records[0]:
        rows = [_hf_tokenize(tokenizer, r["messages"], hp["max_seq_length"]) for r in records]
    else:
        rows = [_hf_text(tokenizer, r["text"], hp["max_seq_length"]) for r in records]
    if cfg["method"] == "lora":
        model = get_peft_model(model, _lora_config(hp))
    clock = _Clock()
    trainer = Trainer(
        model=model, args=_training_args(cfg, hp["batch_size"], TrainingArguments),
        train_dataset=rows, data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        callbacks=[clock],
    )  # fmt: skip
    trainer.train()
    return {"tokens": _epochs(cfg) * sum(len(r["input_ids"]) for r in rows), "seconds": clock.seconds,
            "steps": trainer.state.global_step, "examples": len(rows), "model": model}  # fmt: skip


# ---- (c) TRL SFTTrainer ----------------------------------------------------------------------


def run_trl(cfg: dict[str, Any]) -> dict[str, Any]:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    hp = cfg["hyperparams"]
    model, tokenizer = _load(cfg)
    records = [json.loads(line) for line in Path(cfg["train_path"]).read_text(encoding="utf-8").splitlines()]
    if "messages" in records[0]:
        # prompt/completion: TRL's way to put the loss on the answer for any chat template
        data = [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in records]
    else:
        data = [{"text": r["text"]} for r in records]
    args = _training_args(cfg, hp["batch_size"], SFTConfig, max_length=hp["max_seq_length"], packing=False)
    clock = _Clock()
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(data), processing_class=tokenizer,
        peft_config=_lora_config(hp) if cfg["method"] == "lora" else None, callbacks=[clock],
    )  # fmt: skip
    tokens = _epochs(cfg) * sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    trainer.train()
    return {"tokens": tokens, "seconds": clock.seconds, "steps": trainer.state.global_step,
            "examples": len(data), "model": trainer.model}  # fmt: skip


CONTENDERS = {
    "tuneyard": run_tuneyard,
    "tuneyard-compile": lambda cfg: run_tuneyard(cfg, compile_=True),
    "hf": run_hf,
    "trl": run_trl,
}  # each also as NAME-bf16


def main(config_path: str) -> int:
    cfg = json.loads(Path(config_path).read_text(encoding="utf-8"))
    torch.manual_seed(cfg["hyperparams"]["seed"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # library chatter about CPU, padding and deprecations
        figures = CONTENDERS[str(cfg["contender"]).removesuffix("-bf16")](cfg)
        model = figures.pop("model")
        figures["frozen_params"], figures["trainable_params"] = count_params(model)
        eval_examples = json.loads(Path(cfg["eval_path"]).read_text(encoding="utf-8"))
        figures["eval_loss"] = heldout_loss(model, eval_examples) if eval_examples else float("nan")
    # ru_maxrss is in KiB on Linux: this process alone, model loading included
    figures["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    Path(cfg["out"]).write_text(json.dumps(figures), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
