"""The plan of one asynchronous simulation: every decision made once, in ``init``.

:func:`build_plan` reads the scheduler's settings and the network graph once per simulation and
decides: whether gradients are recorded, whether the exact inference arithmetic is used, which
backend runs the forward steps, where each pending source lives, and which optional features are
on. The engine then only follows the plan (it never reads the scheduler during a step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
from torch import Tensor

from ..graph import Layer, NetworkGraph
from ..ops import LinearOp
from ..context import SimContext
from ..recurrent import RecurrentTiming, is_recurrent
from .currents import WeightRows
from .features import DelayLines, Dropout, StopRules
from .gradients import GradientRule, resolve_gradient_rule
from . import native, native_grad
from .orderings import Ordering
from .pending import SourceLayout
from .torch_backend import TORCH

__all__ = [
    "AsyncPlan",
    "AsyncSettings",
    "Backend",
    "build_plan",
    "choose_backend",
    "delay_op",
    "arrival_groups",
]


class AsyncSettings(Protocol):
    """What the plan reads from an asynchronous scheduler (see ``AsyncScheduler``)."""

    forward_group_size: int | None
    prioritize_input: bool
    max_forward_steps: int | None
    stop_on_output: int | None
    sync_threshold: object
    spike_dropout: float
    input_dropout: float
    full_layer_evaluation: bool
    silent_gradients: bool
    gradient_rule: GradientRule | None
    recurrent_timing: RecurrentTiming

    def ordering(self) -> Ordering: ...


class Backend(Protocol):
    """Runs a time step's input frame and forward steps (``engine.step.StepWork`` in, updated in
    place). Implementations: ``torch_backend.TORCH`` (everything, autograd) and
    ``native.NativeBackend`` (CPU float32 inference). A backward kernel or a CUDA backend plugs
    in here: a new class, and one more branch in :func:`choose_backend`."""

    name: str

    def forward_steps(self, plan: "AsyncPlan", ctx: SimContext, work, x: Tensor) -> None: ...


def delay_op(layer: Layer):
    """The layer's delay op (``DelayedLinearOp``) if it has synapses with delay > 0 and is the
    layer's only weighted op (behind Flatten / Identity / eval Dropout); else ``None``."""
    lin = layer.lone_linear
    if lin is None or not lin.stateful:
        return None
    lin.check_range()  # the buffer may have been edited since construction
    return lin if any(k > 0 for k in lin.delay_values) else None


def arrival_groups(graph: NetworkGraph) -> list[tuple[int, int]]:
    """The delayed arrival groups ``(layer, k)``: for every delay layer, one per delay ``k > 0``."""
    out = []
    for l, layer in enumerate(graph.layers):
        op = delay_op(layer)
        if op is not None:
            out += [(l, k) for k in op.delay_values if k > 0]
    return out


@dataclass(frozen=True, eq=False)
class AsyncPlan:
    """Everything fixed during one asynchronous simulation.

    Attributes:
        layout: Where each pending source lives.
        ordering: Which pending spikes go first.
        forward_group_size: ``F`` (``None``: all pending at once).
        full_layer_evaluation: See ``AsyncScheduler``.
        needs_grad: Whether the simulation records gradients.
        exact: Every delivery after the input frame gathers weight rows in source order (CPU
            inference with partial groups: the arithmetic the native kernel reproduces).
        backend: What runs the input frame and forward steps (``backend.name``: ``"torch"`` or
            ``"native"``).
        lone_linear: Per layer its lone non-delay ``nn.Linear`` op (sparse deliveries) or ``None``.
        weight_rows: The transposed weights for the whole simulation (inference), or ``None``:
            a fresh set per time step (gradients).
        stops: The stop rules.
        delays: The delay lines (``None``: no synaptic delays > 0).
        dropout: Spike/input dropout (``None``: off or not training).
        gradients: The gradient rule (:mod:`~snntorch_async.engine.gradients`), in effect only
            when ``needs_grad``.
        sync_threshold: The partial-synchronisation threshold (``None``: off).
        recurrent: The indices of the recurrent layers (``snn.RLeaky`` / ``snn.RSynaptic``).
        immediate: Recurrent spikes are lateral events of their own step
            (``RecurrentTiming.IMMEDIATE``: the layout has lateral groups); else they arrive
            with their layer's first delivery of the next step (``NEXT_STEP``).
    """

    layout: SourceLayout
    ordering: Ordering
    forward_group_size: int | None
    full_layer_evaluation: bool
    needs_grad: bool
    exact: bool
    backend: Backend
    lone_linear: tuple[LinearOp | None, ...]
    weight_rows: WeightRows | None
    stops: StopRules
    delays: DelayLines | None
    dropout: Dropout | None
    gradients: GradientRule
    sync_threshold: object = None
    recurrent: tuple[int, ...] = ()
    immediate: bool = False

    @property
    def partial(self) -> bool:
        """Whether a forward step may deliver only part of the pending set (keys needed)."""
        F = self.forward_group_size
        return F is not None and F < self.layout.total


