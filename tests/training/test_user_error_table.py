"""Mistakes a user can make that only the runner can find: each one fails the job at once as a
user error naming the field to change, on its first attempt, never retried.

Real worker, real runner subprocess, real SQLite, as tests/training/test_job_errors.py; the jobs
keep the default max_retries (3), so a mistake reported as a platform error would be queued again
and the row would fail. Every row fails before training starts: seconds each.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.runs import EXACT_HYPERPARAMS, arithmetic_chat, write_jsonl
from tests.support.worker_jobs import run_job_once
from tuneyard.settings import Settings
from tuneyard.store import Database
from tuneyard.training import artifacts, checkpoint, contract
from tuneyard.training.models.tiny_llama import ensure_tiny_llama

Prepare = Callable[[Path, Path], dict[str, Any]]
"""(the tiny-llama folder, a scratch folder) → what the row changes in the job's config."""


@dataclass(frozen=True)
class Mistake:
    name: str
    prepare: Prepare
    field: str
    says: str
    """A fragment of the message, so the row proves the mistake it means to make was the one found."""
    before: Callable[[Path], None] | None = None
    """Something to put in the run folder before the worker claims the job."""
    hyperparams: dict[str, Any] = field(default_factory=dict)


def copy_of(tiny: Path, scratch: Path, name: str, change: Callable[[Path], None]) -> dict[str, Any]:
    folder = scratch / name
    shutil.copytree(tiny, folder)
    change(folder)
    return {"base_model": str(folder)}


def gpt2_folder(tiny: Path, scratch: Path) -> dict[str, Any]:
    """A GPT-2: an architecture whose module names the API has no table for (c_attn, not q_proj),
    so its target modules pass admission and only the runner can judge them."""
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = scratch / "gpt2"
    config = GPT2Config(n_embd=16, n_layer=1, n_head=2, n_positions=128, vocab_size=2048, bos_token_id=0,
                        eos_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny / name, folder / name)
    return {"base_model": str(folder)}


def gpt2_with(*targets: str) -> Prepare:
    def prepare(tiny: Path, scratch: Path) -> dict[str, Any]:
        return {**gpt2_folder(tiny, scratch), "hyperparams": {"lora_target_modules": list(targets)}}
    return prepare


def tiny_llama(tiny: Path, scratch: Path) -> dict[str, Any]:
    return {}


def truncated_weights(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def wider_config(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 256}))


def refusing_template(folder: Path) -> None:
    (folder / "chat_template.jinja").write_text("{{ raise_exception('this template takes no conversations') }}")


def unreadable_tokenizer(folder: Path) -> None:
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    tokenizer["model"]["type"] = "NoSuchModel"
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))


def not_a_gguf(tiny: Path, scratch: Path) -> dict[str, Any]:
    gguf = scratch / "model.gguf"
    gguf.write_bytes(b"this was meant to be a GGUF file" * 64)
    return {"base_model": str(gguf)}


def adapter_of_a_deleted_model(tiny: Path, scratch: Path) -> dict[str, Any]:
    adapter = scratch / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "base_model_name_or_path": str(scratch / "deleted-model")}))
    return {"base_model": str(adapter)}


def chats_read_as_alpaca(tiny: Path, scratch: Path) -> dict[str, Any]:
    """The request may name a dataset's format; uploads are validated in their detected one."""
    data = write_jsonl(scratch / "chat.jsonl", arithmetic_chat(8))
    return {"datasets": [{"path": str(data), "format": "alpaca"}]}


def full_checkpoint(run_dir: Path) -> None:
    """A sealed checkpoint written by a `full` run, where this `lora` job will resume."""
    target = checkpoint.checkpoints_root(run_dir) / contract.checkpoint_dir_name(4)
    with artifacts.atomic_folder(target, {"kind": "checkpoint", "step": 4}) as tmp:
        (tmp / checkpoint.SPEC_FILE).write_text(json.dumps({"type": "finetune", "method": "full"}))


MISTAKES = [
    Mistake("target modules naming none of the model's modules", gpt2_with("q_proj", "v_proj"),
            "hyperparams.lora_target_modules", "no module of the base model has any of these names"),
    Mistake("a misspelt target module beside a good one", gpt2_with("c_attn", "cattn"),
            "hyperparams.lora_target_modules", "'cattn' matches no module of the base model"),
    Mistake("a target module LoRA cannot adapt", gpt2_with("ln_1"),
            "hyperparams.lora_target_modules", "a module LoRA cannot adapt"),
    Mistake("max_seq_length beyond the model's context", tiny_llama, "hyperparams.max_seq_length",
            "4096 tokens is beyond the 1024 positions", hyperparams={"max_seq_length": 4096}),
    Mistake("every example truncated away", tiny_llama, "hyperparams.max_seq_length",
            "lost all its loss tokens to truncation", hyperparams={"max_seq_length": 8}),
    Mistake("a dataset read in a format it is not in", chats_read_as_alpaca, "datasets", "invalid line(s)"),
    Mistake("a checkpoint resumed with another method", tiny_llama, "method",
            "was trained with method 'full', and this job's method is 'lora'", before=full_checkpoint),
    Mistake("a chat template that refuses the conversations",
            lambda t, s: copy_of(t, s, "template", refusing_template), "base_model",
            "this template takes no conversations"),
    Mistake("a base model folder with truncated weights",
            lambda t, s: copy_of(t, s, "truncated", truncated_weights), "base_model", "not valid safetensors"),
    Mistake("weights that do not fit the folder's config.json",
            lambda t, s: copy_of(t, s, "wider", wider_config), "base_model", "shapes its config.json declares"),
    Mistake("a tokenizer.json the tokenizers library cannot read",
            lambda t, s: copy_of(t, s, "tokenizer", unreadable_tokenizer), "base_model", "tokenizer.json"),
    Mistake("a GGUF that is not a GGUF", not_a_gguf, "base_model", "not a GGUF file"),
    Mistake("an adapter whose base model is gone", adapter_of_a_deleted_model, "base_model",
            "no such file or folder"),
]






@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.name.replace(" ", "-") for m in MISTAKES])
def test_a_mistake_found_in_the_runner_fails_once_as_a_user_error_naming_its_field(
    mistake: Mistake, db: Database, settings: Settings, model_cache: Path, tmp_path: Path
) -> None:
    data = write_jsonl(tmp_path / "chat.jsonl", arithmetic_chat(16))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    change = mistake.prepare(ensure_tiny_llama(model_cache), scratch)
    config = {"type": "finetune", "base_model": "tiny-llama", "datasets": [{"path": str(data), "format": "auto"}],
              "method": "lora", **{k: v for k, v in change.items() if k != "hyperparams"},
              "hyperparams": {**EXACT_HYPERPARAMS, **mistake.hyperparams, **change.get("hyperparams", {})}}
    job = run_job_once(db, settings, config, before=mistake.before)
    error = job["error"]
    assert (job["status"], job["attempt"], job["retries"], job["max_retries"]) == ("failed", 1, 0, 3), error
    assert error["error_type"] == "user_error", error
    assert error["details"]["field"] == mistake.field
    assert mistake.field in error["message"] and mistake.says in error["message"], error["message"]


def test_the_table_has_ten_mistakes_or_more() -> None:
    assert len(MISTAKES) >= 10 and len({m.name for m in MISTAKES}) == len(MISTAKES)
