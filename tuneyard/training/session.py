"""What a recipe works with: the model prepared for its method, its tokenizer and device, its data.

Loading is where most user errors surface (a missing model, unusable data); it happens
here, before any step, and each phase is announced in the telemetry as it starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import torch
from transformers.utils import logging as hf_logging

from tuneyard.errors import UserError
from tuneyard.spec.job import ORIGIN_USER
from tuneyard.training import artifacts, model_card
from tuneyard.training.attention_precision import decide_attention_precision
from tuneyard.training.config import RunConfig
from tuneyard.training.data import DataSource, PreparedData, prepare_data
from tuneyard.training.device import pick_device
from tuneyard.training.loss import chunked_token_loss_sum, token_loss_sum
from tuneyard.training.methods import Method, get_method
from tuneyard.training.model_card import CardInputs
from tuneyard.training.models import (
    ModelSource,
    check_method_supported,
    load_model,
    load_tokenizer,
    resolve_model_source,
)
from tuneyard.training.models.attention import per_example_attention, supports_per_example
from tuneyard.training.precision import decide_bf16
from tuneyard.training.rng import PURPOSE_METHOD_INIT, seed_everything, seeded
from tuneyard.training.telemetry import Telemetry
from tuneyard.training.versions import library_versions


@dataclass
class Session:
    """The model a recipe works on, ready for its method, and how to run it on this device.

    Loading is two steps a recipe calls in turn: `load_model` (every job type) and `load_data`
    (the types that take data), so a data-free job reuses the first alone.
    """

    model: Any
    tokenizer: Any
    method: Method
    device: torch.device
    bf16: bool
    source: ModelSource  # where the base model came from; the model card names it
    head: Any = None  # (decoder, lm_head weight) when the loss may skip the model's full logits
    per_example: bool = False
    """Whether a padding-free line's attention runs one example at a time (models/attention.py);
    else transformers' sdpa over the line's block-diagonal mask, with lines capped in length."""
    attention_fp32: bool = False
    """Whether a bf16 run attends per example in fp32, where this device's bf16 attention is the slower
    (training/attention_precision.py); False in fp32 runs, which attend in fp32 anyway."""
    compiled: Any = None
    """torch.compile's wrapper of `loss_target()` while training runs compiled (training/compilation.py);
    None: eager."""
    _attention_scopes: int = 0

    @classmethod
    def load_model(cls, config: RunConfig, telemetry: Telemetry) -> Session:
        """Load the base model and its tokenizer and prepare it for the method, its new weights
        drawn from the spec's seed; then seed every global stream from it, whatever loading drew."""
        hp = config.hyperparams
        hf_logging.disable_progress_bar()  # runner.log is read by people and by the supervisor's tail
        device = pick_device(config.device)
        if hp.bf16 == "auto":
            probe = decide_bf16(device, config.model_cache_dir)
            bf16 = probe.use_bf16
            config.decisions["bf16_probe"] = probe.record()
            telemetry.log(f"bf16 auto: {'on' if bf16 else 'off'} ({probe.reason}"
                          f"{', measured before on this machine' if probe.cached else ''})")
        else:
            bf16 = bool(hp.bf16)
        telemetry.phase("loading_model")
        check_method_supported(config.method, device.type)
        source = resolve_model_source(config.spec.base_model, config.model_cache_dir)
        tokenizer = load_tokenizer(source)
        method = get_method(config.method)
        load_options = method.load_options(bf16)
        model: Any = load_model(source, dtype=torch.float32, load_options=load_options)
        _fit_context(config, model.config, telemetry)
        if not load_options:  # a base quantized as it loads is placed on the device by its loader
            model = model.to(device)
        if hp.gradient_checkpointing:
            _checkpoint_activations(model)
        with seeded(hp.seed, PURPOSE_METHOD_INIT):  # a cold cache built the base from the same streams
            model = method.prepare(model, hp, bf16)
        head = _plain_head(model)
        per_example = supports_per_example(_transformers_model(model))
        attention_fp32 = False
        if bf16 and per_example:
            attention = decide_attention_precision(device, config.model_cache_dir)
            attention_fp32 = attention.fp32
            config.decisions["attention_probe"] = attention.record()
        model.train()
        config.decisions.update(
            device=str(device), bf16=bf16, model_source=_describe(source), versions=library_versions()
        )
        telemetry.log(f"model {config.spec.base_model} on {device}, bf16 {'on' if bf16 else 'off'}, "
                      f"method {method.name}, attention {'per example' if per_example else 'masked lines'}"
                      f"{' in fp32' if attention_fp32 else ''}")
        seed_everything(hp.seed)  # a recipe that draws after loading starts from the seed, not the cache state
        return cls(model, tokenizer, method, device, bf16, source, head, per_example, attention_fp32)

    def load_data(self, config: RunConfig, telemetry: Telemetry) -> PreparedData:
        """The job's datasets read, validated, split and tokenized with this model's tokenizer."""
        hp = config.hyperparams
        telemetry.phase("loading_data")
        return prepare_data(
            [DataSource(Path(d.path or ""), d.format, d.split) for d in config.datasets], self.tokenizer,
            max_seq_length=hp.max_seq_length, train_on_inputs=hp.train_on_inputs,
            eval_split=hp.eval_split, seed=hp.seed, log=telemetry.log,
        )  # fmt: skip

    @property
    def pad_token_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.tokenizer.eos_token_id)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    @contextlib.contextmanager
    def attention_scope(self) -> Iterator[None]:
        """Hold per-example attention over a forward AND its backward: under gradient checkpointing
        the backward runs each layer's forward again, and it must attend as the first one did."""
        if not self.per_example:
            yield
            return
        self._attention_scopes += 1
        try:
            with per_example_attention(_transformers_model(self.model), fp32=self.attention_fp32):
                yield
        finally:
            self._attention_scopes -= 1

    def loss_sum(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """(summed token loss, loss tokens) of one collated batch, as token_loss_sum defines it.

        Where the logits are a plain projection of the last hidden states, only the positions
        that carry loss are projected, chunk by chunk: prompts, padding and each example's last
        token never meet the vocabulary, and the fp32 (tokens x vocabulary) logits never exist.
        A padding-free line (one row) is attended one example at a time where the model allows.
        """
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        one_line = self.per_example and inputs["input_ids"].shape[0] == 1 and "position_ids" in inputs
        if one_line and self._attention_scopes == 0 and torch.is_grad_enabled() and self._checkpointing():
            raise RuntimeError("a padding-free line under gradient checkpointing needs its backward inside "
                               "Session.attention_scope(), where the recomputed forward attends as this one")
        scope = self.attention_scope() if one_line else contextlib.nullcontext()
        # Evaluation (no grad) stays eager: its graph would be a second compile for a few batches.
        forward = self.compiled if self.compiled is not None and torch.is_grad_enabled() else self.loss_target()
        with scope, self.autocast():
            if self.head is None:
                return token_loss_sum(forward(**inputs, use_cache=False).logits, batch["labels"])
            hidden = forward(**inputs, use_cache=False).last_hidden_state
            return chunked_token_loss_sum(hidden, self.head[1], batch["labels"])

    def loss_target(self) -> Any:
        """The module loss_sum runs: the decoder when the loss projects only loss-bearing positions
        itself, else the whole model. What `compile` compiles."""
        return self.model if self.head is None else self.head[0]

    def _checkpointing(self) -> bool:
        model = _transformers_model(self.model)
        if hasattr(model, "is_activation_checkpointing"):  # the old name warns in transformers >= 5.2x
            return bool(model.is_activation_checkpointing)
        return bool(getattr(model, "is_gradient_checkpointing", False))

    def memory_gb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**30
        return psutil.Process().memory_info().rss / 2**30

    def save_final(self, target: Path, card: CardInputs, weights: dict[str, torch.Tensor] | None = None) -> None:
        """The trained model in the standard layout, loadable without tuneyard or this machine's
        files: the adapter names its base portably, and README.md is tuneyard's model card."""
        manifest = {"kind": "final", "method": self.method.name, "spec": model_card.portable_spec(card),
                    "versions": card.versions}
        with artifacts.atomic_folder(target, manifest) as tmp:
            self.save_weights(tmp, weights)
            self.tokenizer.save_pretrained(tmp)
            # Named by the source the runner loaded: the server resolves a trained model's base through
            # this field when it is trained further; what a client downloads shows it as its user
            # named it (services/path_display).
            model_card.name_base_portably(tmp, model_card.base_reference(card.source))
            adapter = (tmp / model_card.ADAPTER_CONFIG_FILE).is_file()
            (tmp / model_card.CARD_FILE).write_text(model_card.render_card(card, adapter), encoding="utf-8")

    def save_weights(self, folder: Path, weights: dict[str, torch.Tensor] | None = None) -> None:
        """The trainable weights in the standard layout: the model's, or `weights` gathered from the
        ranks where it holds shards (Parallel.full_weights)."""
        self.method.save(self.model, folder, weights)


@torch.no_grad()
def _plain_head(model: Any) -> tuple[Any, torch.Tensor] | None:
    """(decoder, lm_head weight) when the model's logits are exactly decoder states @ weight.T.

    Checked on a few tokens rather than trusted from the architecture: some models scale or
    soft-cap their logits, and a LoRA on lm_head wraps it. In eval mode, so no dropout draws
    a random number.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return None
    decoder = base.get_decoder()
    if decoder is base:
        return None
    was_training = model.training
    model.eval()
    try:
        ids = torch.arange(min(8, head.weight.shape[0]), device=head.weight.device).unsqueeze(0)
        logits = model(input_ids=ids, use_cache=False).logits
        hidden = decoder(input_ids=ids, use_cache=False).last_hidden_state
        plain = bool(torch.allclose(head(hidden).float(), logits.float(), rtol=1e-4, atol=1e-5))
    finally:
        model.train(was_training)
    return (decoder, head.weight) if plain else None


def _fit_context(config: RunConfig, model_config: Any, telemetry: Telemetry) -> None:
    """Rows no longer than the positions the base model was trained on.

    Past them, most architectures run without complaint and learn from garbage positions, so a
    user's longer max_seq_length is refused (a user error naming it); a default is lowered to fit.
    """
    context = getattr(model_config, "max_position_embeddings", None)
    hp = config.hyperparams
    if not isinstance(context, int) or context <= 0 or hp.max_seq_length <= context:
        return
    if config.origins.get("max_seq_length") == ORIGIN_USER:
        raise UserError(f"hyperparams.max_seq_length: {hp.max_seq_length} tokens is beyond the {context} "
                        f"positions base model {config.spec.base_model!r} takes; give at most {context}",
                        field="hyperparams.max_seq_length", context_length=context)
    telemetry.log(f"max_seq_length {hp.max_seq_length} ({config.origins.get('max_seq_length')}) lowered to "
                  f"{context}, the base model's context", level="warning")
    hp.max_seq_length = context


def _describe(source: Any) -> Any:
    """The model source as JSON: paths as text at any depth (an adapter's source nests its base's)."""
    if dataclasses.is_dataclass(source) and not isinstance(source, type):
        return _json_ready(dataclasses.asdict(source))
    return str(source)


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def _transformers_model(model: Any) -> Any:
    """The transformers model under a peft wrapper (its config is the one attention reads)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _checkpoint_activations(model: Any) -> None:
    """Gradient (activation) checkpointing, by the name this transformers gives it."""
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x; the old name warns
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
