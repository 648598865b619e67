"""Data-parallel training across the ranks torchrun started: the process group, the model wrapped in
DistributedDataParallel (ddp) or sharded by FSDP2's fully_shard (fsdp), and the few collectives a
recipe needs at step boundaries.

A run in one process gets `SingleProcess`, the null version of the same interface, so the training
loop has no `if distributed:` in it. Every collective has a timeout (`COLLECTIVE_TIMEOUT`): a rank
that died leaves the others failing within it, not hanging (gloo usually notices the closed socket at
once; the timeout is for a rank that hangs alive).
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable
from typing import Any, Protocol, cast

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.nn.parallel import DistributedDataParallel

from tuneyard.training.ranks import Ranks

COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)
"""How long a rank waits in a collective for the others. Rank 0 alone evaluates and writes checkpoints
while the others wait at the next step's collective, so this must outlast the longest of those; a
dead rank is usually noticed much sooner, by its closed connection."""


class Parallel(Protocol):
    """How a recipe's micro-steps and step boundaries reach the other ranks (none, in one process)."""

    ranks: Ranks

    def loss_sum(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The summed token loss of one collated micro-batch, through the model as wrapped."""

    def sync_gradients(self, now: bool) -> contextlib.AbstractContextManager[Any]:
        """Around a micro-step's backward: gradients are summed across ranks only when `now` (the last
        micro-step of the rank's optimizer step), else they accumulate locally."""

    def clip_gradients(self, params: list[torch.nn.Parameter], max_norm: float) -> float:
        """Scale the gradients of `params` to a norm of at most `max_norm`, the whole model's norm
        (over every rank's shards); return that norm as it was before."""

    def total(self, value: torch.Tensor) -> torch.Tensor:
        """`value` summed over the ranks (a copy; `value` is left alone)."""

    def any_of(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag true on any rank: every rank takes the same decision at a step boundary."""

    def gather(self, obj: Any) -> list[Any]:
        """`obj` of every rank, in rank order."""

    def barrier(self) -> None:
        """Wait until every rank got here."""

    every_rank_forwards: bool
    """Whether a forward needs every rank (sharded weights are gathered from all of them): then every
    rank evaluates, in step, and every rank takes part in saving; else rank 0 does both alone."""

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimizer's whole state for a checkpoint, on rank 0 (every rank must call it)."""

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Load a checkpoint's `optimizer_state` (read on every rank) into this rank's optimizer."""

    def full_weights(self) -> dict[str, torch.Tensor] | None:
        """The whole model's state dict on rank 0 where the model holds shards (every rank must call
        it); None where the model itself is whole and saves itself."""


class SingleProcess:
    """One process: nothing to share. A recipe that never calls `loss_sum` (DPO's own step) may leave
    the session out."""

    def __init__(self, session: Any = None) -> None:
        self.ranks = Ranks()
        self._session = session

    def loss_sum(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._session.loss_sum(batch)[0]

    def sync_gradients(self, now: bool) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def clip_gradients(self, params: list[torch.nn.Parameter], max_norm: float) -> float:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def total(self, value: torch.Tensor) -> torch.Tensor:
        return value.clone()

    def any_of(self, *flags: bool) -> tuple[bool, ...]:
        return flags

    def gather(self, obj: Any) -> list[Any]:
        return [obj]

    def barrier(self) -> None:
        return None

    every_rank_forwards = False

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return optimizer.state_dict()

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        optimizer.load_state_dict(state)

    def full_weights(self) -> dict[str, torch.Tensor] | None:
        return None


class _LossOf(torch.nn.Module):
    """The session's loss as a module's forward, so DDP sees the forward it must prepare the backward
    of: the loss may go through the decoder and the head apart (Session.loss_sum), not the model's own
    forward. The model is a submodule, so DDP finds every parameter through it."""

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.model = session.model
        self._session = session

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._session.loss_sum(batch)[0]


def _sum_hook(group: dist.ProcessGroup | None, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """Sum the gradients, where DDP's own hook averages them: each rank's loss is already divided by the
    loss tokens of the whole global step, so the sum is the one-process step's gradient."""
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    assert work is not None  # async_op=True always returns the work
    return work.get_future().then(lambda fut: fut.value()[0])


# DDP checks a hook's annotations by identity, and this module's are strings (postponed evaluation).
_sum_hook.__annotations__.update(bucket=dist.GradBucket, group=dist.ProcessGroup | None,
                                 **{"return": torch.futures.Future[torch.Tensor]})


class _Collectives(SingleProcess):
    """The step-boundary collectives both strategies share; the optimizer state and the saving are
    one process's where the model is whole on every rank (DDP)."""

    def __init__(self, ranks: Ranks, device: torch.device) -> None:
        self.ranks = ranks
        self._device = device

    def total(self, value: torch.Tensor) -> torch.Tensor:
        summed = value.detach().to(self._device, copy=True)
        dist.all_reduce(summed)
        return summed.to(value.device)

    def any_of(self, *flags: bool) -> tuple[bool, ...]:
        raised = torch.tensor([int(f) for f in flags], dtype=torch.int32, device=self._device)
        dist.all_reduce(raised, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in raised.tolist())

    def gather(self, obj: Any) -> list[Any]:
        found: list[Any] = [None] * self.ranks.world_size
        dist.all_gather_object(found, obj)
        return found

    def barrier(self) -> None:
        dist.barrier()


class DataParallel(_Collectives):
    """This rank's side of a DDP run: the session's model wrapped, and the step-boundary collectives."""

    def __init__(self, session: Any, ranks: Ranks) -> None:
        super().__init__(ranks, session.device)
        # "cuda" alone is the current device, which join_process_group() pinned to this rank
        device_ids = [torch.cuda.current_device()] if session.device.type == "cuda" else None
        # Every rank built the same model from the same seed; DDP still broadcasts rank 0's state at
        # construction, so a difference could not go unnoticed as two models trained apart.
        self._ddp = DistributedDataParallel(_LossOf(session), device_ids=device_ids)
        self._ddp.register_comm_hook(None, _sum_hook)
        _KEPT_UNTIL_EXIT.append(self._ddp)

    def loss_sum(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._ddp(batch)

    def sync_gradients(self, now: bool) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext() if now else self._ddp.no_sync()


class FullyShardedParallel(_Collectives):
    """This rank's side of an FSDP2 run: each decoder layer, then the whole model, sharded across the
    ranks in place (`fully_shard`), so a rank holds 1/world of the weights, gradients and optimizer
    state between forwards. Build the optimizer after this: the sharded parameters are new objects."""

    every_rank_forwards = True

    _GATHERED = StateDictOptions(full_state_dict=True, cpu_offload=True)
    """Whole tensors, on rank 0's CPU only: the checkpoint rank 0 writes is the one-process one."""

    def __init__(self, session: Any, ranks: Ranks) -> None:
        super().__init__(ranks, session.device)
        model = session.model
        for layer in _decoder_layers(model):
            fully_shard(layer)
        fully_shard(model)
        self._model: torch.nn.Module = model
        self._root = cast(FSDPModule, model)  # fully_shard changed its class in place
        # Summed, not averaged (each rank's loss is already divided by the whole step's loss tokens,
        # as under DDP), and through SUM alone: the divide factor 1 is otherwise a PREMUL_SUM, which
        # gloo refuses ("Cannot use ReduceOp.PREMUL_SUM with Gloo"). Set on each sharded module: on the
        # root alone it leaves the layers' gradients averaged.
        for module in model.modules():
            if isinstance(module, FSDPModule):
                module.set_gradient_divide_factor(1.0)
                module.set_force_sum_reduction_for_comms(True)
        # The loss through the model's own forward, the root module whose hooks gather its shards: the
        # session's shortcut through the decoder and the head's weight would miss the root's gather,
        # and its head weight is the unsharded tensor fully_shard replaced.
        session.head = None
        self._session = session
        _KEPT_UNTIL_EXIT.append(model)

    def loss_sum(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._session.loss_sum(batch)[0]

    def sync_gradients(self, now: bool) -> contextlib.AbstractContextManager[Any]:
        # Between syncs each rank accumulates its whole (unsharded) gradient; the last micro-step
        # reduce-scatters the sum.
        self._root.set_requires_gradient_sync(now)
        return contextlib.nullcontext()

    def clip_gradients(self, params: list[torch.nn.Parameter], max_norm: float) -> float:
        # Each shard's squares in fp64, summed over the ranks. clip_grad_norm_ over the shards takes
        # fp32 norms, whose rounding depends on the tensor's shape: on tiny-llama's embedding, half of
        # it (one shard) rounded 5e-5 (relative) away from the same values' exact norm, the whole
        # model's norm moved 8e-6 from the one-process figure, and every clipped step drifted apart.
        grads = [p.grad.to_local() for p in params if p.grad is not None]  # type: ignore[attr-defined]
        squares = sum((torch.linalg.vector_norm(g, dtype=torch.float64) ** 2 for g in grads),
                      torch.zeros((), dtype=torch.float64, device=self._device))
        norm = self.total(squares).sqrt()
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm.float())
        return float(norm)

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        # Keyed by parameter name, not by position as optimizer.state_dict() is.
        return get_optimizer_state_dict(self._model, optimizer, options=self._GATHERED)

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        # Every rank read the whole state from disk and keeps its shard of it.
        set_optimizer_state_dict(self._model, optimizer, state, options=StateDictOptions(full_state_dict=True))

    def full_weights(self) -> dict[str, torch.Tensor] | None:
        weights = cast(dict[str, torch.Tensor], get_model_state_dict(self._model, options=self._GATHERED))
        if not weights:  # a rank other than 0
            return weights
        # The gathered copies of a tied parameter (the head tied to the embeddings) are apart; tied
        # again, save_pretrained drops the alias as from the whole model, and the layout is the same.
        first: dict[int, str] = {}
        for name, param in self._model.named_parameters(remove_duplicate=False):
            if name in weights:
                weights[name] = weights[first.setdefault(id(param), name)]
        return weights


def _decoder_layers(model: Any) -> list[torch.nn.Module]:
    """The repeated blocks to shard one by one, so only one layer's weights are whole at a time."""
    decoder = model.get_decoder()
    layers = getattr(decoder, "layers", None)
    return list(layers) if isinstance(layers, torch.nn.ModuleList) else []


def backend_for(device: str | None) -> str:
    """nccl where the ranks train on GPUs, gloo on CPUs."""
    return "nccl" if device != "cpu" and torch.cuda.is_available() else "gloo"


_KEPT_UNTIL_EXIT: list[Any] = []
"""The DDP wrappers and sharded models (and through them the process group) of this process, never
freed: a runner ends by os._exit (tuneyard.child_process.exit_now). Freeing them destroys gloo's
process group, whose destructor joins gloo's I/O thread while holding the GIL, and that thread may be
waiting for the GIL to drop a Python object of the last collective: a rank was seen hanging there
after its run had completed."""


def join_process_group(ranks: Ranks, device: str | None) -> None:
    """Join the run's process group (torchrun's environment says where its store is), for the rest of
    the process (see _KEPT_UNTIL_EXIT for why it is never left). Each GPU rank is first pinned to its own
    device, cuda:LOCAL_RANK, so what the session puts on "cuda" lands there. Nothing for one process."""
    if not ranks.distributed:
        return
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(ranks.local_rank)
    dist.init_process_group(backend, init_method="env://", rank=ranks.rank, world_size=ranks.world_size,
                            timeout=COLLECTIVE_TIMEOUT)


def primary_first(ranks: Ranks, make: Callable[[], object]) -> None:
    """Rank 0 makes something kept on disk for the machine, then the others go on and read it.

    The bf16 probe: measured by each at once, on cores they share, the ranks could decide apart and
    train in two precisions. A base model built into the model cache (tiny-llama): once the process
    group exists, transformers' save_pretrained writes no config or weights on a rank other than 0, so a
    rank 1 that built it would publish a folder without them, for every later run on the cache to fail on.
    """
    if not ranks.distributed:
        return
    if ranks.primary:
        make()
    dist.barrier()


def parallel_for(session: Any, ranks: Ranks, strategy: str) -> Parallel:
    """How this rank trains with the others: `strategy` (distributed.strategy) where there are others."""
    if not ranks.distributed:
        return SingleProcess(session)
    return FullyShardedParallel(session, ranks) if strategy == "fsdp" else DataParallel(session, ranks)
