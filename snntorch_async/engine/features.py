"""Optional features of the asynchronous engine, each owning its state behind a small interface.

The plan holds one object per enabled feature (``None`` when off); the torch backend calls them
at fixed points of a forward step. Per-step state (delay queues in flight, silent carriers,
received-event counts) lives in these objects' ``start`` results, never in loose locals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from ..graph import Layer
from .currents import received_count
from .pending import SourceGroup, SourceLayout

__all__ = [
    "DelayLines",
    "StopRules",
    "Dropout",
    "SilentCarriers",
    "CarrierState",
    "CarrierQueue",
    "SyncThreshold",
    "take",
]


def take(buf: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Split ``buf`` by ``mask`` (broadcastable): ``(the masked entries, buf with them zeroed)``."""
    zero = torch.zeros_like(buf)
    return torch.where(mask, buf, zero), torch.where(mask, zero, buf)


@dataclass(frozen=True, eq=False)
class DelayLines:
    """Synaptic delays (``DelayedLinear``): a spike sent into a delay layer at step ``t`` arrives
    at once through the delay-0 synapses and, for each ``k > 0``, joins the pending set of step
    ``t + k`` as an event of the arrival group ``(layer, k)``.

    Attributes:
        ops: Per layer its delay op (``DelayedLinearOp``) or ``None``.
        groups: The delayed arrival groups of the layout (``AsyncState.queues`` order).
    """

    ops: tuple
    groups: tuple[SourceGroup, ...]

    def due(self, pending: list[Tensor], queues: list[Tensor]) -> None:
        """Start of a time step: the events due now join their arrival group; queues advance."""
        for g in self.groups:
            q = queues[g.arrival]
            pending[g.index] = pending[g.index] + q[0]
            queues[g.arrival] = torch.cat([q[1:], torch.zeros_like(q[:1])], 0)

    def send(self, layer: int, src: Tensor, queues: list[Tensor]) -> None:
        """Spikes ``src`` ``[B, n]`` delivered into delay ``layer``: their delayed share travels."""
        for g in self.groups:
            if g.target == layer:
                q, k = queues[g.arrival], g.delay
                queues[g.arrival] = torch.cat(
                    [q[: k - 1], (q[k - 1] + src.flatten(1))[None], q[k:]], 0
                )


@dataclass(frozen=True)
class StopRules:
    """``max_forward_steps`` per time step and ``stop_on_output`` (see ``AsyncScheduler``)."""

    max_forward_steps: int | None = None
    stop_on_output: int | None = None

    def _done(self, forward_steps: Tensor, output_at: Tensor) -> Tensor:
        return (output_at >= 0) & (forward_steps >= output_at + self.stop_on_output)

    def allow(self, active: Tensor, forward_steps: Tensor, output_at: Tensor) -> Tensor:
        """The samples of ``active`` that may take another forward step."""
        if self.max_forward_steps is not None:
            active &= forward_steps < self.max_forward_steps
        if self.stop_on_output is not None:
            active &= ~self._done(forward_steps, output_at)
        return active

    def output_fired(self, new: Tensor, forward_steps: Tensor, output_at: Tensor) -> Tensor:
        """``output_at`` updated for output neurons that fired (``new`` ``[B, n]`` bool)."""
        if self.stop_on_output is None:
            return output_at
        hit = new.any(1) & (output_at < 0)
        return torch.where(hit, forward_steps, output_at)

    def stopped(self, stopped: Tensor, forward_steps: Tensor, output_at: Tensor) -> Tensor:
        """After a forward step: samples whose decision window closed."""
        if self.stop_on_output is None:
            return stopped
        return stopped | self._done(forward_steps, output_at)


@dataclass(frozen=True)
class Dropout:
    """Spike and input-event dropout (training mode only; the plan omits it otherwise)."""

    spike: float
    input: float

    @staticmethod
    def _drop(v: Tensor, p: float, gen: torch.Generator) -> Tensor:
        if p <= 0:
            return v
        keep = torch.rand(v.shape, generator=gen, device=v.device, dtype=v.dtype) >= p
        return v * keep

    def inputs(self, v: Tensor, gen: torch.Generator) -> Tensor:
        return self._drop(v, self.input, gen)

    def spikes(self, v: Tensor, gen: torch.Generator) -> Tensor:
        return self._drop(v, self.spike, gen)


class SilentCarriers:
    """``silent_gradients``: the zero outputs of evaluated, silent neurons travel with their
    layer's next delivery as gradient carriers (value 0: spikes unchanged). One step's state."""

    def __init__(self, layout: SourceLayout, like: Sequence[Tensor]) -> None:
        self.layout = layout
        self.values = [torch.zeros_like(p) for p in like]  # per pending group (hidden ones used)

    def group(self, layer: int) -> SourceGroup:
        return self.layout.hidden[layer]

    def ride_along(self, group: SourceGroup, delivered: Tensor, sel: Tensor) -> Tensor:
        """A delivery of ``group`` (a hidden layer's spikes) takes the group's carriers along."""
        if group.source_layer is None or group.lateral:  # (zeros never travel laterally)
            return delivered
        carry, self.values[group.index] = take(self.values[group.index], sel.any(1, keepdim=True))
        return delivered + carry

    def reach(self, settle: Tensor, deliveries: dict[int, Tensor], num_layers: int) -> None:
        """A settle step reaching layer ``l`` takes the silent inputs of layer ``l - 1`` along."""
        for l in range(1, num_layers):
            m = settle[:, l : l + 1]
            if bool(m.any()):
                g = self.group(l - 1).index
                carry, self.values[g] = take(self.values[g], m)
                deliveries[l] = deliveries[l] + carry if l in deliveries else carry

    def add(self, layer: int, values: Tensor) -> None:
        g = self.group(layer).index
        self.values[g] = self.values[g] + values.flatten(1)

    def into(self, layer: int) -> Tensor:
        """The carriers waiting for delivery into ``layer`` (from layer ``layer - 1``)."""
        return self.values[self.group(layer - 1).index]


