"""Recurrent neuron kernels: ``snn.RLeaky`` and ``snn.RSynaptic`` (snnTorch 1.0).

A recurrent layer feeds its own spikes of the previous time step back to itself through its
``recurrent`` connection, read from the module at call time (never from snnTorch's hidden
state): the all-to-all ``nn.Linear(N, N)`` *with its own bias* (``all_to_all=True``), or the
one-to-one ``V`` (``all_to_all=False``, a scalar or one value per neuron). The convolutional
form is refused by the model reader with a clear error.

The kernels split a step into ``begin`` / ``membrane`` / ``fire`` / ``finish`` like the
feed-forward neurons: the recurrent current ``V(spk[t-1])`` (bias included) is computed in
``begin`` and added after the step's input current, exactly as snnTorch adds it, so LayerSync
equals snnTorch bit for bit and the asynchronous schedulers equal LayerSync at the anchor
(``docs/async.md``, "Recurrent layers"). :class:`RecurrentTiming` says when the asynchronous
schedulers deliver a recurrent spike. ``Pipelined`` gives the recurrent hop one step, as Lava's
``LIF.s_out → Dense → LIF.a_in``. ``lava_bridge.convert`` maps the recurrence to a ``Dense`` from
the layer back to itself (:meth:`_RecurrentNeuron.recurrent_matrix`); the recurrent
``nn.Linear``'s bias is a constant current every step from step 0 (snnTorch applies the Linear to
the all-zero spikes of step 0 too), so it joins the layer's bias
(:meth:`_RecurrentNeuron.recurrent_bias`).
"""

from __future__ import annotations

from typing import NamedTuple


import torch
from torch import Tensor, nn

from .errors import Choice, ModelStructureError, UnsupportedModuleError
from .neurons import SUBTRACT, ZERO, Neuron, NeuronParams, StepBase

__all__ = [
    "RLeakyNeuron",
    "RSynapticNeuron",
    "RLeakyState",
    "RSynapticState",
    "RecurrentTiming",
    "is_recurrent",
]


class RecurrentTiming(Choice):
    """When the asynchronous schedulers deliver a recurrent (lateral) spike (``docs/async.md``,
    "Recurrent layers"). Its ``value`` is the token accepted in its place.

    Members:
        NEXT_STEP: A spike emitted at step ``t`` joins the pending set of step ``t + 1`` and
            arrives with its layer's first delivery of that step (together with the layer's bias;
            it takes no forward-group slot): snnTorch's ``V(spk[t-1])``. With
            ``prioritize_input`` and ``F`` >= all sources every ordering equals LayerSync spike
            for spike (the anchor). The default.
        IMMEDIATE: A spike joins the pending set of its own step at once, as a lateral event
            into its own layer, and is delivered by the ordering in a later forward step of the
            same step like any pending spike (it takes a slot); the recurrent ``nn.Linear``'s
            bias arrives with the layer's first delivery. A different model than snnTorch's
            (no anchor).
    """

    NEXT_STEP = "next_step"
    IMMEDIATE = "immediate"

    @classmethod
    def setting(cls) -> str:
        return "recurrent_timing"

    @classmethod
    def fix(cls) -> str:
        return (
            "pass RecurrentTiming.NEXT_STEP (snnTorch's recurrence, the default) or "
            "RecurrentTiming.IMMEDIATE (lateral spikes within the step)."
        )


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

    def lateral_current(self, spk: Tensor) -> Tensor:
        """The recurrence of delivered spikes without the recurrent bias (``W·spk`` or
        ``spk * V``; ``RecurrentTiming.IMMEDIATE``). ``spk``: ``[B, *shape]``."""
        m = self.module
        if not m.all_to_all:
            return spk * m.V.to(spk.dtype)
        return torch.nn.functional.linear(spk, m.recurrent.weight.to(spk.dtype))

    def _recurrent_mask(self, dtype: torch.dtype) -> Tensor:
        """Non-zero recurrent synapses: ``[N, N]`` (out, in) or ``[*shape]`` (one-to-one)."""
        m = self.module
        if m.all_to_all:
            return (m.recurrent.weight.detach() != 0).to(dtype)
        return (m.V.detach() != 0).to(dtype).expand(self.shape)

    def recurrent_synops(self, spk: Tensor) -> Tensor:
        """Effective synaptic operations of sending ``spk`` ``[B, *shape]`` through the
        recurrence: spikes times their non-zero recurrent fan-out, per sample ``[B]``."""
        with torch.no_grad():
            active = spk.detach().sign().abs().flatten(1)
            mask = self._recurrent_mask(spk.dtype)
            if self.module.all_to_all:
                return active @ mask.sum(0)
            return (active * mask.reshape(-1)).sum(1)

    def recurrent_received(self, spk: Tensor) -> Tensor:
        """Synaptic events each neuron receives from ``spk`` ``[B, *shape]`` through the
        recurrence, ``[B, *shape]`` (partial synchronisation counts them)."""
        with torch.no_grad():
            active = spk.detach().sign().abs()
            mask = self._recurrent_mask(spk.dtype)
            if self.module.all_to_all:
                return active.flatten(1) @ mask.T
            return active * mask

    def recurrent_dense_synops(self) -> int:
        """Synaptic operations of one dense evaluation of the recurrence per sample."""
        return self.numel * self.numel if self.module.all_to_all else self.numel

    def begin(self, p: NeuronParams, state) -> StepBase:
        """Leak, delayed reset and the recurrent current ``V(spk[t-1])`` at the start of a step."""
        reset = self._delayed_reset(p, state.mem)
        rec = self.recurrent_current(state.spk)
        syn = p.alpha * state.syn if self.has_syn else None
        return StepBase(reset, p.beta * state.mem, syn, rec)


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

    def membrane(self, p: NeuronParams, base: StepBase, current: Tensor) -> tuple[Tensor, None]:
        """Pre-threshold membrane given the step's input current (the recurrent current is
        added after it, as snnTorch does); returns ``(mem, None)``."""
        mem = base.decayed + current + base.recurrent
        if self.reset == SUBTRACT:
            mem = mem - base.reset * p.threshold
        elif self.reset == ZERO:
            mem = mem - base.reset * mem
        return mem, None

    def finish(self, p: NeuronParams, base: StepBase, mem: Tensor, syn, spk: Tensor) -> RLeakyState:
        """State after the step: the membrane (immediate reset applied) and the step's spikes,
        which the recurrence sends at the next step."""
        return RLeakyState(mem=self._immediate_reset(p, mem, spk, base.reset), spk=spk)


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

    def membrane(self, p: NeuronParams, base: StepBase, current: Tensor) -> tuple[Tensor, Tensor]:
        """Pre-threshold membrane and synaptic current given the step's input current (the
        recurrent current joins the synaptic current after it, as snnTorch adds it)."""
        syn = base.syn_decayed + current + base.recurrent
        mem = base.decayed + syn
        if self.reset == SUBTRACT:
            mem = mem - base.reset * p.threshold
        elif self.reset == ZERO:
            mem = mem - mem * base.reset
        return mem, syn

    def finish(
        self, p: NeuronParams, base: StepBase, mem: Tensor, syn: Tensor, spk: Tensor
    ) -> RSynapticState:
        """State after the step (the step's spikes are sent through the recurrence next step)."""
        return RSynapticState(syn=syn, mem=self._immediate_reset(p, mem, spk, base.reset), spk=spk)
