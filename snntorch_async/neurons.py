"""Spiking neuron kernels read from snnTorch modules.

Each class wraps one of the user's snnTorch neuron modules (``snn.Leaky``, ``snn.Synaptic``) and
reads its parameters at call time, so that training updates, learnable ``beta``/``threshold`` and
the module's own surrogate ``spike_grad`` are always the ones in use. State is a ``NamedTuple``
passed in and returned; nothing is kept in the module (snnTorch's hidden state is never read or
written).

The layer-synchronous step reproduces snnTorch 1.0's arithmetic operation for operation (same
order, same detached terms), so spikes are identical and gradients agree to rounding.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)


def _warn_clamped(m: nn.Module, path: str, has_syn: bool) -> None:
    """Log once per module if ``beta`` (or ``alpha``) lies outside [0, 1]: snnTorch clamps it."""
    object.__setattr__(m, "_snntorch_async_range_checked", True)
    for name in ("beta",) + (("alpha",) if has_syn else ()):
        v = getattr(m, name).detach()
        if bool(((v < 0) | (v > 1)).any()):
            log.warning(
                "Neuron '%s' (%s): %s = %s lies outside [0, 1]; snnTorch clamps it to [0, 1] (so "
                "it acts as %s), and so does snntorch-async. Fix: pass %s in [0, 1].",
                path,
                type(m).__name__,
                name,
                _short(v),
                _short(v.clamp(0, 1)),
                name,
            )


def _short(v: Tensor) -> str:
    return f"{float(v):g}" if v.numel() == 1 else f"[{float(v.min()):g} .. {float(v.max()):g}]"


SUBTRACT, ZERO, NONE = 0, 1, 2
RESET_NAMES = {SUBTRACT: "subtract", ZERO: "zero", NONE: "none"}


def exact_on_lava(reset_name: str, reset_delay: bool) -> bool:
    """Whether Lava's LIF reproduces an snnTorch reset rule exactly: ``"zero"`` reset with
    ``reset_delay=False`` (Lava sets ``v <- 0`` in the step it spikes). The one definition of
    this rule (``Layer.exact_on_lava``, ``lava_bridge``'s ``NeuronSpec.exact`` call it)."""
    return reset_name == "zero" and not reset_delay


class LeakyState(NamedTuple):
    """State of a layer of ``snn.Leaky`` neurons; ``mem``: ``[B, *shape]``."""

    mem: Tensor


class SynapticState(NamedTuple):
    """State of a layer of ``snn.Synaptic`` neurons; ``syn``, ``mem``: ``[B, *shape]``."""

    syn: Tensor
    mem: Tensor


class NeuronParams(NamedTuple):
    """Parameters of one layer evaluated once per simulation (broadcastable to ``[B, *shape]``).

    ``alpha`` is ``None`` for Leaky neurons.
    """

    beta: Tensor
    threshold: Tensor
    alpha: Tensor | None


class StepBase(NamedTuple):
    """What a layer's membrane is made of at the start of a time step, before any input current.

    Computed once per time step by :meth:`Neuron.begin`; :meth:`Neuron.membrane` adds the step's
    (accumulated) input current to it with exactly the arithmetic of the layer-synchronous step,
    so a neuron that receives its whole current at once gets bit-identical values.

    Attributes:
        reset: Delayed reset ``r = H(mem[t-1] - thr)`` (detached), snnTorch's ``mem_reset``.
        decayed: ``β·mem[t-1]`` (``β·(1 - r)·mem[t-1]`` for Leaky zero reset).
        syn_decayed: ``α·syn[t-1]`` for Synaptic neurons, else ``None``.
        recurrent: The recurrent current of the step, ``V(spk[t-1])`` (with the recurrent
            ``nn.Linear``'s bias), for ``snn.RLeaky`` / ``snn.RSynaptic``; ``None`` otherwise.
            It is added after the step's input current, as snnTorch does.
    """

    reset: Tensor
    decayed: Tensor
    syn_decayed: Tensor | None
    recurrent: Tensor | None = None


class Neuron:
    """Base class of the neuron kernels.

    Args:
        module: The user's snnTorch neuron module (shared, never copied).
        path: Its dotted path in the model, used in error messages.
        shape: Per-sample shape of the layer, e.g. ``(256,)`` or ``(8, 12, 12)``.
    """

    has_syn = False

    def __init__(self, module: nn.Module, path: str, shape: tuple[int, ...]) -> None:
        self.module = module
        self.path = path
        self.shape = tuple(shape)

    # -- properties read from the module -------------------------------------------------
    @property
    def reset(self) -> int:
        """Reset rule: ``SUBTRACT`` (0), ``ZERO`` (1) or ``NONE`` (2), as snnTorch encodes it."""
        return int(self.module.reset_mechanism_val)

    @property
    def reset_name(self) -> str:
        return RESET_NAMES[self.reset]

    @property
    def reset_delay(self) -> bool:
        return bool(getattr(self.module, "reset_delay", True))

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def spike_fn(self, x: Tensor) -> Tensor:
        """The module's own firing function: Heaviside forward, surrogate backward."""
        return self.module.spike_grad(x)

    def params(self) -> NeuronParams:
        """Evaluate the (possibly learnable) parameters once for a simulation.

        ``beta`` and ``alpha`` outside [0, 1] are clamped, as snnTorch does; that is logged as a
        warning (once per neuron module), so that ``beta=1.5`` silently meaning 1.0 is visible.
        """
        m = self.module
        if not getattr(m, "_snntorch_async_range_checked", False):
            _warn_clamped(m, self.path, self.has_syn)
        alpha = m.alpha.clamp(0, 1) if self.has_syn else None
        return NeuronParams(beta=m.beta.clamp(0, 1), threshold=m.threshold, alpha=alpha)

    def init_state(self, batch: int, device, dtype) -> LeakyState | SynapticState:
        raise NotImplementedError

    def begin(self, p: NeuronParams, state) -> StepBase:
        raise NotImplementedError

    def membrane(self, p: NeuronParams, base: StepBase, current: Tensor):
        raise NotImplementedError

    def finish(self, p: NeuronParams, base: StepBase, mem: Tensor, syn, spk: Tensor):
        raise NotImplementedError

    def fire(self, p: NeuronParams, mem: Tensor) -> Tensor:
        """Spikes of a pre-threshold membrane: ``spike_grad(mem - thr)`` (``mem > thr``)."""
        return self.spike_fn(mem - p.threshold)

    def step(self, p: NeuronParams, state, current: Tensor):
        """One layer-synchronous step (snnTorch's update): ``current`` ``[B, *shape]`` →
        ``(spk, new_state)``. Composed of :meth:`begin`, :meth:`membrane`, :meth:`fire` and
        :meth:`finish`, which the asynchronous schedulers call separately."""
        base = self.begin(p, state)
        mem, syn = self.membrane(p, base, current)
        spk = self.fire(p, mem)
        return spk, self.finish(p, base, mem, syn, spk)

    def _delayed_reset(self, p: NeuronParams, mem: Tensor) -> Tensor:
        """snnTorch's ``mem_reset``: the detached spike of the previous membrane."""
        with torch.no_grad():
            return self.spike_fn(mem - p.threshold)

    def _immediate_reset(self, p: NeuronParams, mem: Tensor, spk: Tensor, reset: Tensor) -> Tensor:
        """snnTorch's ``reset_delay=False`` correction: ``mem -= (spk - reset)·(thr | mem)``."""
        if self.reset_delay:
            return mem
        do_reset = spk - reset
        if self.reset == SUBTRACT:
            return mem - do_reset * p.threshold
        if self.reset == ZERO:
            return mem - do_reset * mem
        return mem


class LeakyNeuron(Neuron):
    """``snn.Leaky``: first-order leaky integrate-and-fire.

    Per time step, with ``r = H(mem[t-1] - thr)`` (detached) and ``β = clamp(beta, 0, 1)``::

        subtract: mem[t] = β·mem[t-1] + I[t] - r·thr
        zero:     mem[t] = β·(1 - r)·mem[t-1] + I[t]
        none:     mem[t] = β·mem[t-1] + I[t]
        spk[t]   = spike_grad(mem[t] - thr)          (Heaviside forward: mem > thr)

    With ``reset_delay=False`` the reset is applied in the same step:
    ``mem[t] -= (spk[t] - r)·thr`` (subtract) or ``mem[t] -= (spk[t] - r)·mem[t]`` (zero).
    """

    def init_state(self, batch: int, device, dtype) -> LeakyState:
        return LeakyState(mem=torch.zeros((batch, *self.shape), device=device, dtype=dtype))

    def begin(self, p: NeuronParams, state: LeakyState) -> StepBase:
        """Leak (and delayed zero reset) at the start of a step."""
        reset = self._delayed_reset(p, state.mem)
        if self.reset == ZERO:
            return StepBase(reset, p.beta * ((1 - reset) * state.mem), None)
        return StepBase(reset, p.beta * state.mem, None)

    def membrane(self, p: NeuronParams, base: StepBase, current: Tensor) -> tuple[Tensor, None]:
        """Pre-threshold membrane given the step's input current; returns ``(mem, None)``."""
        mem = base.decayed + current
        if self.reset == SUBTRACT:
            mem = mem - base.reset * p.threshold
        return mem, None

    def finish(self, p: NeuronParams, base: StepBase, mem: Tensor, syn, spk: Tensor) -> LeakyState:
        """State after the step, given the pre-threshold membrane and the step's spikes."""
        return LeakyState(self._immediate_reset(p, mem, spk, base.reset))


class SynapticNeuron(Neuron):
    """``snn.Synaptic``: second-order LIF with a synaptic current.

    Per time step, with ``r = H(mem[t-1] - thr)`` (detached), ``α, β`` clamped to [0, 1]::

        syn[t] = α·syn[t-1] + I[t]
        m      = β·mem[t-1] + syn[t]
        subtract: mem[t] = m - r·thr
        zero:     mem[t] = m - m·r        (snnTorch discards the whole step, input included)
        none:     mem[t] = m
        spk[t] = spike_grad(mem[t] - thr)

    ``reset_delay=False`` applies the same correction as :class:`LeakyNeuron`.
    """

    has_syn = True

    def init_state(self, batch: int, device, dtype) -> SynapticState:
        z = torch.zeros((batch, *self.shape), device=device, dtype=dtype)
        return SynapticState(syn=z, mem=z.clone())

    def begin(self, p: NeuronParams, state: SynapticState) -> StepBase:
        """Decay of the synaptic current and membrane at the start of a step."""
        reset = self._delayed_reset(p, state.mem)
        return StepBase(reset, p.beta * state.mem, p.alpha * state.syn)

    def membrane(self, p: NeuronParams, base: StepBase, current: Tensor) -> tuple[Tensor, Tensor]:
        """Pre-threshold membrane and synaptic current given the step's input current."""
        syn = base.syn_decayed + current
        mem = base.decayed + syn
        if self.reset == SUBTRACT:
            mem = mem - base.reset * p.threshold
        elif self.reset == ZERO:
            mem = mem - mem * base.reset
        return mem, syn

    def finish(
        self, p: NeuronParams, base: StepBase, mem: Tensor, syn: Tensor, spk: Tensor
    ) -> SynapticState:
        """State after the step, given the pre-threshold membrane and the step's spikes."""
        return SynapticState(syn=syn, mem=self._immediate_reset(p, mem, spk, base.reset))
