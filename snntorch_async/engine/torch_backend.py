"""The torch backend: a time step's input frame and forward steps as torch operations.

Runs every network the asynchronous schedulers accept, records gradients, and hosts every
optional feature (delays, dropout, partial synchronisation, silent-gradient carriers). The loop
of :meth:`TorchBackend.forward_steps` is *select → deliver → integrate and fire → settle*
(``engine/step.py`` describes the rules).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..neurons import ZERO
from ..context import SimContext
from .currents import apply_chain, delayed_current, layer_current
from .features import SilentCarriers, SyncThreshold, take

if TYPE_CHECKING:  # pragma: no cover
    from .plan import AsyncPlan
    from .step import StepWork

__all__ = ["TorchBackend", "TORCH"]


def _bview(mask: Tensor, like: Tensor) -> Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1)))


class TorchBackend:
    """Forward steps in torch (see the module docstring)."""

    name = "torch"

    def forward_steps(
        self, plan: "AsyncPlan", ctx: SimContext, work: "StepWork", x: Tensor
    ) -> None:
        layers, B, dev, dt = ctx.graph.layers, ctx.batch, ctx.device, ctx.dtype
        L, layout, gen = len(layers), plan.layout, work.generator
        work.current = [torch.zeros((B, *layer.shape), device=dev, dtype=dt) for layer in layers]
        work.fired = [
            torch.zeros((B, *layer.shape), device=dev, dtype=torch.bool) for layer in layers
        ]
        work.evaluated = [torch.zeros_like(f) for f in work.fired]
        work.spikes = [torch.zeros((B, *layer.shape), device=dev, dtype=dt) for layer in layers]
        if ctx.record.spike_forward_steps:
            work.spike_forward_steps = [
                torch.zeros(f.shape, device=dev, dtype=torch.long) for f in work.fired
            ]
        if plan.needs_grad and plan.gradients.layer_carriers:
            work.silent = SilentCarriers(layout, work.pending)
        step = _ForwardStep(plan, ctx, work)
        dropout = plan.dropout

        # 2. input frame
        if layout.input is None:
            frame = x.flatten(1) if dropout is None else dropout.inputs(x.flatten(1), gen)
            reach = torch.zeros((B, L), device=dev, dtype=torch.bool)
            reach[:, 0] = True  # the whole frame arrives, even an all-zero one: layer 0 is reached
            due = []  # delayed input events due now are part of this step's input frame
            for g in layout.arrivals if plan.delays is not None else ():
                if g.target == 0:
                    arrived = work.pending[g.index]
                    due.append(
                        (g.delay, arrived if dropout is None else dropout.inputs(arrived, gen))
                    )
                    work.pending[g.index] = torch.zeros_like(arrived)
            step.deliver(
                {0: frame},
                reach,
                torch.ones(B, device=dev, dtype=torch.bool),
                False,
                {0: due},
                exact_ok=False,
            )
        else:
            work.pending[layout.input.index] = work.pending[layout.input.index] + x.flatten(1)

        # 3. forward steps
        candidate_in = [c.flatten(1).any(1) for c in work.candidates]
        any_candidates = bool(torch.stack(candidate_in).any())
        stopped = torch.zeros(B, device=dev, dtype=torch.bool)
        no_source = torch.zeros((B, 0), device=dev, dtype=torch.bool)  # (single-layer networks)
        F = plan.forward_group_size
        while True:
            pmask = torch.cat([p.detach() != 0 for p in work.pending] + [no_source], 1)
            has_pending = pmask.any(1)
            if any_candidates:
                unreached = torch.stack(
                    [candidate_in[l] & ~work.reached[:, l] for l in range(L)], 1
                )
                active = ~stopped & (has_pending | unreached.any(1))
            else:  # (common case: no neuron can fire without input, nothing to settle)
                active = ~stopped & has_pending
            active = plan.stops.allow(active, work.forward_steps, work.output_at)
            if not bool(active.any()):
                break
            # select: the F highest keys; ties: lower source index first (as the native kernel)
            pmask &= active[:, None]
            partial = not (F is None or F >= int(pmask.sum(1).max()))
            if not partial:
                sel = pmask
            else:
                ranked = work.keys.keys.masked_fill(~pmask, float("-inf"))
                idx = torch.sort(ranked, dim=1, descending=True, stable=True).indices[:, :F]
                sel = torch.zeros_like(pmask).scatter_(1, idx, True) & pmask
            if work.keys is not None:
                plan.ordering.selected(work.keys, sel)
            deliveries: dict[int, Tensor] = {}
            arrivals: dict[int, list[tuple[int, Tensor]]] = {}
            laterals: dict[int, Tensor] = {}
            for g in layout.groups:
                s = sel[:, g.columns]
                if not bool(s.any()):
                    continue
                d, work.pending[g.index] = take(work.pending[g.index], s)
                if dropout is not None:
                    d = dropout.inputs(d, gen) if g.is_input else dropout.spikes(d, gen)
                if work.silent is not None:
                    d = work.silent.ride_along(g, d, s)
                if work.carriers is not None:
                    d = work.carriers.with_spike(g, d, s)
                if g.lateral:
                    laterals[g.target] = d
                elif g.delay:
                    arrivals.setdefault(g.target, []).append((g.delay, d))
                else:
                    deliveries[g.target] = d
            # settle: samples with nothing pending reach their lowest unreached candidate layer
            settle = None
            idle = active & ~has_pending
            if any_candidates and bool(idle.any()):
                lowest = torch.argmax(unreached.long(), 1)
                settle = torch.zeros((B, L), device=dev, dtype=torch.bool)
                settle[torch.arange(B, device=dev), lowest] = True
                settle &= idle[:, None]
                if work.silent is not None:  # the settled layer's silent inputs travel along
                    work.silent.reach(settle, deliveries, L)
            if work.carriers is not None:  # queued zeros fill the free slots
                free = None if F is None else F - sel.sum(1)
                keys = work.keys.keys if work.keys is not None else None
                step.carry(work.carriers.fillers(sel, active, free, keys))
            # LayerCarriers' zeros ride in the delivered vectors: a sparse gather of the non-zero
            # entries would drop them (and their gradient), so those deliveries take the module call
            sparse = partial and work.silent is None
            step.deliver(deliveries, settle, active, sparse, arrivals, laterals=laterals)
            stopped = plan.stops.stopped(stopped, work.forward_steps, work.output_at)


class _ForwardStep:
    """Deliver, integrate and fire: one forward step's effect on every receiving layer."""

    def __init__(self, plan: "AsyncPlan", ctx: SimContext, work: "StepWork") -> None:
        self.plan, self.ctx, self.work = plan, ctx, work
        self.pools: list[dict] = [{} for _ in ctx.graph.layers]
        self.sync = (
            SyncThreshold(plan.sync_threshold, work.current)
            if plan.sync_threshold is not None
            else None
        )
        if self.sync is not None:  # recurrent spikes of the last step: received with the layer's
            for l, spk in (work.recurrent_spikes or {}).items():  # first delivery (checked after)
                neuron = ctx.graph.layers[l].neuron
                self.sync.receive_counts(l, neuron.recurrent_received(spk))

    def deliver(
        self,
        deliveries: dict[int, Tensor],
        settle: Tensor | None,
        active: Tensor,
        sparse: bool,
        arrived: dict[int, list[tuple[int, Tensor]]],
        exact_ok: bool = True,
        laterals: dict[int, Tensor] | None = None,
    ) -> None:
        """Deliver ``deliveries[l]`` (source values ``[B, n]``), the delayed ``arrived[l]`` and
        the lateral ``laterals[l]`` (a recurrent layer's own spikes, through its recurrent
        weights) into layer ``l``, and the settle reach ``settle`` ``[B, L]``; integrate; fire."""
        plan, work, B = self.plan, self.work, self.ctx.batch
        work.forward_steps.add_(active.long())
        laterals = laterals or {}
        for l, layer in enumerate(self.ctx.graph.layers):
            src = deliveries.get(l)
            late = arrived.get(l, [])
            lat = laterals.get(l)
            has = (src.detach() != 0).any(1) if src is not None else None
            for xk in [xk for _, xk in late] + ([lat] if lat is not None else []):
                hk = (xk.detach() != 0).any(1)
                has = hk if has is None else has | hk
            go = settle[:, l] if settle is not None else None
            if has is None and go is None:
                continue
            touched = has if go is None else (go if has is None else has | go)
            if go is not None and not bool(touched.any()):  # (a delivery touches someone)
                continue
            first = touched & ~work.reached[:, l]
            if src is None:
                xin = torch.zeros(
                    (B, *layer.in_shape), device=self.ctx.device, dtype=self.ctx.dtype
                )
            else:
                xin = src.view(B, *layer.in_shape)
            delay_op = plan.delays.ops[l] if plan.delays is not None else None
            if delay_op is not None:
                cur = delayed_current(
                    delay_op, src, late, first, work.synops[:, l], work.current[l]
                )
                if src is not None:  # the delayed synapses' share travels: arrives k steps later
                    plan.delays.send(l, src, work.queues)
            else:
                cur = layer_current(
                    layer,
                    plan.lone_linear[l],
                    xin,
                    first,
                    self.pools[l],
                    work.synops[:, l],
                    work.weight_rows,
                    sparse,
                    plan.exact and exact_ok,
                )
            if lat is not None:  # lateral spikes: through the recurrent weights, no bias
                lat = lat.view(B, *layer.shape)
                cur = cur + layer.neuron.lateral_current(lat)
                work.synops[:, l] += layer.neuron.recurrent_synops(lat)
            work.reached[:, l] |= first
            self.integrate_and_fire(l, layer, cur, first, xin if src is not None else None, lat)

    def carry(self, fillers: dict[int, Tensor]) -> None:
        """Queued zeros ``fillers[l]`` (source values ``[B, n]``, all 0) into layer ``l``: their
        current ``W · 0`` joins the layer's current (gradient only: no neuron is evaluated, no
        bias arrives, the layer is not reached). A delay layer takes them through its
        delay-0 synapses."""
        work, B = self.work, self.ctx.batch
        for l, src in fillers.items():
            layer = self.ctx.graph.layers[l]
            delay_op = self.plan.delays.ops[l] if self.plan.delays is not None else None
            if delay_op is not None:
                if 0 not in delay_op.delay_values:
                    continue
                cur = delay_op.deliver_at(src.flatten(1), 0)
            else:
                cur = apply_chain(
                    layer, src.view(B, *layer.in_shape), False, dict(self.pools[l]), None
                )
            if layer.neuron.reset == ZERO:
                cur = torch.where(work.fired[l], torch.zeros_like(cur), cur)
            work.current[l] = work.current[l] + cur

    def integrate_and_fire(
        self,
        l: int,
        layer,
        cur: Tensor,
        first: Tensor,
        delivered: Tensor | None,
        lateral: Tensor | None = None,
    ) -> None:
        plan, work, params = self.plan, self.work, self.ctx.params[l]
        evaluated = cur.detach() != 0
        if plan.full_layer_evaluation:
            evaluated = evaluated | _bview(first, evaluated)
        else:
            evaluated = evaluated | (_bview(first, evaluated) & work.candidates[l])
        if layer.neuron.reset == ZERO:
            cur = torch.where(work.fired[l], torch.zeros_like(cur), cur)
        work.current[l] = work.current[l] + cur
        can = evaluated & ~work.fired[l]
        mem, _ = layer.neuron.membrane(params, work.bases[l], work.current[l])
        spk_all = layer.neuron.fire(params, mem)
        if self.sync is not None:
            if delivered is not None:
                self.sync.receive(layer, delivered)
            if lateral is not None:
                self.sync.receive_counts(l, layer.neuron.recurrent_received(lateral))
            can = can & self.sync.allows(l)
        spk = spk_all * can
        new = spk.detach() > 0
        work.fired[l] = work.fired[l] | new
        if work.spike_forward_steps is not None:  # fires at most once per step: no overwrite
            now = _bview(work.forward_steps, new).expand_as(new)
            work.spike_forward_steps[l] = torch.where(new, now, work.spike_forward_steps[l])
        # the record holds fired spikes here; a silent neuron gets one surrogate term per step
        # (at its end-of-step membrane, see finish), however often it was evaluated
        work.spikes[l] = work.spikes[l] + spk * new
        work.evaluated[l] = work.evaluated[l] | can
        newf = new.flatten(1)
        lat = plan.layout.lateral(l) if plan.immediate else None
        if lat is not None:  # the spikes head back into their own layer within this step
            self._pend(lat, newf, mem, spk * new)
        if l == len(work.spikes) - 1:  # output spikes have no forward targets
            if work.carriers is not None and plan.gradients.output_per_evaluation:
                work.spikes[l] = work.spikes[l] + spk_all * (can & ~new)
            work.output_at = plan.stops.output_fired(
                new.flatten(1), work.forward_steps, work.output_at
            )
            return
        group = plan.layout.hidden[l]
        if work.silent is not None:
            work.silent.add(l, spk_all * (can & ~new))
        if work.carriers is not None:
            work.carriers.add(l, spk_all * (can & ~new), can & ~new)
        # only fired spikes become pending (a silent neuron's zero output must not ride along
        # with a later spike of the same neuron: that would double its gradient)
        self._pend(group, newf, mem, spk * new)

    def _pend(self, group, new: Tensor, mem: Tensor, spikes: Tensor) -> None:
        """Fired ``spikes`` (``new``: ``[B, n]`` bool) join ``group``'s pending values; the
        ordering gives them their keys (``mem``: the membrane they fired at)."""
        work = self.work
        self.plan.ordering.fired(
            work.keys, group, new, mem.detach().flatten(1), work.pending[group.index], work.priority
        )
        work.pending[group.index] = work.pending[group.index] + spikes.flatten(1)


TORCH = TorchBackend()