def choose_backend(ctx: SimContext, exact: bool, training: bool, refusal: str | None) -> Backend:
    """The backend of one simulation. ``refusal``: why the native kernel cannot run it
    (``native.refusal``; ``None``: it can). Inference runs the kernel when it can and uses the
    exact arithmetic (``exact``: CPU, partial groups, no gradient); training (``training``:
    gradients are recorded) runs the native training backend when the kernel can, else the torch
    backend with one log line that says why (``native_grad.fall_back``). Everything else, or
    without a built kernel: the torch backend. ``SimulationResult.backend`` says which ran;
    docs/async.md, "The native kernel", lists the conditions."""
    if refusal is None and (training or exact):
        lib = native.library()  # builds on first use; warns once and gives None without a compiler
        if lib is not None:
            return native_grad.NativeTraining(lib) if training else native.NativeBackend(lib)
        refusal = f"the native kernel is unavailable ({native.library_origin().reason})"
    if training:
        native_grad.fall_back(refusal)
    return TORCH


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def build_plan(sched: AsyncSettings, ctx: SimContext, inputs: Tensor) -> AsyncPlan:
    """Decide once, for the simulation of ``inputs`` ``[T, B, *features]``, how it runs."""
    graph = ctx.graph
    arrivals = arrival_groups(graph)
    recurrent = tuple(l for l, layer in enumerate(graph.layers) if is_recurrent(layer))
    timing = RecurrentTiming.coerce(sched.recurrent_timing)
    immediate = bool(recurrent) and timing is RecurrentTiming.IMMEDIATE
    layout = SourceLayout.build(
        None if sched.prioritize_input else _numel(graph.input_shape),
        [layer.numel for layer in graph.layers],
        [(l, k, _numel(graph.layers[l].in_shape)) for l, k in arrivals],
        recurrent if immediate else (),
    )
    needs_grad = torch.is_grad_enabled() and (
        inputs.requires_grad or any(p.requires_grad for p in graph.model.parameters())
    )
    F = sched.forward_group_size
    exact = (
        not needs_grad and ctx.device.type == "cpu" and F is not None and F < layout.regular_total
    )
    ops = tuple(delay_op(layer) for layer in graph.layers)
    training = graph.model.training
    dropping = training and (sched.spike_dropout > 0 or sched.input_dropout > 0)
    ordering = sched.ordering()
    gradients = resolve_gradient_rule(sched)
    refusal = native.refusal(
        ctx, ordering, delays=bool(arrivals), lateral=immediate, dropout=dropping
    )
    return AsyncPlan(
        layout=layout,
        ordering=ordering,
        forward_group_size=F,
        full_layer_evaluation=bool(sched.full_layer_evaluation),
        needs_grad=needs_grad,
        exact=exact,
        backend=choose_backend(ctx, exact, needs_grad, refusal),
        lone_linear=tuple(
            None if (lin := layer.lone_linear) is None or lin.stateful else lin
            for layer in graph.layers
        ),
        weight_rows=None if needs_grad else WeightRows(),
        stops=StopRules(sched.max_forward_steps, sched.stop_on_output),
        delays=DelayLines(ops, layout.arrivals) if arrivals else None,
        dropout=Dropout(float(sched.spike_dropout), float(sched.input_dropout))
        if dropping
        else None,
        gradients=gradients,
        sync_threshold=sched.sync_threshold,
        recurrent=recurrent,
        immediate=immediate,
    )
