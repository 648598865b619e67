"""tiny-llama: a ~1M-parameter Llama made on the spot, the same bytes on every machine.

Tests and demos need a real model (real tokenizer, chat template, HF layout) that trains in
seconds and never touches a network. It is built from a fixed recipe and cached: the BPE
tokenizer is trained on a generated corpus, the weights are drawn from a seeded CPU generator
(not transformers' own initialisation, which may change between versions), and the folder is
assembled under a temporary name and renamed into place so concurrent makers cannot see or
leave a half-written model.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from tuneyard.errors import PlatformError
from tuneyard.training.models import catalog
from tuneyard.training.models.chat_template import CHATML_TEMPLATE
from tuneyard.training.models.tiny_corpus import tiny_corpus

RECIPE_VERSION = catalog.TINY_LLAMA_RECIPE_VERSION

SEED = 20240611
VOCAB_SIZE = 2048
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>")
BUILD_FILE = "tuneyard-build.json"

_ARCH: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
}


def tiny_llama_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / catalog.tiny_llama_folder_name()


def ensure_tiny_llama(cache_dir: Path) -> Path:
    """The cached tiny-llama folder, building it first if it is not there yet."""
    final = tiny_llama_dir(cache_dir)
    if (final / BUILD_FILE).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex}"
    try:
        build_tiny_llama(staging)
        _publish(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _publish(staging: Path, final: Path) -> None:
    """Rename the finished folder into place; if another maker won the race, keep theirs."""
    try:
        os.rename(staging, final)
    except OSError:
        if not (final / BUILD_FILE).is_file():
            raise
        return
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # make the rename itself durable
    finally:
        os.close(fd)


def build_tiny_llama(out_dir: Path) -> None:
    """Write tokenizer, config and weights to `out_dir` in the standard HF layout."""
    out_dir.mkdir(parents=True)
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(out_dir)
    model = build_model(tokenizer)
    model.save_pretrained(out_dir)
    # save_pretrained returns without writing on a data-parallel rank other than 0: never publish that
    missing = [name for name in ("config.json", "model.safetensors") if not (out_dir / name).is_file()]
    if missing:
        raise PlatformError(f"building tiny-llama wrote no {', '.join(missing)}", missing=missing)
    _fsync_files(out_dir)
    # written last: its presence means the folder is complete
    build = {"recipe_version": RECIPE_VERSION, "seed": SEED, "vocab_size": VOCAB_SIZE, **_ARCH}
    (out_dir / BUILD_FILE).write_text(json.dumps(build, indent=2, sort_keys=True) + "\n")
    _fsync_files(out_dir)


def _fsync_files(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with path.open("rb") as f:
                os.fsync(f.fileno())


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on the generated corpus, with a ChatML template."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(tiny_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token="<|endoftext|>",
        model_max_length=_ARCH["max_position_embeddings"],
        chat_template=CHATML_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )


def build_model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **_ARCH,
    )
    model = LlamaForCausalLM(config)
    _init_weights(model, torch.Generator(device="cpu").manual_seed(SEED))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


@torch.no_grad()
def _init_weights(model: LlamaForCausalLM, gen: torch.Generator) -> None:
    """GPT-2 style init in a fixed parameter order, from `gen` alone."""
    # residual projections are scaled down so the stream's variance stays flat with depth
    residual_std = 0.02 / math.sqrt(2 * model.config.num_hidden_layers)
    for name, param in sorted(model.named_parameters()):
        if name.endswith("norm.weight"):
            param.fill_(1.0)
        elif name.endswith(("o_proj.weight", "down_proj.weight")):
            param.copy_(torch.randn(param.shape, generator=gen) * residual_std)
        elif name.endswith(".bias"):
            param.zero_()
        else:
            param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
