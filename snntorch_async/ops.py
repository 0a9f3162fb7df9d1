"""Synapse and shape operations between two neuron layers.

A layer of the network graph is a chain of *ops* (``nn.Linear``, ``nn.Conv2d``, ``nn.Flatten``,
pooling, dropout, identity) that turns the previous layer's spikes (or the network input) into
the input current of its neurons. Each op wraps the user's module (parameters are shared, never
copied) and offers these ways to apply it:

* :meth:`Op.forward` calls the module itself, exactly as snnTorch's own time loop would (so the
  layer-synchronous scheduler reproduces snnTorch bit for bit);
* :meth:`Op.deliver` applies the op to a partial set of spikes *without bias*, as the
  asynchronous schedulers do when they deliver a group of spikes (bias is a constant current that
  arrives once per time step, see :meth:`Op.bias_current`);
* :meth:`Op.apply` is the op's bias-free map with an optional replacement weight (a 0/1 mask
  to count events, a float64 copy for Lava); shape ops ignore the weight;
* :meth:`Op.synops` counts effective synaptic operations (spikes times non-zero fan-out) for a
  weighted op, the NeuroBench definition.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Op:
    """Base class: a stateless, linear-or-shape operation from one layer to the next.

    Args:
        module: The user's module (shared).
        path: Its dotted path in the user's model, used in error messages.
    """

    weighted = False  #: True for ops with synaptic weights (Linear, Conv2d).
    stateful = False  #: True for ops with per-simulation state (``DelayedLinearOp``, see delays).

    def __init__(self, module: nn.Module, path: str) -> None:
        self.module = module
        self.path = path

    def forward(self, x: Tensor) -> Tensor:
        """Apply the module exactly as the user's model does. ``x``: ``[B, *in_shape]``."""
        return self.module(x)

    def deliver(self, x: Tensor) -> Tensor:
        """Apply the op to delivered spikes without any bias. ``x``: ``[B, *in_shape]``."""
        return self.module(x)

    def apply(self, x: Tensor, weight: Tensor | None = None) -> Tensor:
        """The op's bias-free map of ``x`` ``[B, *in_shape]``; a weighted op uses ``weight`` in
        place of the module's weight when given (e.g. a 0/1 mask or a float64 copy)."""
        return self.deliver(x)

    def bias_current(self, x_shape: tuple[int, ...]) -> Tensor | None:
        """The constant current this op adds per time step (``None`` when it adds none)."""
        return None

    def synops(self, x: Tensor) -> Tensor:
        """Effective synaptic operations caused by input ``x`` ``[B, *in]``, per sample ``[B]``."""
        return x.new_zeros(x.shape[0])

    def dense_synops(self, in_shape: tuple[int, ...]) -> int:
        """Synaptic operations a dense (non event-driven) evaluation performs per time step."""
        return 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}: {self.module!r})"


class IdentityOp(Op):
    """``nn.Identity`` and ``nn.Dropout`` (dropout is active only in training mode)."""


class FlattenOp(Op):
    """``nn.Flatten`` (its ``start_dim`` must keep the batch dimension)."""


