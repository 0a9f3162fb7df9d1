"""Where a training run stands (:class:`LoopPosition`) and how it is saved and resumed
(:class:`Checkpointer`).

A checkpoint holds the model and optimizer state, every random number generator, the position
``(epoch, batch, step)``, the history, the seed, the scheduler and a fingerprint of the
architecture (see :mod:`snntorch_async.checkpoint` for the file format: atomic writes,
``weights_only`` loads). Under data-parallel training only the writing rank (rank 0) writes; the
random number generators of every rank are stored (``"rng"`` is rank 0's, ``"rng_ranks"`` all of
them), so each rank resumes its own.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from ..checkpoint import (
    FORMAT,
    CheckpointError,
    architecture,
    check_architecture,
    fingerprint,
    load_checkpoint,
    save_atomic,
)
from ..errors import ConfigError
from ..schedulers.base import Scheduler
from .config import History

__all__ = ["LoopPosition", "Resumed", "Checkpointer"]

log = logging.getLogger(__name__)


class LoopPosition(NamedTuple):
    """Where the training loop stands.

    Attributes:
        epoch: Completed epochs.
        batch: Batches done in the epoch in progress (0 at an epoch boundary).
        step: Optimizer steps done since the start of the run.
    """

    epoch: int = 0
    batch: int = 0
    step: int = 0


class Resumed(NamedTuple):
    """What a checkpoint restores: the position, the history and this rank's RNG state there."""

    position: LoopPosition
    history: History
    rng: dict[str, Any]


class Checkpointer:
    """Saves and restores one run's checkpoints (does nothing when ``path`` is ``None``).

    Args:
        path: The checkpoint file, or ``None`` for no checkpoints.
        model: The (unwrapped) model whose state is saved.
        optimizer: Its optimizer.
        scheduler: The training scheduler (its ``repr`` is stored and compared on resume).
        seed: ``TrainConfig.seed`` (a resume with another seed is refused).
        rank: This process's rank; only rank 0 writes.
        world_size: Number of training processes (a resume with another number is refused).
        collectives: The process group's :class:`~.distributed.Collectives` (every rank
            calls :meth:`save` and :meth:`resume` together), or ``None`` in a single process.
        metadata: ``TrainConfig.metadata``, stored in every checkpoint under ``"metadata"``.
    """

    def __init__(
        self,
        path: str | os.PathLike | None,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Scheduler,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        collectives: Any = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.model, self.optimizer, self.scheduler, self.seed = model, optimizer, scheduler, seed
        self.rank, self.world_size, self.comm = rank, world_size, collectives
        self.metadata = metadata
        self.arch = architecture(model)
        #: The last checkpoint written or resumed from (``None``: none yet).
        self.last_saved: str | None = None

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def save(self, pos: LoopPosition, history: History, rng: dict[str, Any]) -> None:
        """Write the checkpoint of position ``pos`` (``rng``: this rank's generators there).

        Under data-parallel training every rank must call this at the same position: it gathers
        the generators of every rank, rank 0 writes, and all return once the file is in place.
        """
        if self.path is None:
            return
        rngs = self.comm.gather(rng) if self.comm is not None else [rng]
        if self.rank == 0:
            ck = {
                "format": FORMAT,
                "fingerprint": fingerprint(self.arch),
                "architecture": self.arch,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "rng": rngs[0],
                "epoch": pos.epoch,
                "batch": pos.batch,
                "step": pos.step,
                "seed": self.seed,
                "scheduler": repr(self.scheduler),
                "history": history.to_dict(),
                "metadata": self.metadata,
            }
            if self.world_size > 1:
                ck["world_size"], ck["rng_ranks"] = self.world_size, rngs
            save_atomic(ck, self.path)
            log.debug(
                "Checkpoint saved to %s (epoch %d, batch %d).", self.path, pos.epoch, pos.batch
            )
        if self.comm is not None:
            self.comm.barrier()
        self.last_saved = str(self.path)

    def resume(self, device: torch.device) -> Resumed | None:
        """Load the checkpoint into the model and optimizer; ``None`` if there is none yet.

        Under data-parallel training rank 0 reads the file and sends it to the other ranks (so
        they need not see the same file system, and all agree whether there is one).

        Raises:
            ConfigError: No checkpoint path is configured.
            CheckpointError: The checkpoint is for another architecture, seed or world size.
        """
        if self.path is None:
            raise ConfigError("fit(resume=True) needs TrainConfig.checkpoint_path.")
        path = self.path
        ck = load_checkpoint(path, map_location="cpu") if self.rank == 0 and path.exists() else None
        # (load_state_dict below moves the tensors to the model's device)
        if self.comm is not None:
            ck = self.comm.broadcast(ck)
        if ck is None:
            if self.rank == 0:
                log.warning("resume=True but %s does not exist: starting a fresh run.", path)
            return None
        check_architecture(ck, self.model, path)
        if ck["seed"] != self.seed:
            raise CheckpointError(
                f"The checkpoint {str(path)!r} was trained with seed {ck['seed']}, the config "
                f"has seed {self.seed}; resuming would not reproduce the run. Fix: "
                f"TrainConfig(seed={ck['seed']}, ...) or resume=False."
            )
        saved_world = ck.get("world_size", 1)
        if saved_world != self.world_size:
            raise CheckpointError(
                f"The checkpoint {str(path)!r} was written by {saved_world} training process(es), "
                f"this run has {self.world_size}; the data shards and random generators would "
                f"differ, so the run would not continue exactly. Fix: resume with "
                f"{saved_world} process(es) (e.g. torchrun --nproc-per-node {saved_world}), or use "
                "another checkpoint_path."
            )
        if ck["scheduler"] != repr(self.scheduler):
            log.warning(
                "Resuming with %r; the checkpoint was trained with %s.",
                self.scheduler,
                ck["scheduler"],
            )
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        pos = LoopPosition(ck["epoch"], ck["batch"], ck["step"])
        rng = ck["rng_ranks"][self.rank] if self.world_size > 1 else ck["rng"]
        self.last_saved = str(path)
        log.info("Resuming from %s at epoch %d, batch %d.", path, pos.epoch, pos.batch)
        return Resumed(pos, History.from_dict(ck["history"]), rng)
