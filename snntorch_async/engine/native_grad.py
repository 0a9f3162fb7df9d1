"""The native training backend: the forward steps in C, and their backward pass in C.

One time step's forward steps (everything between the leak and the finish of
``engine/step.py``) are one :class:`torch.autograd.Function`, :class:`NativeStep`:

* **forward** runs the kernel's loop (``sa_async_steps``, the same loop as inference, plus the
  queue flags of ``QueuedCarriers`` and the riding zeros of ``LayerCarriers``) and saves only
  what the step started from (membrane terms, pending values, keys, draws, queue flags);
* **backward** runs the same loop again onto a tape (``sa_tape_record``: every pending spike taken
  at a selection, every delivery, filler and bias, and per forward step and layer ``U - θ`` of
  every evaluated neuron), takes the surrogate derivative ``σ'(U - θ)`` of every recorded value
  (computed by the kernel for the surrogates of :data:`KERNEL_SURROGATES`, else by the neuron's
  own ``spike_grad``, called once per layer), and walks the tape in reverse
  (``sa_tape_backward``).

The reverse walk keeps, per neuron, the adjoint ``G`` of its accumulated current (the step's
``∂L/∂acc``, plus ``σ'·∂L/∂s`` of every later evaluation), and per pending or queued value the
adjoint of its slot: an evaluation ``s = Θ(U - θ)`` adds ``∂L/∂s · σ'`` to ``G`` and to the
adjoint of ``U - θ``, where ``∂L/∂s`` is the adjoint of the slot ``s`` joined (the pending slot
for a spike, the neuron's queue entry or riding zero for a silent hidden neuron, the spike record
for a spike and a silent output neuron under ``output_per_evaluation``); a delivery of value
``v`` from source ``j`` into neurons ``n`` adds ``v · G[n]`` to ``∂L/∂W[n, j]`` and hands
``Σₙ W[n, j] · G[n]`` to the slot it was taken from; zero-reset neurons that had already fired
take no current (their ``G`` is skipped). The result is the gradient of exactly the computation
the torch backend records (``tests/test_native_grad.py``: same spikes, every gradient within
1e-5, on random models over every setting the kernel runs).

Memory: the tape lives only during one time step's backward (reused from step to step); what
stays saved between the forward and backward passes is ``O(B·(N + S))`` per time step. The tape
is recorded again instead of kept, so a training step runs the forward loop twice.

Weight and bias gradients accumulate in the kernel, per block of samples, over all time steps of
the backward pass, and leave with the first time step's backward (it runs last: every later step
depends on it); the blocks are summed in block order, so gradients do not depend on the thread
count.

What it runs: see ``native.refusal`` (the same as inference); anything else runs the torch backend, with one log line
(logger ``snntorch_async.engine.native_grad``) per reason and process (:func:`fall_back`).
"""

from __future__ import annotations

import ctypes
import logging
import weakref
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..context import SimContext
from . import native
from .features import SilentCarriers
from .native import (
    KernelGrad,
    flat,
    flat_thresholds,
    kernel_plan,
    kernel_step,
    membrane_terms,
    per_layer,
    ptr,
    step_outputs,
)

if TYPE_CHECKING:  # pragma: no cover
    from .plan import AsyncPlan
    from .step import StepWork

__all__ = ["NativeTraining", "NativeStep", "fall_back", "surrogate_of"]

log = logging.getLogger(__name__)
_said: set[str] = set()


def fall_back(why: str) -> None:
    """One log line per reason and process: training runs the torch backend, and why."""
    if why not in _said:
        _said.add(why)
        log.info("snntorch_async: asynchronous training runs the torch backend: %s", why)


def _surrogate_slopes(neuron, x: Tensor) -> Tensor:
    """``σ'(x)``: the derivative of the neuron's ``spike_grad`` at ``x`` (elementwise)."""
    with torch.enable_grad():
        xr = x.detach().clone().requires_grad_(True)
        y = neuron.spike_fn(xr)
        (g,) = torch.autograd.grad(y, xr, torch.ones_like(y))
    return g