class _WeightedOp(Op):
    weighted = True

    def __init__(self, module: nn.Module, path: str) -> None:
        super().__init__(module, path)
        self._fanout_cache: tuple[tuple, Tensor] | None = None

    def _map(self, x: Tensor, w: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply(self, x: Tensor, weight: Tensor | None = None) -> Tensor:
        return self._map(x, self.module.weight if weight is None else weight)

    def _fan(self, in_shape: tuple[int, ...], weight: Tensor) -> Tensor:
        """Per input element, the summed ``weight`` of the synapses leaving it, ``[*in_shape]``.

        Computed as a vector-Jacobian product of the op with ``weight`` (a 0/1 mask), so it works
        for any padding, stride or dilation without enumerating the connections.
        """
        probe = torch.zeros((1, *in_shape), device=weight.device, dtype=weight.dtype)
        probe.requires_grad_(True)
        with torch.enable_grad():
            out = self._map(probe, weight)
            (fan,) = torch.autograd.grad(out.sum(), probe)
        return fan[0].detach()

    def fanout(self, in_shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """Number of non-zero synapses leaving each input element (cached per weight version)."""
        w = self.module.weight
        key = (w._version, w.data_ptr(), tuple(in_shape), str(w.device), dtype)
        if self._fanout_cache is None or self._fanout_cache[0] != key:
            with torch.no_grad():
                fan = self._fan(in_shape, (w.detach() != 0).to(dtype))
            self._fanout_cache = (key, fan)
        return self._fanout_cache[1]

    def synops(self, x: Tensor) -> Tensor:
        fan = self.fanout(tuple(x.shape[1:]), x.dtype)
        # |sign(x)| is the 0/1 activity mask (inputs are finite) and a mat-vec sums it against
        # the fan-out: ~6x cheaper per step on CPU than a boolean mask, a cast and a product.
        active = x.detach().sign().abs_()
        return torch.mv(active.reshape(x.shape[0], -1), fan.reshape(-1))

    def dense_synops(self, in_shape: tuple[int, ...]) -> int:
        w = self.module.weight
        key = (tuple(in_shape), tuple(w.shape))  # independent of the weight values: cached
        cache = self.__dict__.setdefault("_dense_cache", {})
        if key not in cache:
            ones = torch.ones_like(w.detach())
            cache[key] = int(round(float(self._fan(in_shape, ones).sum())))
        return cache[key]

    def bias_current(self, x_shape: tuple[int, ...]) -> Tensor | None:
        return None if self.module.bias is None else self._bias_shaped()

    def _bias_shaped(self) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class LinearOp(_WeightedOp):
    """``nn.Linear``: ``I = x Wᵀ (+ b)``; ``x`` ``[B, in]`` → ``[B, out]``."""

    def deliver(self, x: Tensor) -> Tensor:
        return F.linear(x, self.module.weight)

    def _map(self, x: Tensor, w: Tensor) -> Tensor:
        return F.linear(x, w)

    def _bias_shaped(self) -> Tensor:
        return self.module.bias


class Conv2dOp(_WeightedOp):
    """``nn.Conv2d`` (any stride, padding and dilation; ``groups=1``): ``[B, C, H, W]``."""

    def _conv(self, x: Tensor, w: Tensor) -> Tensor:
        m = self.module
        if m.padding_mode != "zeros":
            x = F.pad(x, m._reversed_padding_repeated_twice, mode=m.padding_mode)
            return F.conv2d(x, w, None, m.stride, 0, m.dilation, m.groups)
        return F.conv2d(x, w, None, m.stride, m.padding, m.dilation, m.groups)

    def deliver(self, x: Tensor) -> Tensor:
        return self._conv(x, self.module.weight)

    def _map(self, x: Tensor, w: Tensor) -> Tensor:
        return self._conv(x, w)

    def _bias_shaped(self) -> Tensor:
        return self.module.bias[:, None, None]


class AvgPoolOp(Op):
    """``nn.AvgPool2d``: linear, so partial deliveries add up to the full result."""


class MaxPoolOp(Op):
    """``nn.MaxPool2d``.

    On spikes, max pooling is an OR over each window. When spikes of one time step arrive in
    several groups (asynchronous schedulers), a pooled unit passes at most one spike per time
    step; see :meth:`deliver_once`.
    """

    def deliver_once(self, x: Tensor, passed: Tensor | None) -> tuple[Tensor, Tensor]:
        """Pool a partial delivery, letting each pooled unit pass at most once per time step.

        Args:
            x: Delivered spikes ``[B, C, H, W]``.
            passed: ``[B, C, H', W']`` 0/1 mask of pooled units that already passed a spike in
                this time step, or ``None`` at the first delivery of the step.

        Returns:
            The pooled spikes and the updated ``passed`` mask.
        """
        y = self.module(x)
        if passed is not None:
            y = y * (1 - passed)
        new_passed = (y.detach() != 0).to(y.dtype)
        if passed is not None:
            new_passed = torch.maximum(passed, new_passed)
        return y, new_passed


OpFactory = Callable[[nn.Module, str], Op]
