"""torch.compile of the training forward, where it pays for its compile time (`compile: auto | true | false`).

What is compiled is the module the loss calls (Session.loss_target: the decoder when the loss
projects only its loss-bearing positions, else the whole model), wrapped, not changed in place:
the weights, their names in a saved state dict and the eager module stay as they were, so falling
back to eager is dropping the wrapper. Only training's forward (and so its backward) goes through
it; evaluation runs under no_grad, a graph of its own that would cost a second compile for a
handful of batches, and stays eager.

Shapes are symbolic from the start (`dynamic=True`): a padding-free line is as long as its
examples, so nearly every step has a length of its own. On tiny-llama, static shapes compiled 57
frames again in 9 steps, torch's default (dynamic once a shape changed) 15 in 7, symbolic ones none
(benchmarks/compile_cost.py, figures in docs/engine.md).

`auto` compiles where whole runs on the device measured faster compiled (WHOLE_RUN_SPEEDUP) and
the run is long enough to repay the compile (REPAY_FLOPS_PER_LAYER): on the figures so far, on no
device. The rule is a function of the spec, the model and the device, never of a clock, so one spec
decides the same on every attempt and a resumed run stays the run it resumes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch._dynamo.exc import TorchDynamoException

from tuneyard.errors import SpecError, UnsupportedError
from tuneyard.planning.compute import train_flops
from tuneyard.planning.memory import TrainingSetup
from tuneyard.planning.shape import ModelShape

COMPILE_ERRORS: tuple[type[BaseException], ...] = (TorchDynamoException,)
"""What a failed compile raises: Dynamo's errors and Inductor's (InductorError is a
BackendCompilerFailed, a TorchDynamoException), whatever the backend's own cause (no C++ compiler,
an op it cannot lower)."""

REPAY_FLOPS_PER_LAYER = 1.1e13
"""Training FLOPs per decoder layer past which compiling repays itself on CPU.

Compiling pays when the time it saves, eager seconds x (1 - 1/speedup), passes the compile's
seconds: at FLOPs = compile seconds x eager FLOP/s / (1 - 1/speedup). Both seconds are this CPU's
speed at work, so a threshold in FLOPs carries from one CPU to another where seconds would not. Per
layer because that is what held across the two models measured (benchmarks/compile_cost.py, cold
Inductor cache, 2 shared cores; docs/engine.md): tiny-llama (4 layers) broke even at 2.7e12 (LoRA
fp32), 1.8e12 (LoRA bf16), 1.04e13 (full fp32) and 2.7e12 (full bf16) FLOPs a layer, SmolLM2-135M
(30 layers, LoRA fp32) at 2.6e12. The largest, rounded up: one figure for every method and
precision, so no run is compiled that a measurement says loses."""


WHOLE_RUN_SPEEDUP: dict[str, float] = {"cpu": 0.82}
"""Compiled over eager tokens/s of whole training steps, by device, the best measured
(benchmarks/train_throughput.py, docs/engine.md): on this CPU LoRA fp32 0.62x (varied chats) and
0.82x (fixed-length chunks), LoRA bf16 0.55x. Where it is not above 1 no run repays a compile,
however long, and `auto` stays eager; a device not listed was not measured. The FLOPs rule
(REPAY_FLOPS_PER_LAYER) weighs runs only where it is."""


class CompileFailed(UnsupportedError):
    """torch.compile failed on this machine."""


@dataclass(frozen=True)
class CompileDecision:
    """Whether training's forward is compiled, and why; spec.json records it under resolved.compile_decision."""

    use: bool
    setting: str  # the spec's value: "auto", "true" or "false"
    reason: str
    planned_flops: float | None = None  # the run's training FLOPs, where auto weighed them
    repay_flops: float | None = None  # what it takes to repay the compile (REPAY_FLOPS_PER_LAYER x layers)

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def decide(setting: bool | str, device: torch.device, *, applies: bool, gradient_checkpointing: bool,
           planned_flops: float | None, layers: int | None,
           speedups: Mapping[str, float] = WHOLE_RUN_SPEEDUP) -> CompileDecision:
    """`true` and `false` as given (true where the recipe cannot compile is a user error); `auto` by
    the measured rule: only on a device whose whole runs measured faster compiled (`speedups`), never
    with gradient checkpointing (not measured), and only where the run's FLOPs repay the compile
    (REPAY_FLOPS_PER_LAYER). On the figures so far that is nowhere."""
    name = str(setting).lower()
    if setting is False:
        return CompileDecision(False, name, "compile: false")
    if not applies:
        if setting is True:
            raise CompileFailed("hyperparams.compile: true, but this job type's loss does not run through the "
                                "compiled forward; set compile: auto or false", field="hyperparams.compile")
        return CompileDecision(False, name, "this job type's loss does not run through the compiled forward")
    if setting is True:
        return CompileDecision(True, name, "compile: true")
    speedup = speedups.get(device.type)
    if speedup is None:
        return CompileDecision(False, name, f"not measured on {device.type}: set compile: true to compile there")
    if speedup <= 1.0:
        return CompileDecision(False, name, f"whole runs on {device.type} measured compiled at {speedup}x eager "
                                            f"at best: no run repays the compile")
    if gradient_checkpointing:
        return CompileDecision(False, name, "not measured with gradient checkpointing")
    if planned_flops is None or not layers:
        return CompileDecision(False, name, "the run's FLOPs cannot be counted for this model")
    repay = REPAY_FLOPS_PER_LAYER * layers
    verdict = planned_flops >= repay
    reason = (f"{planned_flops:.2e} training FLOPs {'repay' if verdict else 'do not repay'} a compile "
              f"({repay:.2e} for {layers} layers)")
    return CompileDecision(verdict, name, reason, planned_flops, repay)


def planned_flops(model: Any, method: str, hyperparams: dict[str, Any], bf16: bool, tokens: float,
                  example_tokens: float) -> tuple[float | None, int | None]:
    """(training FLOPs of the run's planned tokens, decoder layers) as the estimate counts them
    (tuneyard.planning); (None, None) for a model whose shape cannot be read from its config."""
    config = getattr(model, "config", None)
    try:
        shape = ModelShape.from_config(config.to_dict() if config is not None else {})
    except SpecError:
        return None, None
    setup = TrainingSetup.from_hyperparams(method, hyperparams, bf16, example_tokens)
    return train_flops(shape, setup, int(tokens)), shape.layers


def compile_forward(session: Any, dynamic: bool | None = True) -> Any:
    """Wrap the session's loss target in torch.compile (lazily: the first forward compiles) and
    make the loss use it; the wrapper is returned, and shares every weight with the eager module.

    `fallback_random`: random ops (LoRA's dropout) draw from torch's generator as eager ones do,
    not from Inductor's own, so a compiled run stays the eager run to float rounding. `dynamic`: True
    for the engine (see the module docstring); the benchmark also measures None and False."""
    wrapper = torch.compile(session.loss_target(), dynamic=dynamic, options={"fallback_random": True})
    session.compiled = wrapper
    return wrapper


def run_eager(session: Any) -> None:
    """Drop the compiled wrapper: the loss calls the eager module again, on the same weights."""
    session.compiled = None


def is_compile_error(exc: BaseException) -> bool:
    return isinstance(exc, COMPILE_ERRORS)
