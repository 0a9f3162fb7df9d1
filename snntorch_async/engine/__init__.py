"""The asynchronous engine: how the asynchronous schedulers run a network, in explicit parts.

* :mod:`.plan` — :class:`AsyncPlan`, every decision made once per simulation (``init``):
  gradients or not, exact inference arithmetic, backend, source layout, features;
* :mod:`.pending` — :class:`PendingSet` and its :class:`SourceLayout` (input events, one group
  per hidden layer, delayed arrivals);
* :mod:`.orderings` — which pending spikes go first: :class:`RandomRace`,
  :class:`MembranePriority`, :class:`IndexOrder` (each owns its keys, draws and hooks);
* :mod:`.features` — optional features behind small interfaces: delay lines, stop rules,
  dropout, silent-gradient carriers, partial synchronisation;
* :mod:`.gradients` — the gradient rules of unlayered backprop (:class:`EventGradients`,
  :class:`LayerCarriers`, :class:`QueuedCarriers`): where silent neurons' surrogate gradients go;
* :mod:`.currents` — a delivery's synaptic current (dense op chain, sparse row gather, delays);
* :mod:`.step` — one time step in four phases (leak, input frame, forward steps, finish);
* backends, chosen once per simulation — :mod:`.torch_backend` (everything, autograd) and
  :mod:`.native` (the C kernel ``_native/async_kernel.c`` for CPU float32 inference, behind one
  ``ctypes.Structure`` ↔ C ``struct`` boundary; a backward kernel or a CUDA backend goes beside).

The user-facing scheduler classes live in :mod:`snntorch_async.schedulers`; they build the plan
in ``init`` and call :func:`run_time_step` in ``step``.
"""

from . import native
from .gradients import EventGradients, GradientRule, LayerCarriers, QueuedCarriers
from .orderings import IndexOrder, MembranePriority, Ordering, RandomRace, StepKeys
from .pending import PendingSet, SourceGroup, SourceLayout
from .plan import AsyncPlan, arrival_groups, build_plan, delay_op
from .state import AsyncState
from .step import StepWork, run_time_step, zero_currents

__all__ = [
    "native",
    "AsyncPlan",
    "AsyncState",
    "build_plan",
    "arrival_groups",
    "delay_op",
    "PendingSet",
    "SourceGroup",
    "SourceLayout",
    "Ordering",
    "StepKeys",
    "RandomRace",
    "MembranePriority",
    "IndexOrder",
    "GradientRule",
    "EventGradients",
    "LayerCarriers",
    "QueuedCarriers",
    "StepWork",
    "run_time_step",
    "zero_currents",
]
