"""Loading a resolved `ModelSource` as a trainable, saveable transformers model and tokenizer.

Every source ends as a plain dense `PreTrainedModel`: a GGUF is dequantized and stripped of
its quantizer (which would otherwise refuse `save_pretrained` and mark the model untrainable),
and an adapter is merged into its base, so the training loop never needs to know where the
weights came from.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tuneyard.errors import ModelNotFoundError, UnsupportedError
from tuneyard.training.models import dequantized
from tuneyard.training.models.chat_template import CHATML_TEMPLATE
from tuneyard.training.models.source import ModelSource


def load_tokenizer(source: ModelSource) -> PreTrainedTokenizerBase:
    """The source's tokenizer, with a pad token and a chat template guaranteed."""
    tokenizer = _load_tokenizer_files(source)
    if tokenizer.pad_token is None:
        # eos as pad is safe: padded positions are masked out of attention and loss
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if tokenizer.pad_token is None:
        raise ModelNotFoundError(
            f"base model {source.requested!r}: its tokenizer has no eos, unk or pad token to pad with"
        )
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _load_tokenizer_files(source: ModelSource) -> PreTrainedTokenizerBase:
    if source.kind == "peft_adapter":
        # a trained adapter is saved with its tokenizer (maybe with added tokens); prefer it
        if source.base is None:
            raise ModelNotFoundError(f"base model {source.requested!r}: adapter without a base")
        if not any((source.path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
            return _load_tokenizer_files(source.base)
    converted = dequantized.cached_part(source, "tokenizer")
    if converted is not None:
        return AutoTokenizer.from_pretrained(converted)
    kwargs: dict[str, Any] = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"base model {source.requested!r}: cannot load its tokenizer ({exc})") from exc
    if source.gguf_file:
        dequantized.keep_part(source, "tokenizer", tokenizer)
    return tokenizer


def load_model(
    source: ModelSource,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa",
    load_options: dict[str, Any] | None = None,
) -> PreTrainedModel:
    """The source as a dense causal LM in `dtype`, on CPU, in eval mode.

    `load_options` are a method's extra `from_pretrained` arguments (QLoRA's 4-bit quantization):
    such a base is quantized as it loads, onto the first CUDA device, and is not dense.
    """
    if load_options:
        _check_quantizable(source)
    if source.kind == "peft_adapter":
        return _load_merged_adapter(source, dtype, attn_implementation)
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attn_implementation}
    if load_options:
        kwargs.update(load_options, device_map={"": torch.cuda.current_device()})
    converted = dequantized.cached_part(source, "model")
    folder = source.path
    if converted is not None:
        folder = converted
    elif source.gguf_file:
        kwargs.update(_gguf_kwargs(source.gguf_file))
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelNotFoundError(
            f"base model {source.requested!r}: transformers cannot load it as a causal LM ({exc})"
        ) from exc
    if source.gguf_file and converted is None:
        _drop_gguf_quantizer(model)
        if dtype == torch.float32:  # the copy keeps the conversion's own precision, read back into any dtype
            dequantized.keep_part(source, "model", model)
    _set_name(model, source)
    return model.eval()


def _check_quantizable(source: ModelSource) -> None:
    """Quantizing on load needs the weights as transformers reads them from a model folder."""
    if source.gguf_file or source.kind == "peft_adapter":
        what = "a GGUF file" if source.gguf_file else "a LoRA adapter merged into its base"
        raise UnsupportedError(
            f"qlora quantizes the base model to 4 bits as it loads, which transformers cannot do to {what} "
            f"({source.requested!r}); use lora, or a base model in Hugging Face (safetensors) format"
        )


def _set_name(model: PreTrainedModel, source: ModelSource) -> None:
    """Name the model by its local files.

    peft writes this name into a trained adapter's `base_model_name_or_path`, which is how
    `resolve_model_source` later finds the adapter's base. A local folder with a config.json
    also stops peft from asking the hub about the name on every adapter save (a network call,
    and a warning when offline); a GGUF is named by its file, not the folder holding it.
    """
    name = str(source.path / source.gguf_file) if source.gguf_file else str(source.path)
    model.name_or_path = name
    model.config.name_or_path = name


def _gguf_kwargs(gguf_file: str) -> dict[str, Any]:
    from transformers import GgufConfig

    # dequantize=True: transformers can also keep GGUF blocks packed behind custom kernels, but
    # such layers cannot be trained or saved with save_pretrained.
    return {"gguf_file": gguf_file, "quantization_config": GgufConfig(gguf_file=gguf_file, dequantize=True)}


def _drop_gguf_quantizer(model: PreTrainedModel) -> None:
    """Forget the GGUF origin of a fully dequantized model, so it trains and saves like any other."""
    quantizer = getattr(model, "hf_quantizer", None)
    packed = [name for name, module in model.named_modules() if type(module).__name__.startswith("Gguf")]
    if packed:
        raise ModelNotFoundError(f"GGUF layers were left packed after dequantizing: {packed[:3]}")
    if quantizer is not None:
        quantizer.remove_quantization_config(model)


def _load_merged_adapter(source: ModelSource, dtype: torch.dtype, attn_implementation: str) -> PreTrainedModel:
    """The base with the LoRA adapter folded in: a plain model again, usable as a new base."""
    merged = load_adapter(source, attn_implementation).merge_and_unload()
    _set_name(merged, source)
    return merged.to(dtype).eval()


def load_adapter(source: ModelSource, attn_implementation: str = "sdpa") -> Any:
    """The LoRA adapter at `source` on its base, unmerged (a peft `PeftModel`), in fp32 on CPU.

    fp32 so that folding it in (merge_and_unload) does not round the update twice."""
    from peft import PeftModel

    if source.kind != "peft_adapter" or source.base is None:
        raise ModelNotFoundError(f"base model {source.requested!r}: not a LoRA adapter on a base")
    base = load_model(source.base, dtype=torch.float32, attn_implementation=attn_implementation)
    try:
        with warnings.catch_warnings():
            # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing`; harmless here
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
            return PeftModel.from_pretrained(base, source.path).eval()
    except Exception as exc:  # corrupt or mismatched adapter files fail in many library-specific ways
        raise ModelNotFoundError(
            f"base model {source.requested!r}: cannot apply the adapter to {source.base.requested!r} ({exc})"
        ) from exc
