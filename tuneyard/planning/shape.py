"""A decoder's dimensions and parameter counts, read from its config.json without loading weights.

The Llama family's layout (llama, mistral, qwen2/3, gemma, smollm): per layer q/k/v/o
projections (grouped-query attention), a gated MLP (gate, up, down), two norms; embeddings,
a final norm and an LM head, tied to the embeddings or not. Counting from these names is exact
for the family (a test holds the counts equal to real models') and close for others of its shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuneyard.errors import SpecError

BUILTIN_CONFIGS: dict[str, dict[str, Any]] = {
    # tuneyard.training.models.tiny_llama's recipe (a test compares it with the built model's config)
    "tiny-llama": {
        "model_type": "llama", "vocab_size": 2048, "hidden_size": 128, "intermediate_size": 384,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
        "tie_word_embeddings": True, "max_position_embeddings": 1024,
    },
    # HuggingFaceTB/SmolLM2-135M-Instruct's config.json, as its GGUF dequantizes
    "smollm2-135m-instruct": {
        "model_type": "llama", "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "tie_word_embeddings": True, "max_position_embeddings": 8192,
    },
}
"""config.json of each built-in base model, so an estimate never builds or fetches one."""

_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


@dataclass(frozen=True)
class Linear:
    """One linear module of a decoder layer: its last name part, in and out features."""

    name: str
    d_in: int
    d_out: int


@dataclass(frozen=True)
class ModelShape:
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    qkv_bias: bool = False

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelShape:
        """The shape of the model a config.json describes; a SpecError naming what is missing."""
        missing = [k for k in _REQUIRED if not _positive_int(config.get(k))]
        if missing:
            raise SpecError([{"field": "base_model", "message": (
                f"its config.json lacks {', '.join(missing)}: its memory and compute cannot be estimated")}])
        heads = int(config["num_attention_heads"])
        kv, head_dim = config.get("num_key_value_heads"), config.get("head_dim")
        return cls(
            vocab=int(config["vocab_size"]), hidden=int(config["hidden_size"]),
            intermediate=int(config["intermediate_size"]), layers=int(config["num_hidden_layers"]),
            heads=heads, kv_heads=kv if isinstance(kv, int) and _positive_int(kv) else heads,
            head_dim=head_dim if isinstance(head_dim, int) and _positive_int(head_dim)
            else int(config["hidden_size"]) // heads,
            tied=bool(config.get("tie_word_embeddings", False)),
            # qwen2 puts biases on q/k/v; others say so with attention_bias
            qkv_bias=bool(config.get("attention_bias", config.get("model_type") == "qwen2")),
        )  # fmt: skip

    def layer_linears(self) -> list[Linear]:
        """The linear modules of one decoder layer (what LoRA's 'all-linear' adapts)."""
        q, kv, h, i = self.heads * self.head_dim, self.kv_heads * self.head_dim, self.hidden, self.intermediate
        return [
            Linear("q_proj", h, q), Linear("k_proj", h, kv), Linear("v_proj", h, kv), Linear("o_proj", q, h),
            Linear("gate_proj", h, i), Linear("up_proj", h, i), Linear("down_proj", i, h),
        ]

    @property
    def layer_params(self) -> int:
        weights = sum(lin.d_in * lin.d_out for lin in self.layer_linears())
        bias = (self.heads + 2 * self.kv_heads) * self.head_dim if self.qkv_bias else 0
        return weights + bias + 2 * self.hidden  # two norms

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def params(self) -> int:
        head = 0 if self.tied else self.vocab * self.hidden
        return self.embedding_params + self.layers * self.layer_params + self.hidden + head

    @property
    def matmul_params(self) -> int:
        """Parameters that multiply every token (the layers' linears and the LM head), for FLOPs:
        an embedding is a lookup, not a matmul."""
        return self.layers * sum(lin.d_in * lin.d_out for lin in self.layer_linears()) + self.vocab * self.hidden

    def lora_params(self, rank: int, targets: str | list[str]) -> int:
        """Parameters of a LoRA of `rank` on the named linear modules ('all-linear': every one in the
        layers; peft leaves the output layer out of it)."""
        names = None if targets == "all-linear" else {t.rsplit(".", 1)[-1] for t in targets}
        per_layer = sum(rank * (lin.d_in + lin.d_out) for lin in self.layer_linears()
                        if names is None or lin.name in names)
        head = rank * (self.hidden + self.vocab) if names is not None and "lm_head" in names else 0
        return self.layers * per_layer + head

    def lora_width(self, targets: str | list[str]) -> int:
        """How many adapted linears one token passes through in one layer (each keeps a rank-wide
        intermediate for backward)."""
        names = None if targets == "all-linear" else {t.rsplit(".", 1)[-1] for t in targets}
        return sum(1 for lin in self.layer_linears() if names is None or lin.name in names)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
