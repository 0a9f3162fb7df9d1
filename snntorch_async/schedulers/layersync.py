"""Layer-synchronous execution: snnTorch's own semantics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..recurrent import is_recurrent
from .base import Scheduler, SimContext, StepOutput


class LayerOpState(NamedTuple):
    """LayerSync state of a layer with stateful ops: ``neuron`` state and one state per op
    (``None`` for stateless ops)."""

    neuron: Any
    ops: tuple


def _with_op_states(layer, neuron_state, ctx: SimContext):
    if not any(op.stateful for op in layer.ops):
        return neuron_state
    ops = tuple(
        op.init_state(ctx.batch, ctx.device, ctx.dtype) if op.stateful else None for op in layer.ops
    )
    return LayerOpState(neuron_state, ops)


@dataclass(frozen=True, kw_only=True)
class LayerSync(Scheduler):
    """Layer-synchronized execution, identical to snnTorch's own time loop.

    At every time step each layer receives the complete output of the layer below, computed in
    the same step, and all its neurons update together (``mem ← β·mem + I``, fire, reset), exactly
    as calling the user's ``nn.Sequential`` once per time step does. Spikes are equal to
    snnTorch's spike for spike and gradients agree to rounding. A recurrent layer
    (``snn.RLeaky``/``snn.RSynaptic``) adds ``V(spk[t-1])``; its synaptic operations (the
    previous step's spikes times their recurrent fan-out) count in the layer's ``synops``.
    """

    def init(self, ctx: SimContext, inputs: Tensor):
        # Per layer: the neuron state, or (neuron state, op states) when the layer has a
        # stateful op (e.g. DelayedLinear's delay line; see snntorch_async.delays).
        return tuple(
            _with_op_states(layer, layer.neuron.init_state(ctx.batch, ctx.device, ctx.dtype), ctx)
            for layer in ctx.graph.layers
        )

    def step(self, ctx: SimContext, state, x: Tensor, t: int):
        layers = ctx.graph.layers
        spikes, new_state = [], []
        weighted_inputs = []  # (layer index, op, op input): counted after the loop
        recurrent_inputs = []  # (layer index, spikes of the previous step)
        for i, layer in enumerate(layers):
            op_states = state[i].ops if isinstance(state[i], LayerOpState) else None
            new_ops = []
            for j, op in enumerate(layer.ops):
                if op.weighted:
                    weighted_inputs.append((i, op, x))
                if op_states is not None and op.stateful:
                    x, op_st = op.forward_stateful(x, op_states[j])
                    new_ops.append(op_st)
                else:
                    x = op.forward(x)
                    new_ops.append(None)
            neuron_state = state[i].neuron if op_states is not None else state[i]
            if is_recurrent(layer):  # the previous step's spikes, sent through the recurrence
                recurrent_inputs.append((i, neuron_state.spk))
            x, st = layer.neuron.step(ctx.params[i], neuron_state, x)
            if op_states is not None:
                st = LayerOpState(st, tuple(new_ops))
            spikes.append(x)
            new_state.append(st)
        # The engine's counters, outside autograd, in one block per step (cheaper than per op).
        with torch.no_grad():
            counts = torch.stack([s.flatten(1).sum(1) for s in spikes], 1).to(ctx.dtype)
            per_layer: list = [None] * len(layers)
            for i, op, xin in weighted_inputs:
                n = op.synops(xin)
                per_layer[i] = n if per_layer[i] is None else per_layer[i] + n
            for i, spk in recurrent_inputs:
                per_layer[i] = per_layer[i] + layers[i].neuron.recurrent_synops(spk.to(ctx.dtype))
            synops = torch.stack(
                [counts.new_zeros(ctx.batch) if n is None else n for n in per_layer], 1
            ).to(ctx.dtype)
        mems = (
            tuple((s.neuron if isinstance(s, LayerOpState) else s).mem for s in new_state)
            if ctx.record.membranes
            else None
        )
        steps = torch.full((ctx.batch,), len(layers), device=ctx.device, dtype=torch.long)
        order = None
        if ctx.record.spike_forward_steps:  # layer i is computed in the (i + 1)-th of L rounds
            order = tuple((s.detach() != 0).long() * (i + 1) for i, s in enumerate(spikes))
        out = StepOutput(tuple(spikes), mems, counts, synops, steps, order)
        return tuple(new_state), out
