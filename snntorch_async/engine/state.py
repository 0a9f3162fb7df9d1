"""The state the asynchronous schedulers carry between time steps."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from .pending import PendingSet

if TYPE_CHECKING:  # pragma: no cover
    from .features import CarrierState
    from .plan import AsyncPlan

__all__ = ["AsyncState"]


class AsyncState(NamedTuple):
    """State carried between time steps by the asynchronous schedulers.

    Attributes:
        neurons: Each layer's neuron state (``LeakyState`` / ``SynapticState``).
        pending: The pending set (:class:`~snntorch_async.engine.pending.PendingSet`: input
            events, one group per hidden layer, one per delayed arrival group); iterating it
            yields the groups ``[B, n]`` in that order.
        priority: Per source group the recorded pre-spike membrane (membrane priority), a
            ``PendingSet`` of the same layout.
        generator: The scheduler's own random generator.
        zero_current: Per layer the current of an all-zero input (its bias), ``[1, *shape]``.
        queues: Per delayed arrival group ``(layer, k)`` the spikes in flight, ``[k, B, n_src]``:
            row 0 arrives at the next time step.
        plan: The simulation's :class:`~snntorch_async.engine.plan.AsyncPlan` (rebuilt when a
            state is carried into a new simulation).
        carriers: The queued zero outputs of the ``QueuedCarriers`` gradient rule
            (:class:`~snntorch_async.engine.features.CarrierState`), ``None`` when it is off.
    """

    neurons: tuple
    pending: PendingSet
    priority: PendingSet
    generator: torch.Generator | None
    zero_current: tuple[Tensor, ...]
    queues: tuple[Tensor, ...] = ()
    plan: "AsyncPlan | None" = None
    carriers: "CarrierState | None" = None
