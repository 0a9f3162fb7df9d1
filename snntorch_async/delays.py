"""Synaptic delays: :class:`DelayedLinear`, an ``nn.Linear`` with an integer delay per synapse.

snnTorch has no synaptic delays; Loihi has (Lava's ``DelayDense``). ``DelayedLinear`` is a drop-in
``nn.Linear`` whose synapse ``(i, j)`` delivers input ``j`` after ``delays[i, j]`` time steps::

    y[t]_i = Σ_j W[i, j] · x[t - D[i, j]]_j + b_i          (x[t'] = 0 for t' < 0)

so delay 0 is exactly ``nn.Linear``. Delays are integers in ``0..62`` (Loihi 2 holds 6 bits, and a
delay of 64 hangs Lava's simulator; lava-dl netx clamps at 62), given by the user or drawn
uniformly from ``0..max_delay`` by a seeded generator. They are a buffer (saved in the
``state_dict``, moved by ``.to()``), not a parameter: training changes weights only.

Two ways to run it:

* **In a plain snnTorch loop** (call the model once per time step): the module keeps a history of
  its last ``max_delay + 1`` inputs in ``self.history`` (``[max_delay + 1, B, in]``, newest
  first, ``None`` after :meth:`DelayedLinear.reset`). Call ``layer.reset()`` (or
  :func:`reset_delays` on the whole model) before each new batch of sequences, as you reset the
  snnTorch neurons.
* **In snntorch-async** (``simulate``, any scheduler that supports it): the model reader wraps it
  in a :class:`DelayedLinearOp`, whose history is explicit per-simulation state. The module's
  own ``history`` is never read or written by the engine.

Stateful-op interface (for schedulers). An op with ``stateful = True`` provides:

* ``init_state(batch, device, dtype) -> DelayLineState`` — an all-zero history;
* ``forward_stateful(x, state) -> (y, state)`` — push ``x`` ``[B, in]`` (the source of this time
  step) into the history and return this step's current ``[B, out]`` **with** the bias;
* ``deliver_stateful(x, state) -> (y, state)`` — the same **without** the bias;
* ``delay_values`` (the distinct delays present, sorted) and ``deliver_at(x, k)`` — the current
  ``x Wₖᵀ`` through only the synapses of delay ``k``, with ``Wₖ = W·[D = k]``, no bias. An
  event-driven scheduler delivers a spike of source ``j`` sent at step ``t`` as ``deliver_at``
  with ``k = 0`` at once and with every other ``k`` at step ``t + k``: it joins the pending set of
  its arrival step. LayerSync and Pipelined run this interface; an asynchronous scheduler must
  handle it explicitly (or refuse stateful ops in its ``check``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ConfigError, InputError
from .graph import register_op
from .ops import LinearOp

__all__ = ["DelayedLinear", "DelayedLinearOp", "DelayLineState", "MAX_DELAY", "reset_delays"]

#: Largest supported delay in time steps (Loihi/Lava limit, see the module docstring).
MAX_DELAY = 62


def _check_delay_range(d: Tensor, where: str) -> None:
    if d.numel() and (int(d.min()) < 0 or int(d.max()) > MAX_DELAY):
        raise ConfigError(
            f"{where}: synaptic delays must be integers in 0..{MAX_DELAY} time steps; got values "
            f"in {int(d.min())}..{int(d.max())}. (Loihi holds 6 delay bits and Lava's fixed-point "
            f"DelayDense hangs at 64.) Fix: clip the delays, e.g. delays.clamp(0, {MAX_DELAY})."
        )


class DelayedLinear(nn.Linear):
    """``nn.Linear`` with an integer synaptic delay per weight (see the module docstring).

    Args:
        in_features: Size of each input sample.
        out_features: Size of each output sample.
        bias: Add a learnable bias (arrives every step, not delayed), as ``nn.Linear``.
        delays: ``[out_features, in_features]`` integer delays (or one int for all synapses);
            ``None`` draws them uniformly from ``0..max_delay`` with ``seed``.
        max_delay: Largest drawn delay when ``delays`` is ``None`` (0..62).
        seed: Seed of the delay draw (the weights use torch's global generator, as nn.Linear).

    Attributes:
        delays: ``[out, in]`` long buffer.
        history: ``[max_delay + 1, B, in]`` inputs of the last steps (newest first) kept by the
            module's own ``forward``, or ``None`` after :meth:`reset`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        delays: Tensor | int | None = None,
        max_delay: int = 4,
        seed: int = 0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        shape = (out_features, in_features)
        if delays is None:
            if not (isinstance(max_delay, int) and 0 <= max_delay <= MAX_DELAY):
                raise ConfigError(
                    f"DelayedLinear: max_delay must be an int in 0..{MAX_DELAY}; got {max_delay!r}. "
                    f"Fix: pass max_delay between 0 and {MAX_DELAY}."
                )
            g = torch.Generator().manual_seed(int(seed))
            d = torch.randint(0, max_delay + 1, shape, generator=g)
        else:
            d = torch.as_tensor(delays)
            if d.is_floating_point() or d.is_complex() or d.dtype == torch.bool:
                raise ConfigError(
                    f"DelayedLinear: delays must be integers (time steps); got dtype {d.dtype}. "
                    "Fix: round them, e.g. delays.round().long()."
                )
            if d.dim() == 0:
                d = d.expand(shape)
            if tuple(d.shape) != shape:
                raise ConfigError(
                    f"DelayedLinear: delays must have shape [out_features, in_features] = "
                    f"{list(shape)} (or be one int); got {list(d.shape)}."
                )
        d = d.to(device=self.weight.device, dtype=torch.long).clone()
        _check_delay_range(d, "DelayedLinear")
        self.register_buffer("delays", d)
        self.history: Tensor | None = None

    @property
    def max_delay(self) -> int:
        """The largest delay present."""
        return int(self.delays.max()) if self.delays.numel() else 0

    def reset(self) -> None:
        """Forget the input history (call before each new batch of sequences)."""
        self.history = None

    def forward(self, x: Tensor) -> Tensor:
        """One time step: ``x`` ``[B, in]`` → ``[B, out]`` (uses and updates ``self.history``)."""
        state = self.history
        if state is not None and (
            state.shape[1:] != x.shape or state.shape[0] != self.max_delay + 1
        ):
            raise InputError(
                f"DelayedLinear got input of shape {list(x.shape)} but its history holds inputs "
                f"of shape {list(state.shape[1:])}. Fix: call .reset() on the layer (or "
                "snntorch_async.delays.reset_delays(model)) before a new batch of sequences."
            )
        if state is None:
            state = x.new_zeros((self.max_delay + 1, *x.shape))
        y, new = _delay_forward(self.weight, self.delays, self.bias, x, state)
        self.history = new
        return y

    def extra_repr(self) -> str:
        return super().extra_repr() + f", max_delay={self.max_delay}"


def reset_delays(model: nn.Module) -> None:
    """Call :meth:`DelayedLinear.reset` on every ``DelayedLinear`` in ``model``."""
    for m in model.modules():
        if isinstance(m, DelayedLinear):
            m.reset()


def _delay_forward(
    weight: Tensor, delays: Tensor, bias: Tensor | None, x: Tensor, history: Tensor
) -> tuple[Tensor, Tensor]:
    """Push ``x`` into ``history`` (newest first) and return ``Σₖ history[k] Wₖᵀ (+ b)``."""
    history = (
        torch.cat([x.unsqueeze(0), history[:-1]], 0) if history.shape[0] > 1 else x.unsqueeze(0)
    )
    present = torch.unique(delays).tolist()
    if present == [0]:
        return F.linear(x, weight, bias), history
    y = None
    for k in present:
        part = F.linear(history[k], weight * (delays == k).to(weight.dtype))
        y = part if y is None else y + part
    if bias is not None:
        y = y + bias
    return y, history


class DelayLineState(NamedTuple):
    """Per-simulation state of a :class:`DelayedLinearOp`.

    Attributes:
        history: ``[max_delay + 1, B, in]``: the op's inputs of the last ``max_delay + 1`` steps,
            newest first (``history[k]`` was sent ``k`` steps before the current one).
    """

    history: Tensor


class DelayedLinearOp(LinearOp):
    """The model reader's op for :class:`DelayedLinear` (stateful; see the module docstring)."""

    stateful = True

    @property
    def delays(self) -> Tensor:
        return self.module.delays

    @property
    def max_delay(self) -> int:
        return self.module.max_delay

    @property
    def delay_values(self) -> tuple[int, ...]:
        return tuple(int(k) for k in torch.unique(self.module.delays).tolist())

    def check_range(self) -> None:
        """Refuse a delays buffer edited out of range after construction (once per simulation:
        by ``init_state`` and by the asynchronous engine's plan)."""
        _check_delay_range(self.module.delays, "DelayedLinear (delays buffer, as now set)")

    def init_state(self, batch: int, device, dtype) -> DelayLineState:
        self.check_range()
        inp = self.module.in_features
        return DelayLineState(
            torch.zeros((self.max_delay + 1, batch, inp), device=device, dtype=dtype)
        )

    def _weight(self, dtype: torch.dtype) -> Tensor:
        w = self.module.weight
        return w if w.dtype == dtype else w.to(dtype)

    def forward_stateful(self, x: Tensor, state: DelayLineState) -> tuple[Tensor, DelayLineState]:
        """This step's current with bias. ``x``: ``[B, in]`` → ``[B, out]``."""
        b = self.module.bias
        b = None if b is None else b.to(x.dtype)
        y, h = _delay_forward(self._weight(x.dtype), self.module.delays, b, x, state.history)
        return y, DelayLineState(h)

    def deliver_stateful(self, x: Tensor, state: DelayLineState) -> tuple[Tensor, DelayLineState]:
        """This step's current without bias. ``x``: ``[B, in]`` → ``[B, out]``."""
        y, h = _delay_forward(self._weight(x.dtype), self.module.delays, None, x, state.history)
        return y, DelayLineState(h)

    def deliver_at(self, x: Tensor, k: int) -> Tensor:
        """Current through the synapses of delay ``k`` only (no bias): ``x (W·[D=k])ᵀ``."""
        w = self._weight(x.dtype)
        return F.linear(x, w * (self.module.delays == k).to(w.dtype))

    def forward(self, x: Tensor) -> Tensor:
        """Stateless view used for shape probing: the first step from an empty history."""
        return self.forward_stateful(x, self.init_state(x.shape[0], x.device, x.dtype))[0]

    def deliver(self, x: Tensor) -> Tensor:
        """Stateless view (first step from an empty history), without bias."""
        return self.deliver_stateful(x, self.init_state(x.shape[0], x.device, x.dtype))[0]


register_op(DelayedLinear, DelayedLinearOp)