#: snnTorch surrogates whose derivative the kernel computes itself: the name of the factory in
#: ``snntorch.surrogate``, the kernel's code, and the factory's parameter (kernel: ``surrogate_slopes``).
KERNEL_SURROGATES = {
    "atan": (1, "alpha"),
    "fast_sigmoid": (2, "slope"),
    "sigmoid": (3, "slope"),
    "straight_through_estimator": (4, None),
}


def _kernel_formula(kind: int, p: float, x: Tensor) -> Tensor:
    """The kernel's surrogate derivative, in torch (float32, the kernel's operations)."""
    f = torch.float32
    if kind == 1:
        u = x * torch.tensor(torch.pi / 2 * p, dtype=f)
        return (1.0 / (1.0 + u * u)) * torch.tensor(p / 2, dtype=f)
    if kind == 2:
        d = torch.tensor(p, dtype=f) * x.abs() + 1.0
        return 1.0 / (d * d)
    if kind == 3:
        s = torch.tensor(p, dtype=f)
        e = torch.exp(-s * x)
        return (s * e) / ((e + 1.0) * (e + 1.0))
    return torch.ones_like(x)


def surrogate_of(neuron) -> tuple[int, float]:
    """``(kind, parameter)`` when the neuron's ``spike_grad`` is one of :data:`KERNEL_SURROGATES`
    (checked against its own backward pass on a grid from -4 to 4, to 1e-6), else ``(0, 0.0)``:
    the backward pass then calls ``spike_grad`` itself on the recorded ``U - θ``."""
    fn = neuron.module.spike_grad
    qual, mod = getattr(fn, "__qualname__", ""), getattr(fn, "__module__", "")
    name = qual.split(".")[0]
    if (
        mod != "snntorch.surrogate"
        or not qual.endswith(".<locals>.inner")
        or name not in KERNEL_SURROGATES
    ):
        return 0, 0.0
    kind, var = KERNEL_SURROGATES[name]
    cells = dict(zip(fn.__code__.co_freevars, [c.cell_contents for c in fn.__closure__ or ()]))
    try:
        p = float(cells[var]) if var else 0.0
    except (KeyError, TypeError, ValueError):
        return 0, 0.0
    grid = torch.linspace(-4, 4, 801)
    if not torch.allclose(
        _kernel_formula(kind, p, grid),
        _surrogate_slopes(neuron, grid),
        rtol=1e-6,
        atol=1e-7,
        equal_nan=True,
    ):
        return 0, 0.0
    return kind, p


def _c_floats(address: int, n: int) -> Tensor:
    """A float32 tensor over ``n`` floats of kernel memory (no copy)."""
    return torch.frombuffer((ctypes.c_float * n).from_address(address), dtype=torch.float32)


class _Run:
    """What one simulation's :class:`NativeStep` calls share: the kernel, its fixed arrays, the
    neurons (for their surrogate), the non-differentiable outputs of the last call, the number of
    calls (time steps), the tape (made at the first backward call, reused by every later one,
    freed with this object) and the weight and bias gradients, accumulated per block of samples
    over the time steps of the backward pass."""

    def __init__(self, lib, arrays, neurons, surrogates) -> None:
        self.lib, self.arrays, self.neurons, self.surrogates = lib, arrays, neurons, surrogates
        self.out: dict[str, Tensor] = {}
        self.calls = 0
        self._tape = None
        self.blocks = int(lib.sa_grad_blocks(arrays.plan.B))
        self._grads: tuple[list, list] | None = None

    def tape(self) -> int:
        if self._tape is None:
            tape = self.lib.sa_tape_new(ctypes.byref(self.arrays.plan))
            if not tape:
                raise MemoryError(
                    "snntorch_async native kernel: could not allocate the backward tape"
                )
            self._tape = tape
            weakref.finalize(self, self.lib.sa_tape_free, tape)
        return self._tape

    def grads(self) -> tuple[list, list]:
        """Per block and layer the weight and bias gradient buffers (``None``: no bias)."""
        if self._grads is None:
            wts, biases = self.arrays.keep[0], self.arrays.keep[1]
            self._grads = (
                [torch.zeros_like(w) for _ in range(self.blocks) for w in wts],
                [
                    None if b is None else torch.zeros_like(b)
                    for _ in range(self.blocks)
                    for b in biases
                ],
            )
        return self._grads

    def take_grads(self) -> tuple[list, list]:
        """The accumulated weight and bias gradients (blocks summed in block order); the buffers
        start again from zero (a later backward pass accumulates anew)."""
        gw, gb = self.grads()
        self._grads = None
        L = len(self.neurons)

        def total(bufs, l):
            if bufs[l] is None:
                return None
            out = bufs[l]
            for c in range(1, self.blocks):
                out = out + bufs[c * L + l]
            return out

        return [total(gw, l) for l in range(L)], [total(gb, l) for l in range(L)]


