"""Pipelined execution: Loihi/Lava timing, one time step per synaptic hop.

In Lava every ``Dense`` sends, at step ``s``, what it accumulated at step ``s - 1``, and a
``RingBuffer`` source sends the input ``x[s]`` at step ``s``; so the input of step ``t`` reaches
layer 0 at step ``t + 1`` and layer ``l`` at step ``t + l + 1`` (a synaptic delay ``d`` adds ``d``
steps: Lava ``DelayDense``). :class:`Pipelined` runs the user's model with this timing::

    src_0[s] = x[s - 1]                      (zero at s = 0)
    src_l[s] = spk_{l-1}[s - 1]              (zero at s = 0)
    I_l[s]   = ops_l(src_l[s]) + b_l · [s ≥ l + 1]

By default (``bias_timing=BiasTiming.SYNAPTIC``) the layer bias ``b_l`` is a synaptic current
that starts with the *wavefront* (step ``l + 1``, when the first input arrives), so a layer is at
rest until then, and every layer runs exactly what :class:`~snntorch_async.LayerSync` runs,
``l + 1`` steps later. With ``bias_timing=BiasTiming.LAVA`` the bias is added to ``v`` from step 0
in every layer, as Lava's ``LIF(bias_mant=b)`` and lava-dl's netx do
(``v ← v·(1 - dv) + u + b``; see :mod:`snntorch_async.bias_timing`). The output lags the input by
``L`` steps (:meth:`Pipelined.output_lag`); ``lava_bridge.align_pipeline`` removes it.

Neurons with Lava's reset (zero reset, ``reset_delay=False``) are updated with Lava LIF's own
float expressions, in this order, so that Lava's float simulation (``Loihi2SimCfg``,
floating point) is matched spike for spike (with ``float64=True``, bit for bit)::

    du = 1 - α (Synaptic) or 1 (Leaky),   dv = 1 - β
    u ← u·(1 - du) + I                    (Leaky: u = I)
    v ← v·(1 - dv) + u
    spk = H(v - vth);  v ← v - spk·v      (v ← 0 where it spiked; u is not reset)

A recurrent layer (``snn.RLeaky``/``snn.RSynaptic``) receives its own spikes of the previous step
through its recurrent connection, one step per hop like every ``Dense`` (Lava's
``LIF.s_out → Dense(Wr) → LIF.a_in``)::

    I_l[s] += Wr_l · spk_l[s - 1]
    (Lava rule) the recurrent Linear's bias joins b_l: it takes b_l's timing (SYNAPTIC: into the
                current from step l + 1, the layer resting until then; LAVA: into v from step 0)

Other reset rules (subtract, none, ``reset_delay=True``), which Lava cannot run exactly, use the
model's own snnTorch update with the pipelined timing (``lava_bridge.convert`` refuses them unless
``approximate_reset=True``, and ``lava_bridge.verify`` then measures the mismatch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..bias_timing import BiasTiming
from ..errors import ConfigError
from ..graph import Layer, NetworkGraph
from ..neurons import NeuronParams
from ..recurrent import is_recurrent
from .base import Scheduler, SimContext, StepOutput, detach_tree

__all__ = ["Pipelined", "PipelinedState", "PipelinedLayerState", "LIFState"]


class LIFState(NamedTuple):
    """State of a layer updated with Lava LIF's rule; ``u`` (current), ``v`` (voltage) ``[B, *shape]``."""

    u: Tensor
    v: Tensor


class PipelinedLayerState(NamedTuple):
    """One layer's pipelined state.

    Attributes:
        neuron: :class:`LIFState` (Lava rule) or the neuron's own snnTorch state.
        ops: One state per op (``None`` for stateless ops; a delay line for ``DelayedLinear``).
        spikes: This layer's spikes of the previous step ``[B, *shape]`` (sent this step).
    """

    neuron: Any
    ops: tuple
    spikes: Tensor


class PipelinedState(NamedTuple):
    """Pipelined state: the previous input ``[B, *features]``, the layers, the step count, and
    each layer's bias current ``[1, *shape]`` (or ``None``), computed once per simulation."""

    source: Tensor
    layers: tuple[PipelinedLayerState, ...]
    step: int
    biases: tuple = ()


