"""Recurrent neuron kernels: ``snn.RLeaky`` and ``snn.RSynaptic`` (snnTorch 1.0).

A recurrent layer feeds its own spikes of the previous time step back to itself through its
``recurrent`` connection, read from the module at call time (never from snnTorch's hidden
state): the all-to-all ``nn.Linear(N, N)`` *with its own bias* (``all_to_all=True``), or the
one-to-one ``V`` (``all_to_all=False``, a scalar or one value per neuron). The convolutional
form is refused by :func:`check_recurrent` with a clear error.

Only the whole-step :meth:`Neuron.step` is defined (used by LayerSync and Pipelined, where the
recurrent hop takes one step, as Lava's ``LIF.s_out → Dense → LIF.a_in``); the schedulers that do
not yet give the recurrence its semantics (the asynchronous ones) refuse recurrent layers via
:func:`refuse_recurrent`. ``lava_bridge.convert`` maps the recurrence to a ``Dense`` from the layer
back to itself (:meth:`_RecurrentNeuron.recurrent_matrix`); the recurrent ``nn.Linear``'s bias is
a constant current every step from step 0 (snnTorch applies the Linear to the all-zero spikes of
step 0 too), so it joins the layer's bias (:meth:`_RecurrentNeuron.recurrent_bias`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .errors import ModelStructureError, UnsupportedModuleError
from .neurons import SUBTRACT, ZERO, Neuron, NeuronParams, StepBase

__all__ = [
    "RLeakyNeuron",
    "RSynapticNeuron",
    "RLeakyState",
    "RSynapticState",
    "is_recurrent",
    "refuse_recurrent",
]


class RLeakyState(NamedTuple):
    """State of a layer of ``snn.RLeaky`` neurons; ``mem``, ``spk`` (previous step's spikes):
    ``[B, *shape]``."""

    mem: Tensor
    spk: Tensor


class RSynapticState(NamedTuple):
    """State of a layer of ``snn.RSynaptic`` neurons; ``syn``, ``mem``, ``spk``: ``[B, *shape]``."""

    syn: Tensor
    mem: Tensor
    spk: Tensor


def is_recurrent(layer) -> bool:
    """Whether a graph layer's neuron feeds its spikes back to itself. The one definition."""
    return isinstance(layer.neuron, _RecurrentNeuron)


def refuse_recurrent(
    graph, where: str, fix: str = "use LayerSync", error: type[Exception] = UnsupportedModuleError
) -> None:
    """Raise ``error`` if ``graph`` has a recurrent layer (for the execution modes and exports
    whose recurrent semantics are not built yet)."""
    for layer in graph.layers:
        if is_recurrent(layer):
            raise error(
                f"{where} does not support the recurrent neuron '{layer.path}' "
                f"({type(layer.neuron.module).__name__}) yet: its recurrent-spike semantics are "
                f"not defined there. Fix: {fix} for recurrent models."
            )


class _RecurrentNeuron(Neuron):
    """Shared reading and checking of the recurrent connection."""

    def __init__(self, module: nn.Module, path: str, shape: tuple[int, ...]) -> None:
        super().__init__(module, path, shape)
        self._check()

    def _check(self) -> None:
        m, name = self.module, type(self.module).__name__
        rec = getattr(m, "recurrent", None)
        if m.all_to_all:
            if not isinstance(rec, nn.Linear):
                raise UnsupportedModuleError(
                    f"{name} at '{self.path}' uses the convolutional recurrent form "
                    f"(conv2d_channels={m.conv2d_channels}, kernel_size={m.kernel_size}), which "
                    "snntorch-async does not support. Supported: all_to_all=True with "
                    "linear_features=N (an nn.Linear(N, N) recurrence) or all_to_all=False "
                    "(one-to-one V). Fix: flatten before the layer and use linear_features, or "
                    "use all_to_all=False."
                )
            if (
                len(self.shape) != 1
                or rec.in_features != self.numel
                or rec.out_features != self.numel
            ):
                raise ModelStructureError(
                    f"{name} at '{self.path}' has linear_features={m.linear_features} (recurrent "
                    f"nn.Linear({rec.in_features}, {rec.out_features})), but its layer has neurons "
                    f"of shape {list(self.shape)}; expected linear_features={self.numel} on a flat "
                    f"layer. Fix: construct it with linear_features={self.numel} (the "
                    "out_features of the nn.Linear before it)."
                )
        else:
            v = m.V
            if not torch.is_tensor(v) or tuple(v.shape) not in ((), (1,), self.shape):
                got = list(v.shape) if torch.is_tensor(v) else type(v).__name__
                raise ModelStructureError(
                    f"{name} at '{self.path}' has V of shape {got}, but its layer has neurons of "
                    f"shape {list(self.shape)}; expected a scalar or a tensor of shape "
                    f"{list(self.shape)}. Fix: pass V as one value or one value per neuron."
                )

    @property
    def all_to_all(self) -> bool:
        """True for the ``nn.Linear`` recurrence, False for the one-to-one ``V``."""
        return bool(self.module.all_to_all)

    def recurrent_current(self, spk: Tensor, *, bias: bool = True) -> Tensor:
        """The recurrence ``V(spk[t-1])`` exactly as snnTorch computes it: the module's
        ``nn.Linear`` (with its bias unless ``bias=False``) or ``spk * V``. ``spk``:
        ``[B, *shape]``."""
        m = self.module
        if not m.all_to_all:
            return spk * m.V.to(spk.dtype)
        rec = m.recurrent  # weights cast to spk's dtype (a no-op, same tensors, when they agree)
        b = None if rec.bias is None or not bias else rec.bias.to(spk.dtype)
        return torch.nn.functional.linear(spk, rec.weight.to(spk.dtype), b)

    def recurrent_matrix(self, dtype: torch.dtype | None = None) -> Tensor:
        """The recurrence as a dense ``[N, N]`` matrix ``Wr`` (``nn.Linear.weight`` layout:
        ``V(spk) = Wr @ spk + b``): the Linear's weight, or ``diag(V)`` (``V`` broadcast to one
        value per neuron). Differentiable."""
        m = self.module
        if m.all_to_all:
            w = m.recurrent.weight
            return w if dtype is None else w.to(dtype)
        v = m.V if dtype is None else m.V.to(dtype)
        return torch.diag(torch.broadcast_to(v, (self.numel,)))

    def recurrent_bias(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> Tensor | None:
        """The recurrent ``nn.Linear``'s bias as a constant current ``[1, *shape]`` (it flows
        every step from step 0, as a layer bias does), or ``None`` (one-to-one ``V``, or a Linear
        without bias). Differentiable."""
        m = self.module
        if not m.all_to_all or m.recurrent.bias is None:
            return None
        return m.recurrent.bias.to(device=device, dtype=dtype).reshape(1, *self.shape)

    def begin(self, p: NeuronParams, state) -> StepBase:
        raise NotImplementedError(
            f"'{self.path}': recurrent neurons only have the layer-synchronous step"
        )

    def _fire_and_reset(self, p: NeuronParams, mem: Tensor, reset: Tensor):
        spk = self.fire(p, mem)
        return spk, self._immediate_reset(p, mem, spk, reset)


class RLeakyNeuron(_RecurrentNeuron):
    """``snn.RLeaky``: first-order LIF with a recurrent connection.

    Per time step, with ``r = H(mem[t-1] - thr)`` (detached), ``β = clamp(beta, 0, 1)`` and
    ``m = β·mem[t-1] + I[t] + V(spk[t-1])``::

        subtract: mem[t] = m - r·thr
        zero:     mem[t] = m - r·m        (unlike snn.Leaky, the whole step is discarded)
        none:     mem[t] = m
        spk[t]   = spike_grad(mem[t] - thr)

    ``reset_delay=False`` applies :class:`~snntorch_async.neurons.LeakyNeuron`'s correction.
    Gradients flow through ``spk[t-1]`` into the recurrence (BPTT), as in snnTorch.
    """

    def init_state(self, batch: int, device, dtype) -> RLeakyState:
        z = torch.zeros((batch, *self.shape), device=device, dtype=dtype)
        return RLeakyState(mem=z, spk=z.clone())

    def step(self, p: NeuronParams, state: RLeakyState, current: Tensor):
        """One layer-synchronous step: ``current`` ``[B, *shape]`` → ``(spk, new_state)``."""
        reset = self._delayed_reset(p, state.mem)
        mem = p.beta * state.mem + current + self.recurrent_current(state.spk)
        if self.reset == SUBTRACT:
            mem = mem - reset * p.threshold
        elif self.reset == ZERO:
            mem = mem - reset * mem
        spk, mem = self._fire_and_reset(p, mem, reset)
        return spk, RLeakyState(mem=mem, spk=spk)


class RSynapticNeuron(_RecurrentNeuron):
    """``snn.RSynaptic``: second-order LIF whose synaptic current receives the recurrence.

    Per time step, with ``r = H(mem[t-1] - thr)`` (detached), ``α, β`` clamped to [0, 1]::

        syn[t] = α·syn[t-1] + I[t] + V(spk[t-1])
        m      = β·mem[t-1] + syn[t]
        subtract: mem[t] = m - r·thr
        zero:     mem[t] = m - r·m        (syn is kept)
        none:     mem[t] = m
        spk[t] = spike_grad(mem[t] - thr)

    ``reset_delay=False`` is refused: snnTorch 1.0's ``RSynaptic.forward`` reads its ``spk``
    argument there (``None`` with ``init_hidden=True``, so it raises) and never stores the
    corrected membrane, so there is no reference behaviour to reproduce.
    """

    has_syn = True

    def _check(self) -> None:
        super()._check()
        if not self.reset_delay:
            raise UnsupportedModuleError(
                f"RSynaptic at '{self.path}' has reset_delay=False, which snnTorch 1.0's own "
                "RSynaptic.forward cannot run (it divides its spk argument, None with "
                "init_hidden=True, and discards the corrected membrane). Fix: use "
                "reset_delay=True, or snn.RLeaky with reset_delay=False."
            )

    def init_state(self, batch: int, device, dtype) -> RSynapticState:
        z = torch.zeros((batch, *self.shape), device=device, dtype=dtype)
        return RSynapticState(syn=z, mem=z.clone(), spk=z.clone())

    def step(self, p: NeuronParams, state: RSynapticState, current: Tensor):
        """One layer-synchronous step: ``current`` ``[B, *shape]`` → ``(spk, new_state)``."""
        reset = self._delayed_reset(p, state.mem)
        syn = p.alpha * state.syn + current + self.recurrent_current(state.spk)
        mem = p.beta * state.mem + syn
        if self.reset == SUBTRACT:
            mem = mem - reset * p.threshold
        elif self.reset == ZERO:
            mem = mem - mem * reset
        spk, mem = self._fire_and_reset(p, mem, reset)
        return spk, RSynapticState(syn=syn, mem=mem, spk=spk)
