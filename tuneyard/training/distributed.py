"""Data-parallel training across the ranks torchrun started: the process group, the model wrapped in
DistributedDataParallel, and the few collectives a recipe needs at step boundaries.

A run in one process gets `SingleProcess`, the null version of the same interface, so the training
loop has no `if distributed:` in it. Every collective has a timeout (`COLLECTIVE_TIMEOUT`): a rank
that died leaves the others failing within it, not hanging (gloo usually notices the closed socket at
once; the timeout is for a rank that hangs alive).
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.distributed as dist
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

    def total(self, value: torch.Tensor) -> torch.Tensor:
        """`value` summed over the ranks (a copy; `value` is left alone)."""

    def any_of(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag true on any rank: every rank takes the same decision at a step boundary."""

    def gather(self, obj: Any) -> list[Any]:
        """`obj` of every rank, in rank order."""

    def barrier(self) -> None:
        """Wait until every rank got here."""


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

    def total(self, value: torch.Tensor) -> torch.Tensor:
        return value.clone()

    def any_of(self, *flags: bool) -> tuple[bool, ...]:
        return flags

    def gather(self, obj: Any) -> list[Any]:
        return [obj]

    def barrier(self) -> None:
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


class DataParallel:
    """This rank's side of a DDP run: the session's model wrapped, and the step-boundary collectives."""

    def __init__(self, session: Any, ranks: Ranks) -> None:
        self.ranks = ranks
        # "cuda" alone is the current device, which join_process_group() pinned to this rank
        device_ids = [torch.cuda.current_device()] if session.device.type == "cuda" else None
        # Every rank built the same model from the same seed; DDP still broadcasts rank 0's state at
        # construction, so a difference could not go unnoticed as two models trained apart.
        self._ddp = DistributedDataParallel(_LossOf(session), device_ids=device_ids)
        self._ddp.register_comm_hook(None, _sum_hook)
        self._device = session.device
        _KEPT_UNTIL_EXIT.append(self._ddp)

    def loss_sum(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._ddp(batch)

    def sync_gradients(self, now: bool) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext() if now else self._ddp.no_sync()

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


def backend_for(device: str | None) -> str:
    """nccl where the ranks train on GPUs, gloo on CPUs."""
    return "nccl" if device != "cpu" and torch.cuda.is_available() else "gloo"


_KEPT_UNTIL_EXIT: list[Any] = []
"""The DDP wrappers (and through them the process group) of this process, never freed: a runner ends by
os._exit (tuneyard.child_process.exit_now). Freeing them destroys gloo's process group, whose destructor
joins gloo's I/O thread while holding the GIL, and that thread may be waiting for the GIL to drop a
Python object of the last collective: a rank was seen hanging there after its run had completed."""


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


def parallel_for(session: Any, ranks: Ranks) -> Parallel:
    return DataParallel(session, ranks) if ranks.distributed else SingleProcess(session)
