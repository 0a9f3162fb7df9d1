"""The scheduler protocol: how one time step of a network is executed.

``simulate`` owns the only loop over time steps; a scheduler decides what happens inside one
step (layer by layer, pipelined one hop per step, or asynchronous forward steps of F spikes).
Every scheduler is a small frozen keyword-only dataclass carrying its own settings and
implementing :meth:`Scheduler.init` and :meth:`Scheduler.step`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..errors import ConfigError
from ..graph import NetworkGraph
from ..neurons import NeuronParams


@dataclass(frozen=True, kw_only=True)
class Record:
    """What ``simulate`` records besides the output spikes and the engine's counters.

    Attributes:
        membranes: Record every layer's membrane potential after each time step.
        layer_spikes: Record every layer's spikes (not only the output layer's).
    """

    membranes: bool = False
    layer_spikes: bool = False


@dataclass(frozen=True, eq=False)
class SimContext:
    """Everything that stays fixed during one simulation, built once by ``simulate``.

    Attributes:
        graph: The network graph.
        params: Each layer's neuron parameters, evaluated once (gradients flow through them).
        record: The recording options.
        batch: Batch size B.
        steps: Number of time steps T.
        device: Device of the model and inputs.
        dtype: Floating dtype of the model and inputs.
        cache: Per-simulation scratch space of the schedulers (e.g. transposed weights, valid
            while the simulation runs: parameters cannot change during one).
    """

    graph: NetworkGraph
    params: tuple[NeuronParams, ...]
    record: Record
    batch: int
    steps: int
    device: torch.device
    dtype: torch.dtype
    cache: dict = dataclasses.field(default_factory=dict, repr=False)


class StepOutput(NamedTuple):
    """What a scheduler reports for one time step.

    Attributes:
        spikes: Each layer's spikes of this step, ``[B, *shape]`` (differentiable).
        membranes: Each layer's membrane after the step, or ``None`` unless recorded.
        spike_counts: Spikes emitted per layer, ``[B, L]``.
        synops: Effective synaptic operations per receiving layer, ``[B, L]``.
        forward_steps: Forward steps (rounds of spike delivery) used per sample, ``[B]``.
    """

    spikes: tuple[Tensor, ...]
    membranes: tuple[Tensor, ...] | None
    spike_counts: Tensor
    synops: Tensor
    forward_steps: Tensor


class Scheduler:
    """Base class of all schedulers (subclasses are frozen keyword-only dataclasses)."""

    def __new__(cls, *args, **kwargs):
        if args:  # dataclass's own TypeError would not say that the settings are keyword-only
            names = [f.name for f in dataclasses.fields(cls) if f.init] if dataclasses.is_dataclass(cls) else []
            call = ", ".join(f"{n}={a!r}" for n, a in zip(names, args)) if len(args) <= len(names) else "..."
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

    def carry(self, ctx: SimContext, state: Any) -> Any:
        """Prepare ``state`` (a ``final_state`` of an earlier simulation) to start a new one.

        Cuts its autograd history (truncated BPTT: the earlier graph may already have been
        back-propagated) and rebuilds anything derived from parameters. Default: detach every
        tensor of the (nested) state.
        """
        return detach_tree(state)


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
            tree, **{f.name: detach_tree(getattr(tree, f.name)) for f in dataclasses.fields(tree) if f.init}
        )
    return tree