class NativeStep(torch.autograd.Function):
    """One time step's forward steps through the kernel (see the module docstring).

    Inputs (``[B, N]`` / ``[B, S]`` flat, kernel order): the membrane terms, the thresholds
    ``[N]``, the input frame's current (or ``None``), the pending values, the queued zeros (or
    ``None``), the transposed weights and the biases. Outputs: the accumulated current, the spike
    record, the pending values and the queued zeros after the step, and ``LayerCarriers``' zeros
    left at its end (``None`` under the other rules)."""

    @staticmethod
    def forward(
        ctx,
        run,
        fixed,
        decayed,
        syn_decayed,
        sub,
        zero_reset,
        recurrent,
        thr,
        frame,
        pend,
        queued,
        *params,
    ):
        lib, kplan = run.lib, run.arrays.plan
        B, N, S = kplan.B, kplan.N, kplan.S
        # what the backward pass starts again from (the counters start from their fresh values)
        start = {
            k: v.clone() if k in _MUTATED else v for k, v in fixed.items() if k not in _COUNTERS
        }
        arrays = dict(fixed)
        arrays["pend"] = pend.detach().clone()
        arrays.update(step_outputs(B, N))
        terms = dict(
            decayed=decayed,
            syn_decayed=syn_decayed,
            sub=sub,
            zero_reset=zero_reset,
            recurrent=recurrent,
        )
        terms = {k: None if v is None else v.detach().contiguous() for k, v in terms.items()}
        frame_d = None if frame is None else frame.detach().contiguous()
        step = kernel_step(arrays, terms, frame_d)
        if lib.sa_async_steps(ctypes.byref(kplan), ctypes.byref(step)) != 0:
            raise MemoryError("snntorch_async native kernel: could not allocate its work buffers")
        run.out = arrays
        names = sorted(start)
        ctx.run, ctx.names, ctx.index = run, names, run.calls
        run.calls += 1
        ctx.has = tuple(
            t is not None for t in (syn_decayed, sub, zero_reset, recurrent, frame, queued)
        )
        ctx.n_params = len(params)
        ctx.save_for_backward(
            *[start[k] for k in names],
            pend.detach(),
            *[t for t in terms.values() if t is not None],
            *([frame_d] if frame_d is not None else []),
        )
        queued_out = torch.zeros((B, S), dtype=_F32) if queued is not None else None
        carried = torch.zeros((B, S), dtype=_F32) if kplan.layer_carriers else None
        return arrays["acc"], arrays["spikes"], arrays["pend"], queued_out, carried

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_acc, g_spikes, g_pend, g_queued, g_carried):
        run = ctx.run
        lib, kplan = run.lib, run.arrays.plan
        B, N, S, L = kplan.B, kplan.N, kplan.S, kplan.L
        saved = list(ctx.saved_tensors)
        start = {k: saved.pop(0) for k in ctx.names}  # (the re-run writes only _MUTATED)
        start = {k: v.clone() if k in _MUTATED else v for k, v in start.items()}
        pend0 = saved.pop(0)
        has_syn, has_sub, has_zero, has_rec, has_frame, has_queued = ctx.has
        terms = {"decayed": saved.pop(0)}
        terms["syn_decayed"] = saved.pop(0) if has_syn else None
        terms["sub"] = saved.pop(0) if has_sub else None
        terms["zero_reset"] = saved.pop(0) if has_zero else None
        terms["recurrent"] = saved.pop(0) if has_rec else None
        frame = saved.pop(0) if has_frame else None
        arrays = dict(start)
        arrays.update(
            reached=torch.zeros((B, L), dtype=torch.bool),
            synops=torch.zeros((B, L), dtype=_F32),
            fsteps=torch.zeros(B, dtype=torch.long),
            out_at=torch.full((B,), -1, dtype=torch.long),
            pend=pend0.clone(),
            **step_outputs(B, N),
        )
        step = kernel_step(arrays, terms, frame)
        tape = run.tape()
        if lib.sa_tape_record(ctypes.byref(kplan), ctypes.byref(step), tape) != 0:
            raise MemoryError("snntorch_async native kernel: could not allocate the backward tape")
        for l, neuron in enumerate(run.neurons):
            if run.surrogates[l][0] != 0:  # the kernel computed sigma'(U - thr) itself
                continue
            for c in range(int(lib.sa_tape_chunks(tape))):
                n = int(lib.sa_tape_count(tape, c, l))
                if n:
                    x = _c_floats(lib.sa_tape_x(tape, c, l), n)
                    _c_floats(lib.sa_tape_sg(tape, c, l), n).copy_(_surrogate_slopes(neuron, x))

        def zeros_or(g, shape):
            return torch.zeros(shape, dtype=_F32) if g is None else g.contiguous()

        g_in = dict(
            g_acc=zeros_or(g_acc, (B, N)),
            g_spikes=zeros_or(g_spikes, (B, N)),
            g_pend=zeros_or(g_pend, (B, S)),
            g_queued=zeros_or(g_queued, (B, S)) if has_queued else None,
            g_carried=zeros_or(g_carried, (B, S)) if kplan.layer_carriers else None,
        )
        g_x = torch.zeros((B, N), dtype=_F32)
        g_pend_in = torch.empty((B, S), dtype=_F32)  # (written whole by the kernel, as g_queued_in)
        g_queued_in = torch.empty((B, S), dtype=_F32) if has_queued else None
        g_frame = torch.zeros_like(frame) if frame is not None else None
        g_wt, g_b = run.grads()

        def pointers(ts):
            return ctypes.cast((ctypes.c_void_p * len(ts))(*[ptr(t) for t in ts]), native._pptr)

        grad = KernelGrad(
            **{k: ptr(v) for k, v in g_in.items()},
            g_x=ptr(g_x),
            g_pend_in=ptr(g_pend_in),
            g_queued_in=ptr(g_queued_in),
            g_frame=ptr(g_frame),
            g_wt=pointers(g_wt),
            g_bias=pointers(g_b),
        )
        if lib.sa_tape_backward(ctypes.byref(kplan), ctypes.byref(step), tape, ctypes.byref(grad)):
            raise MemoryError("snntorch_async native kernel: could not allocate its gradients")
        # the weights' and biases' gradients of every time step leave with the first one's (its
        # backward runs last: every later step depends on it)
        if ctx.index == 0:
            g_wt, g_b = run.take_grads()
            g_params = [*g_wt, *[b for b in g_b if b is not None]]
        else:
            g_params = [None] * ctx.n_params
        # U = decayed + (syn_decayed +) acc (+ recurrent) - sub  [- U·r: zero_reset]; x = U - θ
        g_u = g_x if terms["zero_reset"] is None else g_x - g_x * terms["zero_reset"]
        return (
            None,
            None,
            g_u,
            g_u if has_syn else None,
            -g_x if has_sub else None,
            None,
            g_u if has_rec else None,
            -g_x.sum(0),
            g_frame,
            g_pend_in,
            g_queued_in,
            *g_params,
        )


