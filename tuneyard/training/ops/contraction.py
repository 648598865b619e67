"""Structured contraction of a Llama-family causal LM: fewer MLP channels, the matrices smaller.

Every layer keeps the same number of MLP channels, `round(intermediate_size × (1 − ratio))`, each
layer its own most important ones: transformers' configs for these models have one
`intermediate_size`, so a model whose layers differed would not load without custom code. Channel j
of a layer is the row j of `gate_proj` and `up_proj` and the column j of `down_proj`; all three
shrink together, so the saved weights are smaller, not masked.

Whole layers may go too (`remove_layers`): the config's `num_hidden_layers` follows, so the model
still loads with plain transformers. Which: with calibration text, the layers that change the
residual stream least, 1 − cos(input, output) averaged over the tokens that carry loss (ShortGPT's
"block influence", Men et al. 2024); without, the last ones before the final layer, whose removal
the same paper found cheapest on average.

Importance of a channel: with calibration text, activation-based, the mean |act_fn(gate)·up| of
the channel over the calibration tokens that carry loss times the norm of its `down_proj` column (what it adds to
the residual stream); without, weight magnitude, the product of the norms of its three weight
vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from tuneyard.training.ops.growth import check_growable

ACTIVATION = "activation"
WEIGHT_MAGNITUDE = "weight_magnitude"


def kept_channels(config: Any, ratio: float) -> int:
    """MLP channels each layer keeps at `ratio` (at least one)."""
    return max(1, round(config.intermediate_size * (1.0 - ratio)))


@torch.no_grad()
def weight_importance(model: Any) -> list[torch.Tensor]:
    """Per layer, each channel's importance by weight magnitude."""
    scores = []
    for layer in model.model.layers:
        mlp = layer.mlp
        scores.append(mlp.gate_proj.weight.norm(dim=1) * mlp.up_proj.weight.norm(dim=1)
                      * mlp.down_proj.weight.norm(dim=0))
    return [s.float().cpu() for s in scores]


@torch.no_grad()
def activation_importance(model: Any, batches: Iterable[dict[str, torch.Tensor]],
                          forward: Callable[[dict[str, torch.Tensor]], Any]) -> list[torch.Tensor]:
    """Per layer, each channel's mean |activation| over the calibration tokens that carry loss
    (padding, and a chat's prompts, left out) times its down_proj column norm."""
    layers = list(model.model.layers)
    sums = [torch.zeros(layer.mlp.down_proj.in_features, dtype=torch.float64) for layer in layers]
    counts = [0]
    mask: list[torch.Tensor] = []

    def hook(index: int) -> Any:
        def accumulate(_module: Any, inputs: tuple[torch.Tensor, ...]) -> None:
            acts = inputs[0].detach().abs().double()[mask[0]]  # (real tokens, channels)
            sums[index] += acts.sum(dim=0).cpu()
        return accumulate

    handles = [layer.mlp.down_proj.register_forward_pre_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        for batch in batches:
            mask[:] = [batch["labels"] != -100]
            counts[0] += int(mask[0].sum())
            forward(batch)
    finally:
        for handle in handles:
            handle.remove()
    return [(s / max(counts[0], 1)).float() * layer.mlp.down_proj.weight.norm(dim=0).float().cpu()
            for s, layer in zip(sums, layers, strict=True)]


@torch.no_grad()
def contract_mlp(model: Any, keep: int, importance: list[torch.Tensor]) -> None:
    """Shrink every layer's MLP to its `keep` most important channels (kept in their order)."""
    check_growable(model.config)
    for layer, scores in zip(model.model.layers, importance, strict=True):
        chosen = torch.sort(torch.topk(scores, keep).indices).values
        mlp = layer.mlp
        mlp.gate_proj = _rows(mlp.gate_proj, chosen)
        mlp.up_proj = _rows(mlp.up_proj, chosen)
        mlp.down_proj = _columns(mlp.down_proj, chosen)
    model.config.intermediate_size = keep


def _rows(linear: torch.nn.Linear, chosen: torch.Tensor) -> torch.nn.Linear:
    out = torch.nn.Linear(linear.in_features, len(chosen), bias=linear.bias is not None,
                          device=linear.weight.device, dtype=linear.weight.dtype)
    out.weight.copy_(linear.weight[chosen.to(linear.weight.device)])
    if linear.bias is not None:
        out.bias.copy_(linear.bias[chosen.to(linear.weight.device)])
    return out


def _columns(linear: torch.nn.Linear, chosen: torch.Tensor) -> torch.nn.Linear:
    out = torch.nn.Linear(len(chosen), linear.out_features, bias=linear.bias is not None,
                          device=linear.weight.device, dtype=linear.weight.dtype)
    out.weight.copy_(linear.weight[:, chosen.to(linear.weight.device)])
    if linear.bias is not None:
        out.bias.copy_(linear.bias)
    return out


@torch.no_grad()
def layer_influence(model: Any, batches: Iterable[dict[str, torch.Tensor]],
                    forward: Callable[[dict[str, torch.Tensor]], Any]) -> list[float]:
    """Per layer, the mean 1 − cos(its input, its output) over the calibration tokens that carry loss."""
    layers = list(model.model.layers)
    sums, count = [0.0] * len(layers), [0]
    inputs: dict[int, torch.Tensor] = {}
    mask: list[torch.Tensor] = []

    def before(index: int) -> Any:
        def keep(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            inputs[index] = (args[0] if args else kwargs["hidden_states"]).detach()
        return keep

    def after(index: int) -> Any:
        def measure(_module: Any, _args: Any, _kwargs: Any, output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output
            cos = torch.nn.functional.cosine_similarity(inputs[index].double(), out.detach().double(), dim=-1)
            sums[index] += float((1.0 - cos)[mask[0]].sum())
        return measure

    handles = [h for i, layer in enumerate(layers) for h in (
        layer.register_forward_pre_hook(before(i), with_kwargs=True),
        layer.register_forward_hook(after(i), with_kwargs=True))]
    try:
        for batch in batches:
            mask[:] = [(batch["labels"] != -100).to(next(model.parameters()).device)]
            count[0] += int(mask[0].sum())
            forward(batch)
    finally:
        for handle in handles:
            handle.remove()
    return [total / max(count[0], 1) for total in sums]


def layers_to_drop(layers: int, count: int, influence: list[float] | None) -> list[int]:
    """The `count` layers to remove: the least influential, or without figures the last ones before
    the final layer. Never the first or the last layer (embedding-side and head-side: they are where
    removal costs most), so at most layers − 2."""
    candidates = list(range(1, layers - 1))
    if influence is None:
        return sorted(candidates[len(candidates) - count:])
    return sorted(sorted(candidates, key=lambda i: influence[i])[:count])


def remove_layers(model: Any, drop: list[int]) -> None:
    """Remove the decoder layers `drop` (indices); the config and each layer's index follow."""
    kept = [layer for i, layer in enumerate(model.model.layers) if i not in set(drop)]
    model.model.layers = torch.nn.ModuleList(kept)
    for index, layer in enumerate(kept):
        layer.self_attn.layer_idx = index
    model.config.num_hidden_layers = len(kept)
    types = getattr(model.config, "layer_types", None)
    if isinstance(types, list) and len(types) == len(kept) + len(drop):
        model.config.layer_types = [t for i, t in enumerate(types) if i not in set(drop)]
