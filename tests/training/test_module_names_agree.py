"""The torch-free table of module names (tuneyard.spec.module_names) held to what transformers
builds and to what peft accepts, so the API's check at submission says what the runner would find."""

from __future__ import annotations

import warnings

import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model
from transformers import AutoConfig, AutoModelForCausalLM

from tuneyard.spec.module_names import LAYER_MODULES, Kind, layout_for, target_problems

SMALL = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
         "num_key_value_heads": 1, "head_dim": 8, "vocab_size": 64, "pad_token_id": 0, "bos_token_id": 1,
         "eos_token_id": 2}


def build(model_type: str, device: str) -> torch.nn.Module:
    config = AutoConfig.for_model(model_type, **SMALL)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config)


def kind_of(module: torch.nn.Module) -> Kind:
    if isinstance(module, torch.nn.Linear):
        return "linear"
    if isinstance(module, torch.nn.Embedding):
        return "embedding"
    if "Norm" in type(module).__name__:
        return "norm"
    return "block" if any(True for _ in module.children()) else "other"


@pytest.mark.parametrize("model_type", sorted(LAYER_MODULES))
def test_the_table_names_every_module_transformers_builds(model_type: str) -> None:
    model = build(model_type, "meta")  # no weights are allocated
    built = {name: kind_of(module) for name, module in model.named_modules()}
    layout = layout_for(model_type, SMALL["num_hidden_layers"])
    assert layout is not None and dict(layout.modules) == built


NAMES = ["nope", "q_proj", "self_attn.v_proj", "layers.1.mlp.down_proj", "layers.2.mlp.down_proj", "mlp",
         "self_attn", "input_layernorm", "norm", "rotary_emb", "act_fn", "embed_tokens", "lm_head", "proj"]


@pytest.mark.parametrize("name", NAMES)
def test_peft_refuses_exactly_the_names_the_table_refuses(name: str) -> None:
    layout = layout_for("llama", SMALL["num_hidden_layers"])
    assert layout is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft warns about adapting embeddings and tied heads
        try:
            inject_adapter_in_model(LoraConfig(r=2, target_modules=[name]), build("llama", "cpu"))
            refused = False
        except ValueError:
            refused = True
    assert refused == bool(target_problems([name], layout))
