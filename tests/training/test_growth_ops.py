"""Growth on tiny-llama, fp32: depth ×2 and width ×1.5 keep the model's function (KL ≤ 1e-6, the
same greedy generations), and the grown model saves and loads with plain transformers."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from tuneyard.training.evaluation import mean_token_kl
from tuneyard.training.models import load_model, load_tokenizer, resolve_model_source
from tuneyard.training.ops.growth import GrowthPlan, depth_for_target, grow, plan_growth

PROMPTS = ("the model reads a short answer", "<|im_start|>user\nWhat is 3 plus 4?<|im_end|>\n")


def load_tiny(model_cache: Path) -> tuple[Any, Any]:
    source = resolve_model_source("tiny-llama", model_cache)
    return load_model(source), load_tokenizer(source)


@torch.no_grad()
def kl_and_greedy(source: Any, grown: Any, tokenizer: Any) -> tuple[float, bool]:
    total, count, same = 0.0, 0, True
    for prompt in PROMPTS:
        ids = torch.tensor([tokenizer(prompt)["input_ids"]])
        kl, n = mean_token_kl(source(input_ids=ids).logits, grown(input_ids=ids).logits,
                              torch.ones(ids.shape, dtype=torch.bool))
        total, count = total + kl, count + n
        settings = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
        same &= torch.equal(source.generate(ids, **settings), grown.generate(ids, **settings))
    return total / count, same


@pytest.mark.parametrize(("depth", "width"), [(2.0, 1.0), (1.0, 1.5), (2.0, 1.5), (2.5, 1.0), (3.0, 1.0)],
                         ids=["depth2", "width1.5", "both", "depth2.5", "depth3"])
def test_growth_keeps_the_function(tmp_path: Path, model_cache: Path, depth: float, width: float) -> None:
    from transformers import AutoModelForCausalLM

    source, tokenizer = load_tiny(model_cache)
    grown, _ = load_tiny(model_cache)
    before = sum(p.numel() for p in grown.parameters())
    plan = plan_growth(grown.config, depth, width)
    grow(grown, plan, torch.Generator().manual_seed(0))
    assert plan == GrowthPlan(round(4 * depth), round(384 * width))
    assert len(grown.model.layers) == plan.layers  # more copies than blocks: none dropped (×2.5, ×3)
    assert sum(p.numel() for p in grown.parameters()) > before

    kl, same_generations = kl_and_greedy(source, grown, tokenizer)
    assert kl <= 1e-6 and same_generations

    grown.save_pretrained(tmp_path / "grown")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "grown", dtype=torch.float32).eval()
    assert (reloaded.config.num_hidden_layers, reloaded.config.intermediate_size) == (plan.layers,
                                                                                      plan.intermediate_size)
    ids = torch.tensor([tokenizer(PROMPTS[0])["input_ids"]])
    assert torch.equal(reloaded(input_ids=ids).logits, grown(input_ids=ids).logits)


def test_target_params_grows_depth_to_the_nearest_block(model_cache: Path) -> None:
    model, _ = load_tiny(model_cache)
    total = sum(p.numel() for p in model.parameters())
    block = sum(p.numel() for p in model.model.layers[0].parameters())
    plan = depth_for_target(model, total + 3 * block + block // 3)
    assert plan == GrowthPlan(4 + 3, 384)


@pytest.mark.slow
@pytest.mark.parametrize(("depth", "width"), [(2.0, 1.0), (1.0, 1.5)], ids=["depth2", "width1.5"])
def test_growth_keeps_the_function_of_smollm2(depth: float, width: float) -> None:
    from tests.support.models import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    source_ref = resolve_model_source(str(gguf), gguf.parent)
    source, tokenizer = load_model(source_ref), load_tokenizer(source_ref)
    grown = copy.deepcopy(source)  # dequantizing the GGUF again would take longer than the test
    grow(grown, plan_growth(grown.config, depth, width), torch.Generator().manual_seed(0))
    kl, same_generations = kl_and_greedy(source, grown, tokenizer)
    assert kl <= 1e-6 and same_generations
