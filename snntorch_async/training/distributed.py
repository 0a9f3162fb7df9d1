"""Data-parallel training with ``torch.distributed``: one process per rank, launched by ``torchrun``.

:func:`~snntorch_async.training.fit` uses this module by itself when it runs under ``torchrun``
(``WORLD_SIZE`` > 1 in the environment) or when ``TrainConfig.distributed`` says so. A plain
training loop needs three lines::

    from snntorch_async.training import distributed as D
    group = D.join()                      # process group from torchrun's environment (None alone)
    net = D.wrap(model, group)            # DDP around simulate: net(x, scheduler=s) -> SimulationResult
    loader = D.shard(loader, group, seed=0)  # this rank's share; loader.sampler.set_epoch(e) per epoch

and then trains with ``res = net(x, scheduler=sched.reseeded(step, group.rank))``, ``loss(res.spikes,
y).backward()`` (DDP averages the gradients over ranks) and ``optimizer.step()``.

Policies, each decided here once: gloo on CPU, nccl on CUDA (one GPU per local rank); the batch
size of a loader is per rank, so ``N`` ranks with batch ``B`` train like one process with batch
``N·B``; a ``DistributedSampler`` (seeded with ``TrainConfig.seed``, re-seeded per epoch) deals
out the samples (it repeats a few to make the shares equal when ``N`` does not divide the
dataset); rank ``r`` seeds its global generators with :func:`rank_seed` and its scheduler with
``scheduler.reseeded(step, r)``; collectives time out after ``Distributed.timeout_s`` seconds
instead of hanging.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import signal
import threading
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler

from ..errors import ConfigError
from ..schedulers.base import Scheduler, detach_tree
from ..simulate import SimulationResult, simulate
from .config import Distributed, StepStats

__all__ = ["Distributed", "Group", "join", "leave", "wrap", "shard", "rank_seed", "launch"]

log = logging.getLogger(__name__)


class Group(NamedTuple):
    """This process's place in a running process group.

    Attributes:
        rank: Its rank (0 checkpoints, shows progress and returns the full history).
        world_size: Number of ranks.
        device: Where its model and batches live (``cuda:<local rank>`` with nccl, else CPU).
        owned: ``True`` if :func:`join` created the process group (then :func:`leave` ends it).
    """

    rank: int
    world_size: int
    device: torch.device
    owned: bool

    @property
    def lead(self) -> bool:
        return self.rank == 0


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s global generators (torch, Python, NumPy): ``seed`` on rank 0."""
    return seed if rank == 0 else (seed + rank * 0x9E3779B1) % 2**31


def join(setting: Distributed | None = None, device: torch.device | str = "cpu") -> Group | None:
    """Join (or create) the process group; ``None`` for a single process.

    Args:
        setting: Explicit settings, or ``None`` to read ``torchrun``'s environment.
        device: The model's device: a CUDA device selects nccl and ``cuda:<local rank>``, any
            other gloo.

    Returns:
        The :class:`Group`, or ``None`` when there is one process (nothing to join).
    """
    setting = setting if setting is not None else Distributed.from_env()
    device = torch.device(device)
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
        if setting is not None and (setting.world_size, setting.rank) != (world, rank):
            raise ConfigError(
                f"TrainConfig.distributed says rank {setting.rank} of {setting.world_size}, the "
                f"running process group has rank {rank} of {world}. Fix: drop "
                "TrainConfig.distributed (the running group is used) or make them agree."
            )
        if world == 1:
            return None
        if device.type == "cuda":
            device = torch.device("cuda", torch.cuda.current_device())
        return Group(rank, world, device, owned=False)
    if setting is None or setting.world_size == 1:
        return None
    if not dist.is_available():
        raise ConfigError(
            "This torch build has no torch.distributed; data-parallel training needs it."
        )
    local = setting.rank if setting.local_rank is None else setting.local_rank
    if device.type == "cuda":
        torch.cuda.set_device(local)
        device, backend = torch.device("cuda", local), "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(
        backend,
        init_method=setting.init_method,
        world_size=setting.world_size,
        rank=setting.rank,
        timeout=datetime.timedelta(seconds=setting.timeout_s),
    )
    log.info(
        "Rank %d of %d joined the %s process group (%s).",
        setting.rank,
        setting.world_size,
        backend,
        device,
    )
    return Group(setting.rank, setting.world_size, device, owned=True)


def leave(group: Group | None) -> None:
    """End the process group if :func:`join` created it."""
    if group is not None and group.owned and dist.is_initialized():
        dist.destroy_process_group()


