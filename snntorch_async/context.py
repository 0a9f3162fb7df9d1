"""What a scheduler and the engine see of one simulation: the fixed context and one step's output.

Kept apart from the schedulers so that both the scheduler classes and the asynchronous engine
depend on it (and not on each other).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from .graph import NetworkGraph
from .neurons import NeuronParams

__all__ = ["Record", "SimContext", "StepOutput"]


@dataclass(frozen=True, kw_only=True)
class Record:
    """What ``simulate`` records besides the output spikes and the engine's counters.

    Attributes:
        membranes: Record every layer's membrane potential after each time step.
        layer_spikes: Record every layer's spikes (not only the output layer's).
        spike_forward_steps: Record, per layer and neuron, the forward step (1-based within its
            time step) in which it fired, 0 where it did not: the order of spikes within a time
            step. A spike of step ``t`` at forward step ``k`` of the sample's ``S`` forward steps
            (``SimulationResult.forward_steps[t]``) happened in the share ``k / S`` of the step.
            The asynchronous engine records it in its torch backend only (the native kernel does
            not, so it is not used when this is on; the spikes are the same).
    """

    membranes: bool = False
    layer_spikes: bool = False
    spike_forward_steps: bool = False


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
    """

    graph: NetworkGraph
    params: tuple[NeuronParams, ...]
    record: Record
    batch: int
    steps: int
    device: torch.device
    dtype: torch.dtype


class StepOutput(NamedTuple):
    """What a scheduler reports for one time step.

    Attributes:
        spikes: Each layer's spikes of this step, ``[B, *shape]`` (differentiable).
        membranes: Each layer's membrane after the step, or ``None`` unless recorded.
        spike_counts: Spikes emitted per layer, ``[B, L]``.
        synops: Effective synaptic operations per receiving layer, ``[B, L]``.
        forward_steps: Forward steps (rounds of spike delivery) used per sample, ``[B]``.
        spike_forward_steps: Each layer's forward step of each spike ``[B, *shape]`` (int64,
            1..``forward_steps``; 0: did not fire), or ``None`` unless recorded.
    """

    spikes: tuple[Tensor, ...]
    membranes: tuple[Tensor, ...] | None
    spike_counts: Tensor
    synops: Tensor
    forward_steps: Tensor
    spike_forward_steps: tuple[Tensor, ...] | None = None