class _LIFParams(NamedTuple):
    decay_u: Tensor  # 1 - du, computed as Lava does
    decay_v: Tensor  # 1 - dv
    vth: Tensor


def lava_rule(layer: Layer) -> bool:
    """True if Lava's LIF reproduces this layer's reset rule exactly (zero, ``reset_delay=False``)."""
    return layer.exact_on_lava


def _lif_params(layer: Layer, p: NeuronParams, dtype: torch.dtype) -> _LIFParams:
    one = torch.ones((), dtype=dtype, device=p.beta.device)
    dv = 1 - p.beta.to(dtype)
    du = one if p.alpha is None else 1 - p.alpha.to(dtype)
    return _LIFParams(decay_u=1 - du, decay_v=1 - dv, vth=p.threshold.to(dtype))


def _apply_op(op, x: Tensor, st, dtype: torch.dtype):
    """An op's bias-free delivery of ``x`` in ``dtype`` (weights cast, not the module)."""
    if op.stateful:
        return op.deliver_stateful(x, st)
    return op.apply(x, op.module.weight.to(dtype) if op.weighted else None), None


@dataclass(frozen=True, kw_only=True)
class Pipelined(Scheduler):
    """Lava/Loihi timing: one time step per synaptic hop (see the module docstring).

    Attributes:
        float64: Compute currents and membranes in float64 (as Lava's float simulation does),
            whatever the model's dtype; spikes are returned in the model's dtype. Needed for
            bit-exact agreement with Lava; leave False for training speed.
        bias_timing: When layer biases flow (:class:`~snntorch_async.BiasTiming`, or its token
            ``"synaptic"``/``"lava"``): ``SYNAPTIC`` (default) reproduces LayerSync shifted by
            the lag; ``LAVA`` reproduces Lava's LIF bias and netx files.
    """

    float64: bool = False
    bias_timing: BiasTiming = BiasTiming.SYNAPTIC

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "bias_timing", BiasTiming.coerce(self.bias_timing, "Pipelined(bias_timing=...)")
        )

    def output_lag(self, graph: NetworkGraph) -> int:
        """The pipeline shift: the output of input step ``t`` appears at step ``t + L``."""
        return graph.num_layers

    def check(self, graph: NetworkGraph) -> None:
        if not isinstance(self.float64, bool):
            raise ConfigError(f"Pipelined(float64=...) expects a bool; got {self.float64!r}.")

    def _dtype(self, ctx: SimContext) -> torch.dtype:
        return torch.float64 if self.float64 else ctx.dtype

    def init(self, ctx: SimContext, inputs: Tensor) -> PipelinedState:
        dtype = self._dtype(ctx)
        B, dev = ctx.batch, ctx.device
        layers = []
        for layer in ctx.graph.layers:
            if lava_rule(layer):
                z = torch.zeros((B, *layer.shape), device=dev, dtype=dtype)
                neuron = LIFState(u=z, v=z.clone())
            else:
                neuron = layer.neuron.init_state(B, dev, dtype)
            ops = tuple(op.init_state(B, dev, dtype) if op.stateful else None for op in layer.ops)
            spk = torch.zeros((B, *layer.shape), device=dev, dtype=ctx.dtype)
            layers.append(PipelinedLayerState(neuron, ops, spk))
        source = torch.zeros_like(inputs[0], dtype=dtype)
        return PipelinedState(source=source, layers=tuple(layers), step=0, biases=self._biases(ctx))

    def _biases(self, ctx: SimContext) -> tuple:
        """Each layer's constant current ``ops(0)`` with biases, in the compute dtype; a Lava-rule
        recurrent layer's recurrent bias is added to it (the bias of one LIF, as in the bridge)."""
        dtype, out = self._dtype(ctx), []
        for layer in ctx.graph.layers:
            b = layer.bias_current(dtype, ctx.device)
            rb = layer.neuron.recurrent_bias(dtype, ctx.device) if is_recurrent(layer) else None
            if rb is not None and lava_rule(layer):
                b = rb if b is None else b + rb
            out.append(b)
        return tuple(out)

    def carry(self, ctx: SimContext, state: PipelinedState, inputs: Tensor) -> PipelinedState:
        """Detach a carried state and rebuild the bias currents (they derive from parameters)."""
        return detach_tree(state)._replace(biases=self._biases(ctx))

    def step(self, ctx: SimContext, state: PipelinedState, x: Tensor, t: int):
        dtype = self._dtype(ctx)
        L = ctx.graph.num_layers
        counts = torch.zeros((ctx.batch, L), device=ctx.device, dtype=ctx.dtype)
        synops = torch.zeros_like(counts)
        new_layers, spikes, mems = [], [], []
        src = state.source
        for i, layer in enumerate(ctx.graph.layers):
            ls = state.layers[i]
            cur, new_ops = src, []
            for j, op in enumerate(layer.ops):
                if op.weighted:
                    with torch.no_grad():
                        synops[:, i] += op.synops(cur.to(ctx.dtype))
                cur, st = _apply_op(op, cur, ls.ops[j], dtype)
                new_ops.append(st)
            v_bias = None
            if state.step >= self.bias_timing.first_step(i):  # the bias flows from now on
                b = state.biases[i]
                if b is not None and self.bias_timing.into_voltage and lava_rule(layer):
                    v_bias = b  # Lava's LIF bias: into v
                elif b is not None:
                    cur = cur + b
            if is_recurrent(layer):  # the recurrent hop sends last step's spikes now
                with torch.no_grad():
                    synops[:, i] += layer.neuron.recurrent_synops(ls.spikes)
            if lava_rule(layer) and is_recurrent(layer):  # else neuron.step adds it
                # one-step hop; its bias is part of state.biases[i] (see _biases)
                cur = cur + layer.neuron.recurrent_current(ls.spikes.to(dtype), bias=False)
            if is_recurrent(layer) and state.step < self.bias_timing.first_step(i):
                # before the wavefront a recurrent layer rests (its recurrent bias must not flow)
                spk, neuron = torch.zeros_like(ls.spikes, dtype=dtype), ls.neuron
            else:
                spk, neuron = self._neuron_step(layer, ctx.params[i], ls.neuron, cur, dtype, v_bias)
            spk = spk.to(ctx.dtype)
            with torch.no_grad():
                counts[:, i] = spk.detach().flatten(1).sum(1)
            new_layers.append(PipelinedLayerState(neuron, tuple(new_ops), spk))
            spikes.append(spk)
            mems.append(neuron.v if isinstance(neuron, LIFState) else neuron.mem)
            src = ls.spikes.to(dtype)  # what this layer sent this step (emitted last step)
        new_state = PipelinedState(
            source=x.to(dtype), layers=tuple(new_layers), step=state.step + 1, biases=state.biases
        )
        steps = torch.full((ctx.batch,), L, device=ctx.device, dtype=torch.long)
        order = None
        if ctx.record.spike_forward_steps:  # every layer updates at once: no order within a step
            order = tuple((s.detach() != 0).long() for s in spikes)
        out = StepOutput(
            tuple(spikes),
            tuple(mems) if ctx.record.membranes else None,
            counts,
            synops,
            steps,
            order,
        )
        return new_state, out

    @staticmethod
    def _neuron_step(
        layer: Layer, p: NeuronParams, st, current: Tensor, dtype: torch.dtype, v_bias=None
    ):
        if lava_rule(layer):
            lp = _lif_params(layer, p, dtype)
            u = st.u * lp.decay_u + current
            v = st.v * lp.decay_v + u
            if v_bias is not None:
                v = v + v_bias
            spk = layer.neuron.spike_fn(v - lp.vth)
            return spk, LIFState(u=u, v=v - spk * v)
        pd = NeuronParams(
            beta=p.beta.to(dtype),
            threshold=p.threshold.to(dtype),
            alpha=None if p.alpha is None else p.alpha.to(dtype),
        )
        return layer.neuron.step(pd, st, current)