class CarrierState(NamedTuple):
    """The queued zero outputs of :class:`~snntorch_async.engine.gradients.QueuedCarriers`,
    carried between time steps (part of ``AsyncState``).

    Attributes:
        values: Per hidden layer ``[B, n]`` the summed outputs waiting (value 0, with gradient).
        queued: Per hidden layer ``[B, n]`` bool: the neuron has zeros waiting.
    """

    values: tuple[Tensor, ...]
    queued: tuple[Tensor, ...]

    @staticmethod
    def empty(layout: SourceLayout, batch: int, device, dtype) -> "CarrierState":
        shapes = [(batch, g.size) for g in layout.hidden]
        return CarrierState(
            tuple(torch.zeros(s, device=device, dtype=dtype) for s in shapes),
            tuple(torch.zeros(s, device=device, dtype=torch.bool) for s in shapes),
        )


class CarrierQueue:
    """``QueuedCarriers``: each hidden neuron's evaluated silent outputs wait in its own queue
    entry and leave with the neuron's next spike (:meth:`with_spike`) or as filler of a forward
    step that selected fewer than ``F`` real spikes (:meth:`fillers`). One step's working copy of
    a :class:`CarrierState`."""

    def __init__(self, layout: SourceLayout, state: CarrierState) -> None:
        self.layout = layout
        self.values, self.queued = list(state.values), list(state.queued)

    def state(self) -> CarrierState:
        return CarrierState(tuple(self.values), tuple(self.queued))

    def add(self, layer: int, values: Tensor, silent: Tensor) -> None:
        """Neurons ``silent`` ``[B, *shape]`` of hidden ``layer`` were evaluated and stayed
        silent: their outputs ``values`` (0, with gradient) join their queue entries."""
        self.values[layer] = self.values[layer] + values.flatten(1)
        self.queued[layer] = self.queued[layer] | silent.flatten(1)

    def _take(self, layer: int, mask: Tensor) -> Tensor:
        out, self.values[layer] = take(self.values[layer], mask)
        self.queued[layer] = self.queued[layer] & ~mask
        return out

    def with_spike(self, group: SourceGroup, delivered: Tensor, sel: Tensor) -> Tensor:
        """The selected spikes ``sel`` ``[B, n]`` of ``group`` take their neurons' zeros along."""
        if group.source_layer is None or group.lateral:  # (zeros never travel laterally)
            return delivered
        return delivered + self._take(group.source_layer, sel)

    def fillers(
        self, sel: Tensor, active: Tensor, free: Tensor | None, keys: Tensor | None
    ) -> dict[int, Tensor]:
        """Queued zeros that fill the forward step's free slots: per target layer the values
        ``[B, n_source]``. ``sel`` ``[B, S]``: the real spikes selected; ``free`` ``[B]``: slots
        left (``None``: no limit); ``keys`` ``[B, S]``: the ordering's keys (``None``: all fit)."""
        cols = [torch.zeros_like(sel[:, :0])]
        hidden = {g.index for g in self.layout.hidden}
        for g in self.layout.groups:
            cols.append(
                self.queued[g.source_layer]
                if g.index in hidden
                else torch.zeros_like(sel[:, g.columns])
            )
        cand = torch.cat(cols, 1) & ~sel & active[:, None]
        if not bool(cand.any()):
            return {}
        if free is not None and keys is not None:
            ranked = keys.masked_fill(~cand, float("-inf"))
            order = torch.sort(ranked, dim=1, descending=True, stable=True).indices
            rank = torch.arange(cand.shape[1], device=cand.device).expand_as(cand)
            cand = torch.zeros_like(cand).scatter_(1, order, rank < free[:, None]) & cand
        out = {}
        for g in self.layout.hidden:
            m = cand[:, g.columns]
            if bool(m.any()):
                out[g.target] = self._take(g.source_layer, m)
        return out


class SyncThreshold:
    """Partial synchronisation: a neuron fires only if it also received more than ``threshold``
    synaptic events in the current step. One step's state: the received counts per layer."""

    def __init__(self, threshold, like: Sequence[Tensor]) -> None:
        self.threshold = threshold
        self.counts = [torch.zeros_like(a) for a in like]

    def receive(self, layer: Layer, x: Tensor) -> None:
        self.counts[layer.index] = self.counts[layer.index] + received_count(layer, x)

    def receive_counts(self, layer: int, counts: Tensor) -> None:
        """Events received some other way (lateral spikes through a recurrence)."""
        self.counts[layer] = self.counts[layer] + counts.view_as(self.counts[layer])

    def allows(self, layer: int) -> Tensor:
        st, c = self.threshold, self.counts[layer]
        thr = st[layer].detach().to(c.dtype) if isinstance(st, (list, tuple)) else float(st)
        return c > thr
