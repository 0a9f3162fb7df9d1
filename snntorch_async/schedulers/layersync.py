"""Layer-synchronous execution: snnTorch's own semantics."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Scheduler, SimContext, StepOutput


@dataclass(frozen=True, kw_only=True)
class LayerSync(Scheduler):
    """Layer-synchronized execution, identical to snnTorch's own time loop.

    At every time step each layer receives the complete output of the layer below, computed in
    the same step, and all its neurons update together (``mem ← β·mem + I``, fire, reset), exactly
    as calling the user's ``nn.Sequential`` once per time step does. Spikes are equal to
    snnTorch's spike for spike and gradients agree to rounding.
    """

    def init(self, ctx: SimContext, inputs: Tensor):
        return tuple(
            layer.neuron.init_state(ctx.batch, ctx.device, ctx.dtype) for layer in ctx.graph.layers
        )

    def step(self, ctx: SimContext, state, x: Tensor, t: int):
        layers = ctx.graph.layers
        spikes, new_state = [], []
        counts = torch.zeros((ctx.batch, len(layers)), device=ctx.device, dtype=ctx.dtype)
        synops = torch.zeros_like(counts)
        for i, layer in enumerate(layers):
            for op in layer.ops:
                if op.weighted:
                    with torch.no_grad():
                        synops[:, i] += op.synops(x)
                x = op.forward(x)
            x, st = layer.neuron.step(ctx.params[i], state[i], x)
            with torch.no_grad():
                counts[:, i] = x.detach().flatten(1).sum(1)
            spikes.append(x)
            new_state.append(st)
        mems = tuple(s.mem for s in new_state) if ctx.record.membranes else None
        steps = torch.full((ctx.batch,), len(layers), device=ctx.device, dtype=torch.long)
        return tuple(new_state), StepOutput(tuple(spikes), mems, counts, synops, steps)
