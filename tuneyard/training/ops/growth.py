"""Function-preserving growth of a Llama-family causal LM (Llama, Qwen2, Mistral, SmolLM2, tiny-llama).

Depth: new decoder blocks, each a copy of the block before it with its two output projections
(attention `o_proj`, MLP `down_proj`) zeroed. A pre-norm block adds `o_proj(attn) + down_proj(mlp)`
to the residual stream, so with both at zero it is exactly the identity, yet every weight of it
is live: the zeroed projections get gradients from the first step (their inputs are not zero),
and the rest follows once they move.

Width: more MLP channels in every layer. The new channels' gate and up rows copy existing channels
(so they compute something sensible); their `down_proj` columns are zero, so they add nothing
until trained. Every layer keeps one intermediate size, as a standard config says it.

Both change the config to match, so the grown model saves in the standard layout and loads with
plain transformers. `function_preservation` measures what the growth kept: the mean per-token
KL(source ‖ grown) of the next-token distributions on evaluation text, before any training step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from tuneyard.errors import UnsupportedError
from tuneyard.spec.job import GROWABLE_MODEL_TYPES

GROWABLE_TYPES = GROWABLE_MODEL_TYPES


@dataclass(frozen=True)
class GrowthPlan:
    """How much to grow: the layer count and MLP width after growth."""

    layers: int
    intermediate_size: int


def check_growable(config: Any) -> None:
    """Refuse a model whose blocks this module cannot grow without changing its function."""
    if getattr(config, "model_type", None) not in GROWABLE_TYPES:
        raise UnsupportedError(
            f"base_model: growth keeps the function of {', '.join(GROWABLE_TYPES)} models; this one is "
            f"{getattr(config, 'model_type', None)!r}", field="base_model",
        )


def plan_growth(config: Any, depth_factor: float, width_factor: float) -> GrowthPlan:
    """The layer count and MLP width that `depth_factor` and `width_factor` give (rounded, never fewer)."""
    layers = max(config.num_hidden_layers, round(config.num_hidden_layers * depth_factor))
    width = max(config.intermediate_size, round(config.intermediate_size * width_factor))
    return GrowthPlan(layers, width)


def block_params(model: Any) -> int:
    """Parameters of one decoder block (all blocks of these models are alike)."""
    return sum(p.numel() for p in model.model.layers[0].parameters())


def depth_for_target(model: Any, target_params: int) -> GrowthPlan:
    """Depth growth to the block count whose total parameters come nearest `target_params`."""
    config = model.config
    current = sum(p.numel() for p in model.parameters())
    extra = max(0, round((target_params - current) / block_params(model)))
    return GrowthPlan(config.num_hidden_layers + extra, config.intermediate_size)


@dataclass(frozen=True)
class NewParameters:
    """What growth added: the new blocks' parameters and the widened MLP projections (whole: a
    tensor holds old and new channels together)."""

    parameters: list[torch.nn.Parameter]


@torch.no_grad()
def grow(model: Any, plan: GrowthPlan, generator: torch.Generator) -> NewParameters:
    """Grow `model` in place to `plan` (width first, so the new blocks copy widened ones)."""
    check_growable(model.config)
    new: list[torch.nn.Parameter] = []
    if plan.intermediate_size > model.config.intermediate_size:
        new += _widen_mlp(model, plan.intermediate_size, generator)
    if plan.layers > model.config.num_hidden_layers:
        new += _deepen(model, plan.layers)
    return NewParameters(list({id(p): p for p in new}.values()))  # a widened block's copy is listed twice


def _widen_mlp(model: Any, width: int, generator: torch.Generator) -> list[torch.nn.Parameter]:
    old = model.config.intermediate_size
    for layer in model.model.layers:
        mlp = layer.mlp
        source = torch.randint(0, old, (width - old,), generator=generator)  # which channel each new one copies
        mlp.gate_proj = _grow_rows(mlp.gate_proj, source)
        mlp.up_proj = _grow_rows(mlp.up_proj, source)
        mlp.down_proj = _grow_zero_columns(mlp.down_proj, width - old)
    model.config.intermediate_size = width
    return [p for layer in model.model.layers for p in layer.mlp.parameters()]


def _grow_rows(linear: torch.nn.Linear, copies: torch.Tensor) -> torch.nn.Linear:
    grown = _linear_like(linear, linear.in_features, linear.out_features + len(copies))
    grown.weight.copy_(torch.cat([linear.weight, linear.weight[copies]], dim=0))
    if linear.bias is not None:
        grown.bias.copy_(torch.cat([linear.bias, linear.bias[copies]]))
    return grown


def _grow_zero_columns(linear: torch.nn.Linear, extra: int) -> torch.nn.Linear:
    grown = _linear_like(linear, linear.in_features + extra, linear.out_features)
    grown.weight.zero_()
    grown.weight[:, : linear.in_features] = linear.weight
    if linear.bias is not None:
        grown.bias.copy_(linear.bias)
    return grown


def _linear_like(linear: torch.nn.Linear, in_features: int, out_features: int) -> torch.nn.Linear:
    return torch.nn.Linear(in_features, out_features, bias=linear.bias is not None,
                           device=linear.weight.device, dtype=linear.weight.dtype)


def _deepen(model: Any, layers: int) -> list[torch.nn.Parameter]:
    """Insert `layers - L` identity blocks spread evenly: after original block i go the copies whose
    evenly spaced slot falls there, so ×2 interleaves one copy after every block."""
    old = list(model.model.layers)
    # The block each copy follows: `rounds` copies after every block (×3 and more), then the rest
    # spread evenly (int((k + 1) · L / rest) − 1 is in range only for rest ≤ L).
    rounds, rest = divmod(layers - len(old), len(old))
    after = [i for i in range(len(old)) for _ in range(rounds)]
    after += [int((k + 1) * len(old) / rest) - 1 for k in range(rest)]
    grown: list[Any] = []
    for i, block in enumerate(old):
        grown.append(block)
        grown.extend(_identity_copy(block) for _ in range(after.count(i)))
    if len(grown) != layers:
        raise AssertionError(f"grew {len(grown)} blocks for a config of {layers}")
    for index, block in enumerate(grown):
        block.self_attn.layer_idx = index  # the KV cache is indexed by it
    model.model.layers = torch.nn.ModuleList(grown)
    types = getattr(model.config, "layer_types", None)
    if isinstance(types, list) and len(types) == len(old):
        model.config.layer_types = [types[min(i, len(types) - 1)] for i in _origins(old, grown)]
    model.config.num_hidden_layers = layers
    return [p for block in grown if not any(block is o for o in old) for p in block.parameters()]


def _origins(old: list[Any], grown: list[Any]) -> list[int]:
    """For each grown block, the index of the original block it is or copies."""
    origin, out = -1, []
    for block in grown:
        origin = next((i for i, o in enumerate(old) if o is block), origin)
        out.append(origin)
    return out


def _identity_copy(block: Any) -> Any:
    twin = copy.deepcopy(block)
    for projection in (twin.self_attn.o_proj, twin.mlp.down_proj):
        projection.weight.zero_()
        if projection.bias is not None:
            projection.bias.zero_()
    return twin
