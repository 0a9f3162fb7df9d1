"""One time step of asynchronous execution, in four phases (shared by every backend).

Per sample (all vectorised over the batch) and per time step:

1. *Leak* (:func:`leak`): every layer's neuron kernel computes its start-of-step membrane
   (``Neuron.begin``). Neurons whose membrane would exceed threshold with no synaptic input at
   all (a large bias, a subtract-reset carry-over) are *candidates*. Delayed events due now join
   the pending set; the ordering draws the step's keys. A recurrent layer's spikes of the
   previous step (``RecurrentTiming.NEXT_STEP``) are part of its base: their current
   ``V(spk[t-1])`` is there from the layer's first delivery on, like the bias (candidates
   include it), and their synaptic operations count now.
2. *Input frame*: with ``prioritize_input`` the whole input frame is delivered in a first
   forward step; otherwise the input's non-zero entries join the pending set as events.
3. *Forward steps*, while something is pending (or a layer still holds unreached candidates):
   *select* up to ``F`` pending spikes per sample by the ordering's keys, *deliver* them through
   the receiving layers' ops (a layer's bias arrives with the first delivery into that layer in
   the step), *integrate and fire* (a neuron is evaluated when it received non-zero current and,
   at the first delivery into its layer, every neuron of the layer (``full_layer_evaluation``)
   or only its candidates; an evaluated neuron fires once, ``mem > thr``, its spike joining the
   pending set); when nothing is pending but a layer no spike reached holds candidates, a
   *settle* forward step reaches the lowest such layer (bias only).
4. *Finish* (:func:`finish`): the neuron kernel turns the step's accumulated current and spikes
   into the new state, with exactly snnTorch's reset formulas. Zero-reset neurons discard current
   that arrives after they fired (held at 0 until the next leak).

Phases 2 and 3 are the backend's (``plan.backend``: the torch code or the native kernel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..context import SimContext, StepOutput
from .currents import WeightRows, apply_chain
from .features import CarrierQueue, CarrierState, SilentCarriers
from .orderings import StepKeys
from .pending import PendingSet
from .state import AsyncState

if TYPE_CHECKING:  # pragma: no cover
    from .plan import AsyncPlan

__all__ = ["StepWork", "run_time_step", "leak", "finish", "zero_currents"]


@dataclass(eq=False)
class StepWork:
    """The working state of one time step (updated in place by the backend).

    Attributes:
        bases: Per layer the neuron kernel's start-of-step base (``Neuron.begin``).
        candidates: Per layer ``[B, *shape]`` bool: fires with no synaptic input at all.
        pending: Per source group (flat order of the layout) the pending values ``[B, n]``.
        priority: Per source group the recorded pre-spike membrane ``[B, n]``.
        queues: Per delayed arrival group the spikes in flight ``[k, B, n]``.
        keys: The ordering's keys of this step (``None``: all pending delivered at once).
        reached: ``[B, L]`` bool: the layer got its first delivery of the step.
        synops: ``[B, L]`` effective synaptic operations into each layer.
        forward_steps: ``[B]`` forward steps taken.
        output_at: ``[B]`` forward step of the first output spike (-1: none yet).
        weight_rows: The transposed weights for sparse deliveries (the plan's in inference, a
            fresh set per step with gradients).
        generator: The scheduler's generator (keys, dropout).
        current: Per layer the step's accumulated current ``[B, *shape]`` (set by the backend).
        spikes: Per layer the step's spike record ``[B, *shape]`` (set by the backend).
        fired: Per layer ``[B, *shape]`` bool, or ``None`` (native inference).
        evaluated: Per layer ``[B, *shape]`` bool, or ``None`` (native inference: no surrogate
            terms to add at the finish).
        silent: The layer carriers of ``LayerCarriers`` (``None``: off).
        carriers: The per-neuron queues of ``QueuedCarriers`` (``None``: off).
        spike_forward_steps: Per layer ``[B, *shape]`` int64: the forward step (1-based: the
            value of ``forward_steps`` when it fired) of each neuron's spike in this step, 0:
            none; ``None`` unless ``Record(spike_forward_steps=True)`` (set by the torch backend).
        recurrent_spikes: Per recurrent layer (``RecurrentTiming.NEXT_STEP``) the previous step's
            spikes ``[B, *shape]`` that its recurrence delivers in this step (their current is in
            the layer's base; partial synchronisation counts them as received events).
    """

    bases: list
    candidates: list[Tensor]
    pending: list[Tensor]
    priority: list[Tensor]
    queues: list[Tensor]
    keys: StepKeys | None
    reached: Tensor
    synops: Tensor
    forward_steps: Tensor
    output_at: Tensor
    weight_rows: WeightRows
    generator: torch.Generator | None = None
    current: list[Tensor] | None = None
    spikes: list[Tensor] | None = None
    fired: list[Tensor] | None = None
    evaluated: list[Tensor] | None = None
    silent: SilentCarriers | None = None
    carriers: CarrierQueue | None = None
    spike_forward_steps: list[Tensor] | None = None
    recurrent_spikes: dict[int, Tensor] | None = None


def run_time_step(
    plan: "AsyncPlan", ctx: SimContext, state: AsyncState, x: Tensor
) -> tuple[AsyncState, StepOutput]:
    """Advance one time step with input ``x`` ``[B, *features]`` (see the module docstring)."""
    work = leak(plan, ctx, state)  # 1.
    plan.backend.forward_steps(plan, ctx, work, x)  # 2. input frame, 3. forward steps
    return finish(plan, ctx, state, work)  # 4.


def leak(plan: "AsyncPlan", ctx: SimContext, state: AsyncState) -> StepWork:
    """Phase 1: the start-of-step bases and candidates, delayed events due now, the keys."""
    B, dev, dt = ctx.batch, ctx.device, ctx.dtype
    pending, priority, queues = state.pending.flat(), state.priority.flat(), list(state.queues)
    if plan.delays is not None:
        plan.delays.due(pending, queues)
    keys = None
    if plan.partial:  # else every forward step delivers all pending: no order needed
        keys = plan.ordering.start(state.generator, priority, plan.layout, B, dev, dt)
    bases, candidates = [], []
    L = ctx.graph.num_layers
    synops = torch.zeros((B, L), device=dev, dtype=dt)
    recurrent, sent = set(plan.recurrent), {}
    for l, layer in enumerate(ctx.graph.layers):
        p = ctx.params[l]
        st = state.neurons[l]
        if l in recurrent:
            if plan.immediate:  # lateral spikes travel within their step: only the bias is left
                st = st._replace(spk=torch.zeros_like(st.spk))
            else:  # the previous step's spikes arrive through the recurrence now
                synops[:, l] += layer.neuron.recurrent_synops(st.spk)
                sent[l] = st.spk
        base = layer.neuron.begin(p, st)
        with torch.no_grad():
            mem0, _ = layer.neuron.membrane(p, base, state.zero_current[l])
            candidates.append((layer.neuron.fire(p, mem0) > 0).expand((B, *layer.shape)))
        bases.append(base)
    carriers = None
    if plan.needs_grad and plan.gradients.queued:
        held = state.carriers
        if held is None:
            held = CarrierState.empty(plan.layout, B, dev, dt)
        carriers = CarrierQueue(plan.layout, held)
    return StepWork(
        bases=bases,
        candidates=candidates,
        pending=pending,
        priority=priority,
        queues=queues,
        keys=keys,
        reached=torch.zeros((B, L), device=dev, dtype=torch.bool),
        synops=synops,
        forward_steps=torch.zeros(B, device=dev, dtype=torch.long),
        output_at=torch.full((B,), -1, device=dev, dtype=torch.long),
        weight_rows=plan.weight_rows if plan.weight_rows is not None else WeightRows(),
        generator=state.generator,
        carriers=carriers,
        recurrent_spikes=sent,
    )


def _bview(mask: Tensor, like: Tensor) -> Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1)))


def finish(
    plan: "AsyncPlan", ctx: SimContext, state: AsyncState, work: StepWork
) -> tuple[AsyncState, StepOutput]:
    """Phase 4: unreached layers get their bias, the neuron kernels turn the step's current and
    spikes into the new states (snnTorch's reset formulas)."""
    layers, params = ctx.graph.layers, ctx.params
    L, B, dt = len(layers), ctx.batch, ctx.dtype
    acc, spikes, bases, silent = work.current, work.spikes, work.bases, work.silent
    new_states, counts = [], torch.zeros((B, L), device=ctx.device, dtype=dt)
    per_evaluation = work.carriers is not None and plan.gradients.output_per_evaluation
    recurrent = set(plan.recurrent)
    for l, layer in enumerate(layers):
        missing = ~work.reached[:, l]
        if bool(missing.any()):
            acc[l] = acc[l] + _bview(missing, acc[l]).to(dt) * state.zero_current[l]
        mem, syn = layer.neuron.membrane(params[l], bases[l], acc[l])
        quiet = work.evaluated[l] & ~work.fired[l] if work.evaluated is not None else None
        if per_evaluation and l == L - 1:  # (its terms were added at every evaluation)
            quiet = None
        if quiet is not None and bool(quiet.any()):  # value 0: the surrogate gradient, as LayerSync
            spikes[l] = spikes[l] + layer.neuron.fire(params[l], mem) * quiet
        if silent is not None and bool(missing.any()):
            # unreached layers are evaluated too (they cannot fire: no candidates), so that the
            # surrogate gradient flows as in LayerSync; zero outputs pass on as carriers
            if l > 0:
                src = silent.into(l).view(B, *layer.in_shape)
                extra = apply_chain(layer, src, False, {}, None) * _bview(missing, acc[l]).to(dt)
                acc[l] = acc[l] + extra
                mem, syn = layer.neuron.membrane(params[l], bases[l], acc[l])
            unreached = layer.neuron.fire(params[l], mem) * _bview(missing, mem).to(dt)
            spikes[l] = spikes[l] + unreached
            if l < L - 1:
                silent.add(l, unreached)
        new = layer.neuron.finish(params[l], bases[l], mem, syn, spikes[l])
        if l in recurrent and not plan.gradients.recurrent_carriers and work.fired is not None:
            # what the recurrence sends next step: only fired spikes carry gradient there
            new = new._replace(spk=spikes[l] * work.fired[l].to(dt))
        new_states.append(new)
        counts[:, l] = spikes[l].detach().flatten(1).sum(1)
    mems = tuple(s.mem for s in new_states) if ctx.record.membranes else None
    order = tuple(work.spike_forward_steps) if ctx.record.spike_forward_steps else None
    out = StepOutput(tuple(spikes), mems, counts, work.synops, work.forward_steps, order)
    new_state = state._replace(
        neurons=tuple(new_states),
        pending=PendingSet.from_flat(plan.layout, work.pending),
        priority=PendingSet.from_flat(plan.layout, work.priority),
        queues=tuple(work.queues),
        carriers=work.carriers.state() if work.carriers is not None else None,
    )
    return new_state, out


def zero_currents(ctx: SimContext) -> tuple[Tensor, ...]:
    """Each layer's current for an all-zero input, ``[1, *shape]`` (the bias; differentiable)."""
    out = []
    for layer in ctx.graph.layers:
        bias = layer.bias_current()
        out.append(
            bias
            if bias is not None
            else torch.zeros((1, *layer.shape), device=ctx.device, dtype=ctx.dtype)
        )
    return tuple(out)