class _Simulated(nn.Module):
    """``simulate`` as a module's ``forward``, so that ``DistributedDataParallel`` can wrap it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, inputs: Tensor, *, scheduler: Scheduler, initial_state: Any = None
    ) -> SimulationResult:
        res = simulate(self.model, inputs, scheduler=scheduler, initial_state=initial_state)
        # the carried state leaves the graph here (as Scheduler.carry would): DDP then looks for
        # the parameters the loss uses from the output spikes only
        return dataclasses.replace(res, final_state=detach_tree(res.final_state))


def wrap(model: nn.Module, group: Group | None) -> nn.Module:
    """``DistributedDataParallel`` around ``simulate(model, ...)``; ``model`` itself when alone.

    The wrapper is called like ``simulate`` without the model: ``net(x, scheduler=s,
    initial_state=None) -> SimulationResult``; its backward pass averages the gradients over
    the ranks. Parameters that an asynchronous step leaves unused are allowed
    (``find_unused_parameters=True``). Rank 0's weights are copied to every rank here.
    """
    if group is None:
        return model
    ids = [group.device.index] if group.device.type == "cuda" else None
    return DistributedDataParallel(
        _Simulated(model.to(group.device)), device_ids=ids, find_unused_parameters=True
    )


def simulator(net: nn.Module):
    """``(x, scheduler, initial_state) -> SimulationResult`` for a model or a :func:`wrap` result."""
    if isinstance(net, DistributedDataParallel):
        return net
    return lambda x, scheduler, initial_state=None: simulate(
        net, x, scheduler=scheduler, initial_state=initial_state
    )


def shard(data, group: Group | None, *, seed: int):
    """This rank's share of a ``DataLoader`` (a ``DistributedSampler`` of the same dataset).

    The batch size stays per rank; a shuffled loader gets a shuffled sampler seeded with
    ``seed`` (re-seeded by ``set_epoch``), an ordered one an ordered sampler. A loader that
    already has a ``DistributedSampler`` is returned as it is.
    """
    if group is None or isinstance(getattr(data, "sampler", None), DistributedSampler):
        return data
    if not isinstance(data, DataLoader) or data.batch_size is None:
        raise ConfigError(
            f"Data-parallel training shards a torch DataLoader with a fixed batch_size across the "
            f"ranks; got {type(data).__name__}"
            f"{' with a custom batch_sampler' if isinstance(data, DataLoader) else ''}. Fix: pass "
            "snntorch_async.data.make_loader(dataset, batch_size=B, shuffle=True, seed=s) "
            "(B is then the batch size of each rank)."
        )
    sampler = DistributedSampler(
        data.dataset,
        num_replicas=group.world_size,
        rank=group.rank,
        shuffle=not isinstance(data.sampler, SequentialSampler),
        seed=seed,
    )
    return DataLoader(
        data.dataset,
        batch_size=data.batch_size,
        sampler=sampler,
        collate_fn=data.collate_fn,
        drop_last=data.drop_last,
        num_workers=data.num_workers,
        pin_memory=data.pin_memory,
    )


def reduce_step(group: Group, stats: StepStats, stop: bool) -> tuple[StepStats, bool]:
    """One all-reduce per step: the step's statistics over all ranks, and whether any rank was
    asked to stop (Ctrl-C), so that every rank stops after the same step."""
    t = torch.tensor(
        [stats.loss, stats.correct, stats.samples, stats.spike_density, float(stop)],
        dtype=torch.float64,
        device=group.device,
    )
    dist.all_reduce(t)
    w = group.world_size
    merged = StepStats(float(t[0]) / w, int(t[1]), int(t[2]), float(t[3]) / w)
    return merged, bool(t[4] > 0)


class Collectives:
    """The few collectives a checkpoint needs (every rank calls each one at the same point)."""

    @staticmethod
    def gather(obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order."""
        out: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out

    @staticmethod
    def broadcast(obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @staticmethod
    def barrier() -> None:
        dist.barrier()


def launch(fn, *args: Any, nproc: int, monitor_interval: float = 0.5) -> dict[int, Any]:
    """Run ``fn(*args)`` in ``nproc`` local worker processes with torch's own launcher.

    The same as ``torchrun --standalone --nproc-per-node N`` (``torch.distributed.run``'s API:
    a c10d rendezvous on a free local port, no restarts): every worker gets ``WORLD_SIZE``,
    ``RANK`` and ``LOCAL_RANK``, so a :func:`~snntorch_async.training.fit` inside ``fn`` trains
    data-parallel. ``fn`` and ``args`` must be picklable (a module-level function).

    Returns:
        ``{rank: fn's return value}``.

    Raises:
        torch.distributed.elastic.multiprocessing.errors.ChildFailedError: A worker raised (its
            error and traceback are in the message); the launcher has ended the others.
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise ConfigError(f"nproc must be an int >= 1 (worker processes); got {nproc!r}.")
    cfg = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        run_id=f"snntorch-async-{os.getpid()}",
        max_restarts=0,
        monitor_interval=monitor_interval,
        start_method="spawn",
    )
    # the launcher installs its own SIGINT/SIGTERM/SIGHUP/SIGQUIT handlers in this process and
    # leaves them there; put the caller's back afterwards
    sigs = [
        getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, n)
    ]
    main = threading.current_thread() is threading.main_thread()
    saved = {sig: signal.getsignal(sig) for sig in sigs} if main else {}
    try:
        return elastic_launch(cfg, fn)(*args)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