#: The kernel's float type (explicit: torch's default dtype may be another).
_F32 = torch.float32

#: The step's counters: fresh at every step's start (``engine.step.leak``), not saved.
_COUNTERS = ("reached", "synops", "fsteps", "out_at")
#: The arrays the kernel updates in place: saved as copies (the others are saved as they are).
_MUTATED = ("key", "prio", "clock", "queued")


class NativeTraining:
    """Forward steps with gradients: :class:`NativeStep` per time step (module docstring). The
    kernel's fixed arrays (transposed weights, thresholds) are made once, at the first step."""

    name = "native"

    def __init__(self, lib) -> None:
        self.lib = lib
        self._run: _Run | None = None
        self._params: tuple = ()

    def _setup(self, plan: "AsyncPlan", ctx: SimContext) -> _Run:
        if self._run is None:
            lins = plan.lone_linear
            wts = [op.module.weight.t().contiguous() for op in lins]  # differentiable
            thr = flat_thresholds(ctx).contiguous()
            F = plan.forward_group_size
            F = plan.layout.total + 1 if F is None or F > plan.layout.total else F
            rule = plan.gradients
            neurons = [layer.neuron for layer in ctx.graph.layers]
            surrogates = [surrogate_of(n) for n in neurons]
            arrays = kernel_plan(
                plan,
                ctx,
                [w.detach() for w in wts],
                thr.detach(),
                F,
                per_eval=rule.queued and rule.output_per_evaluation,
                surrogates=surrogates,
                layer_carriers=rule.layer_carriers,
            )
            biases = [op.module.bias for op in lins if op.module.bias is not None]
            self._params = (thr, wts, biases)
            self._run = _Run(self.lib, arrays, neurons, surrogates)
        return self._run

    def tape_bytes(self) -> int:
        """The bytes of the backward tape (0 before the first backward call): one time step's
        tape at a time, so this is the largest step's."""
        if self._run is None or self._run._tape is None:
            return 0
        return int(self.lib.sa_tape_bytes(self._run._tape))

    def forward_steps(
        self, plan: "AsyncPlan", ctx: SimContext, work: "StepWork", x: Tensor
    ) -> None:
        run = self._setup(plan, ctx)
        thr, wts, biases = self._params
        layers, layout = ctx.graph.layers, plan.layout
        B, S = ctx.batch, layout.total
        shapes = [(B, *layer.shape) for layer in layers]
        lay_off = run.arrays.lay_off
        terms = membrane_terms(ctx, work)
        counts = native.sync_counts(plan, ctx, work, x)
        frame = native.frame_current(plan, ctx, work, x)
        pend = flat(work.pending, B)
        keys = work.keys

        def zeros():
            return torch.zeros((B, S), dtype=_F32)

        fixed = dict(  # (the counters are updated in place: they are the step's own tensors)
            cand=flat(work.candidates, B),
            key=keys.keys.contiguous() if keys is not None else zeros(),
            noise=(
                keys.noise.contiguous() if keys is not None and keys.noise is not None else zeros()
            ),
            reached=work.reached,
            synops=work.synops,
            fsteps=work.forward_steps,
            out_at=work.output_at,
        )
        if counts is not None:
            fixed["sync_counts"] = counts
        if keys is not None and keys.clock is not None:
            fixed["clock"] = keys.clock.contiguous()
        prio = plan.ordering.records_priority and work.priority
        if prio:
            fixed["prio"] = flat([p.detach() for p in work.priority], B)
        carriers = work.carriers
        hidden = layout.hidden
        queued_values = None
        if carriers is not None:
            flags = torch.zeros((B, S), dtype=torch.bool)
            values = [torch.zeros((B, g.size), dtype=_F32) for g in layout.groups]
            for l, g in enumerate(hidden):
                flags[:, g.columns] = carriers.queued[l]
                values[g.index] = carriers.values[l]
            fixed["queued"] = flags
            queued_values = flat(values, B)
        acc, spikes, pend_out, q_out, carried = NativeStep.apply(
            run,
            fixed,
            terms["decayed"],
            terms["syn_decayed"],
            terms["sub"],
            terms["zero_reset"],
            terms["recurrent"],
            thr,
            frame,
            pend,
            queued_values,
            *wts,
            *biases,
        )
        out = run.out
        work.current, work.spikes = (
            per_layer(acc, lay_off, shapes),
            per_layer(spikes, lay_off, shapes),
        )
        work.fired = per_layer(out["fired"], lay_off, shapes)
        work.evaluated = per_layer(out["evald"], lay_off, shapes)
        groups = layout.groups
        work.pending = [pend_out[:, g.columns] for g in groups]
        if keys is not None:
            keys.keys = out["key"]
            if "clock" in out:
                keys.clock = out["clock"]
        if prio:
            work.priority = [out["prio"][:, g.columns] for g in groups]
        if carriers is not None:
            for l, g in enumerate(hidden):
                carriers.values[l] = q_out[:, g.columns]
                carriers.queued[l] = out["queued"][:, g.columns]
        if carried is not None:  # LayerCarriers' zeros left: the finish takes them on
            work.silent = SilentCarriers(layout, work.pending)
            for g in hidden:
                work.silent.values[g.index] = carried[:, g.columns]
