"""The scheduler protocol: how one time step of a network is executed.

``simulate`` owns the only loop over time steps; a scheduler decides what happens inside one
step (layer by layer, pipelined one hop per step, or asynchronous forward steps of F spikes).
Every scheduler is a small frozen keyword-only dataclass carrying its own settings and
implementing :meth:`Scheduler.init` and :meth:`Scheduler.step`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from ..context import Record, SimContext, StepOutput
from ..errors import ConfigError
from ..graph import NetworkGraph

__all__ = ["Scheduler", "Record", "SimContext", "StepOutput", "detach_tree"]


class Scheduler:
    """Base class of all schedulers (subclasses are frozen keyword-only dataclasses)."""

    def __new__(cls, *args, **kwargs):
        if args:  # dataclass's own TypeError would not say that the settings are keyword-only
            names = (
                [f.name for f in dataclasses.fields(cls) if f.init]
                if dataclasses.is_dataclass(cls)
                else []
            )
            call = (
                ", ".join(f"{n}={a!r}" for n, a in zip(names, args))
                if len(args) <= len(names)
                else "..."
            )
            raise ConfigError(
                f"{cls.__name__} takes its settings as keywords only; got {len(args)} positional "
                f"argument(s) {', '.join(map(repr, args))}. Fix: e.g. {cls.__name__}({call})."
            )
        return super().__new__(cls)

    #: Time steps by which the output lags the input (1 per synaptic hop for ``Pipelined``).
    def output_lag(self, graph: NetworkGraph) -> int:
        return 0

    def check(self, graph: NetworkGraph) -> None:
        """Raise a clear error if this scheduler cannot run ``graph`` (default: it can)."""

    def init(self, ctx: SimContext, inputs: Tensor) -> Any:
        """Create the scheduler's state for a simulation of ``inputs`` ``[T, B, *features]``."""
        raise NotImplementedError

    def step(self, ctx: SimContext, state: Any, x: Tensor, t: int) -> tuple[Any, StepOutput]:
        """Advance one time step with input ``x`` ``[B, *features]``; return the new state."""
        raise NotImplementedError

    def reseeded(self, step: int, rank: int = 0) -> "Scheduler":
        """The scheduler to train optimizer step ``step`` on process ``rank`` with.

        Deterministic schedulers return themselves (default). A scheduler with its own random
        generator returns a copy seeded with :func:`step_seed` ``(seed, step, rank)``, so that
        spike orders and dropout masks differ from batch to batch and from rank to rank (the
        generator restarts at every ``simulate`` call) yet are reproducible, resumes included.
        """
        return self

    def carry(self, ctx: SimContext, state: Any, inputs: Tensor) -> Any:
        """Prepare ``state`` (a ``final_state`` of an earlier simulation) to start a new one,
        of ``inputs`` ``[T, B, *features]``.

        Cuts its autograd history (truncated BPTT: the earlier graph may already have been
        back-propagated) and rebuilds anything derived from parameters. Default: detach every
        tensor of the (nested) state.
        """
        return detach_tree(state)

    def backend(self, state: Any) -> str:
        """Which backend ran the simulation whose state is ``state`` (``"torch"`` unless the
        scheduler has another, e.g. the asynchronous engine's ``"native"`` kernel)."""
        return "torch"


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of optimizer step ``step`` on process ``rank`` of a run seeded with ``seed``.

    ``(seed * 1_000_003 + step) mod 2**31`` on rank 0 (so a single process trains with the seeds
    it always had); other ranks add ``rank`` times the 32-bit golden-ratio constant, which keeps
    them apart from every step of rank 0 for any realistic number of steps.
    """
    return (seed * 1_000_003 + step + rank * 0x9E3779B1) % 2**31


def detach_tree(tree: Any) -> Any:
    """Detach every tensor inside nested tuples, NamedTuples, lists, dicts and dataclasses."""
    if torch.is_tensor(tree):
        return tree.detach()
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(detach_tree(t) for t in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(detach_tree(t) for t in tree)
    if isinstance(tree, dict):
        return {k: detach_tree(v) for k, v in tree.items()}
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return dataclasses.replace(
            tree,
            **{
                f.name: detach_tree(getattr(tree, f.name))
                for f in dataclasses.fields(tree)
                if f.init
            },
        )
    return tree
