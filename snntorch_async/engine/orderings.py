"""Orderings: which pending spikes a forward step delivers first.

Every pending source has a *key* (higher goes first; equal keys: lower source index first, as
``torch.sort(descending=True, stable=True)`` and the native kernel). An :class:`Ordering` owns
how keys are made: the draws at the start of a time step (:meth:`Ordering.start`), what happens
when a group is selected (:meth:`Ordering.selected`) and when a neuron's spike becomes pending
(:meth:`Ordering.fired`). The engine calls only these hooks, so a new ordering is a new
subclass (and a scheduler whose :meth:`ordering` returns it) without any edit of the engine.
``kernel_mode`` names the ordering to the native kernel (``None``: the torch backend runs it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .pending import SourceGroup, SourceLayout

__all__ = ["Ordering", "StepKeys", "RandomRace", "MembranePriority", "IndexOrder"]


@dataclass(eq=False)
class StepKeys:
    """The keys of one time step (mutable during the step).

    Attributes:
        keys: ``[B, S]`` key per source (higher goes first).
        noise: ``[B, S]`` the step's draws (``None`` for orderings without randomness).
        clock: ``[B]`` the race clock (random race only), else ``None``.
    """

    keys: Tensor
    noise: Tensor | None = None
    clock: Tensor | None = None


class Ordering:
    """Base class of the orderings (see the module docstring)."""

    #: The native kernel's code for this ordering (``None``: not in the kernel).
    kernel_mode: int | None = None
    #: Whether spikes record their pre-spike membrane in ``AsyncState.priority``.
    records_priority = False

    def start(
        self,
        gen: torch.Generator,
        priority: list[Tensor],
        layout: SourceLayout,
        batch: int,
        device,
        dtype,
    ) -> StepKeys:
        """The keys of the sources pending at the start of a time step and the step's draws
        (called only when a forward step may deliver part of the pending set)."""
        raise NotImplementedError

    def selected(self, keys: StepKeys, sel: Tensor) -> None:
        """``sel`` ``[B, S]`` was delivered (default: nothing to do)."""

    def fired(
        self,
        keys: StepKeys | None,
        group: SourceGroup,
        new: Tensor,
        mem: Tensor,
        pending: Tensor,
        priority: list[Tensor],
    ) -> None:
        """Neurons of ``group``'s layer fired: ``new`` ``[B, n]`` (bool), their membrane ``mem``
        ``[B, n]`` (detached), the group's pending values before the new spikes join. Updates
        ``keys`` (``None`` when everything pending is delivered at once) and ``priority``."""


class RandomRace(Ordering):
    """Uniformly random order by an exponential race (docs/async.md): each step draws one
    ``Exp(1)`` per source and sample; a spike that becomes pending gets the key
    ``-(clock + Exp(1))``; the clock moves to the last delivered key."""

    kernel_mode = 0

    def start(self, gen, priority, layout, batch, device, dtype) -> StepKeys:
        u = torch.rand((batch, layout.total), generator=gen, device=device, dtype=dtype)
        noise = u.neg_().add_(1).log_().neg_()  # -log(1 - U): Exp(1), finite (U < 1)
        return StepKeys(
            keys=-noise, noise=noise, clock=torch.zeros(batch, device=device, dtype=dtype)
        )

    def selected(self, keys, sel) -> None:
        kmin = keys.keys.masked_fill(~sel, float("inf")).amin(1)
        keys.clock = torch.where(sel.any(1), -kmin, keys.clock)

    def fired(self, keys, group, new, mem, pending, priority) -> None:
        if keys is None:
            return
        cols = group.columns
        fresh = new & (pending.detach() == 0)  # an already pending source keeps its key
        keys.keys[:, cols] = torch.where(
            fresh, -(keys.clock[:, None] + keys.noise[:, cols]), keys.keys[:, cols]
        )


@dataclass(frozen=True)
class MembranePriority(Ordering):
    """The source neuron's pre-spike membrane plus a uniform ``jitter`` tie-breaker drawn once per
    time step; input events (when not prioritised) before every neuron spike.

    Attributes:
        jitter: Size of the uniform random tie-breaking jitter.
    """

    jitter: float = 1e-6
    kernel_mode = 1
    records_priority = True

    def start(self, gen, priority, layout, batch, device, dtype) -> StepKeys:
        noise = self.jitter * torch.rand(
            (batch, layout.total), generator=gen, device=device, dtype=dtype
        )
        keys = torch.cat([p.detach() for p in priority] + [noise[:, :0]], 1) + noise
        if layout.input is not None:  # non-prioritised input events go before every spike
            keys[:, layout.input.columns] = float("inf")
        return StepKeys(keys=keys, noise=noise)

    def fired(self, keys, group, new, mem, pending, priority) -> None:
        priority[group.index] = torch.where(new, mem, priority[group.index])
        if keys is not None:
            cols = group.columns
            keys.keys[:, cols] = torch.where(new, mem + keys.noise[:, cols], keys.keys[:, cols])


class IndexOrder(Ordering):
    """Layer order (inputs, layer 0, 1, ..., delayed arrivals), then neuron index."""

    kernel_mode = 2

    def start(self, gen, priority, layout, batch, device, dtype) -> StepKeys:
        keys = (-torch.arange(layout.total, device=device).to(dtype)).expand(batch, -1).clone()
        return StepKeys(keys=keys)
