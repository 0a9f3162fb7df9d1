"""Quantization-aware training (QAT) on Loihi's grids, with straight-through gradients.

:func:`prepare_qat` registers ``torch.nn.utils.parametrize`` parametrizations on the user's own
modules, so that every read of a quantized tensor returns its fake-quantized value::

    Linear.weight     w  →  Wq·2^e / s        Wq = clip(round(w·s/2^e / step)·step, lo, hi)
    Linear.bias       b  →  bq·2^be / s
    Leaky.threshold   θ  →  round(θ·s) / s
    Leaky.beta        β  →  1 - dv/4096       dv = clip(round((1 - β)·4096), 0, 4095)
    Synaptic.alpha    α  →  (4095 - du)/4096  du = clip(round((1 - α)·4096) - 1, 0, 4095)

with the layer's scale ``s`` and exponents ``e``, ``be`` chosen by the very function
:func:`lava_bridge.quantize.layer_grid` that :func:`lava_bridge.quantize` uses (recomputed when
a parameter changes), so ``quantize(convert(model))`` of a QAT model reproduces its
fake-quantized values exactly. The forward pass sees the quantized value, the backward pass
the identity (straight-through estimator: ``x + (q(x) - x).detach()``), SLAYER's recipe.
``QuantizeSettings.slayer()`` selects SLAYER's fixed grid (weights on 2/64, threshold on 1/64).

Because the parametrizations live on the modules, QAT works from any training loop:

* a plain snnTorch loop (``for t: spk, mem = model(x[t])``): call :func:`prepare_qat` once
  before training;
* snntorch-async's ``fit(model, ..., scheduler=...)`` / ``simulate``: the same (the model reader
  sees through the parametrizations);
* the context manager :func:`qat` removes them again on exit.

The optimizer keeps updating the float ("shadow") parameters, which stay the same
``nn.Parameter`` objects: build it before or after :func:`prepare_qat`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from snntorch_async.graph import read_model

from ._quantize import LayerGrid, QuantizeSettings, layer_grid
from .errors import BridgeValueError

__all__ = ["QATHandle", "prepare_qat", "remove_qat", "qat", "is_qat"]

log = logging.getLogger(__name__)


def _raw(module: nn.Module, name: str) -> Tensor | None:
    """The float (unparametrized) tensor ``module.<name>``."""
    if parametrize.is_parametrized(module, name):
        return module.parametrizations[name].original
    return getattr(module, name, None)


class _LayerQuant:
    """The grids of one layer, recomputed only when one of its float tensors changes."""

    def __init__(
        self, linear: nn.Module, neuron: nn.Module, settings: QuantizeSettings, where: str
    ) -> None:
        self.linear = linear
        self.neuron = neuron
        self.settings = settings
        self.where = where
        self._key: tuple | None = None
        self._grid: LayerGrid | None = None

    def _tensors(self) -> list[Tensor]:
        names = [
            (self.linear, "weight"),
            (self.linear, "bias"),
            (self.neuron, "threshold"),
            (self.neuron, "alpha"),
        ]
        return [t for t in (_raw(m, n) for m, n in names) if torch.is_tensor(t)]

    def grid(self) -> LayerGrid:
        tensors = self._tensors()
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        if key != self._key:

            def np64(t: Tensor | None) -> np.ndarray | None:
                return (
                    None if t is None else t.detach().to("cpu", torch.float64).numpy().reshape(-1)
                )

            w = _raw(self.linear, "weight").detach().to("cpu", torch.float64).numpy()
            alpha = _raw(self.neuron, "alpha")
            du = np.ones(1) if alpha is None else 1.0 - np.clip(np64(alpha), 0, 1)
            self._grid = layer_grid(
                w,
                np64(_raw(self.neuron, "threshold")),
                du,
                np64(_raw(self.linear, "bias")),
                self.settings,
                self.where,
            )
            self._key = key
        return self._grid


def _ste(x: Tensor, q: Tensor) -> Tensor:
    """Forward ``q``, backward identity."""
    return x + (q.to(x.dtype) - x).detach()


def _mantissa_grid(x: Tensor, s: float, exp: int, rng: tuple[int, int, int]) -> Tensor:
    lo, hi, step = rng
    x64 = x.detach().double()
    m = (torch.round(x64 * (s / 2.0**exp) / step) * step).clamp(lo, hi)
    return m * (2.0**exp / s)


class _FakeQuant(nn.Module):
    """One parametrization: fake-quantizes one tensor of one layer."""

    def __init__(self, ctx: _LayerQuant, kind: str) -> None:
        super().__init__()
        self._ctx = (ctx,)  # a tuple: not registered as a submodule or state
        self.kind = kind

    def extra_repr(self) -> str:
        return f"{self.kind}, {self._ctx[0].where}"

    def forward(self, x: Tensor) -> Tensor:
        ctx = self._ctx[0]
        if self.kind == "beta":
            dv = torch.round((1 - x.detach().double().clamp(0, 1)) * 4096).clamp(0, 4095)
            return _ste(x, 1 - dv / 4096)
        if self.kind == "alpha":
            du = (torch.round((1 - x.detach().double().clamp(0, 1)) * 4096) - 1).clamp(0, 4095)
            return _ste(x, (4095 - du) / 4096)
        g = ctx.grid()
        if self.kind == "weight":
            return _ste(x, _mantissa_grid(x, g.scale, g.weight_exp, g.weight_range))
        if self.kind == "bias":
            return _ste(x, _mantissa_grid(x, g.scale, g.bias_exp, g.bias_range))
        # threshold
        return _ste(x, torch.round(x.detach().double() * g.scale).clamp(0, 2**17 - 1) / g.scale)


@dataclass(frozen=True, eq=False)
class QATHandle:
    """What :func:`prepare_qat` did: the model and the (module, tensor name) pairs it wrapped."""

    model: nn.Module
    wrapped: tuple[tuple[nn.Module, str], ...]
    settings: QuantizeSettings

    def remove(self, *, keep_quantized: bool = False) -> None:
        """Remove the parametrizations (see :func:`remove_qat`)."""
        remove_qat(self.model, keep_quantized=keep_quantized)


def is_qat(model: nn.Module) -> bool:
    """True if :func:`prepare_qat` wrapped some module of ``model``."""
    return any(
        isinstance(p, _FakeQuant)
        for m in model.modules()
        if parametrize.is_parametrized(m)
        for plist in m.parametrizations.values()
        for p in plist
    )


def prepare_qat(
    model: nn.Module,
    input_shape: tuple[int, ...],
    settings: QuantizeSettings = QuantizeSettings(),
) -> QATHandle:
    """Fake-quantize ``model``'s weights, biases, thresholds and decays on Loihi's grids.

    Args:
        model: The user's snnTorch ``nn.Sequential`` (``nn.Linear`` or ``DelayedLinear`` layers
            followed by ``snn.Leaky``/``snn.Synaptic``).
        input_shape: Per-sample input shape (to read the model, e.g. ``(64,)``).
        settings: The same :class:`~lava_bridge.quantize.QuantizeSettings` you will pass to
            :func:`~lava_bridge.quantize.quantize`.

    Returns:
        A :class:`QATHandle`; ``handle.remove()`` (or :func:`remove_qat`) undoes it.

    The parameters stay the same ``nn.Parameter`` objects (moved under
    ``module.parametrizations.<name>.original``), so an optimizer built before or after this call
    updates them; the model's ``state_dict`` keys change while QAT is on.

    Raises:
        ValueError: ``model`` is already prepared, or a layer is not Linear-like.
    """
    if is_qat(model):
        raise BridgeValueError(
            "prepare_qat(): the model already has QAT parametrizations. Fix: call "
            "remove_qat(model) "
            "first, or keep using the existing ones."
        )
    graph = read_model(model, tuple(input_shape))
    from snntorch_async.recurrent import is_recurrent

    for layer in graph.layers:
        if is_recurrent(layer):
            raise BridgeValueError(
                f"prepare_qat(): layer {layer.index} ('{layer.path}', "
                f"{type(layer.neuron.module).__name__}) is recurrent; QAT does not fake-quantize "
                "recurrent weights (their grid is shared with the layer's weights). Fix: train in "
                "float and use lava_bridge.quantize(convert(model, ...)), which puts the recurrent "
                "Dense on the layer's grid, and measure the error with its report."
            )
    plan: list[tuple[nn.Module, str, _FakeQuant]] = []
    for layer in graph.layers:
        weighted = [op for op in layer.ops if op.weighted]
        w = getattr(weighted[0].module, "weight", None) if len(weighted) == 1 else None
        if w is None or w.dim() != 2:
            kinds = ", ".join(f"'{op.path}' ({type(op.module).__name__})" for op in weighted)
            raise BridgeValueError(
                f"prepare_qat(): layer {layer.index} ('{layer.path}') receives its input through "
                f"{kinds}; QAT supports exactly one nn.Linear (or DelayedLinear) per layer, whose "
                "weights become one Lava Dense matrix. Fix: use Linear layers for the Loihi model "
                "(Conv2d layers are unrolled by convert(), but not fake-quantized)."
            )
        lin, neuron = weighted[0].module, layer.neuron.module
        ctx = _LayerQuant(lin, neuron, settings, f"Layer {layer.index} ('{layer.path}')")
        plan.append((lin, "weight", _FakeQuant(ctx, "weight")))
        if getattr(lin, "bias", None) is not None:
            plan.append((lin, "bias", _FakeQuant(ctx, "bias")))
        plan.append((neuron, "threshold", _FakeQuant(ctx, "threshold")))
        plan.append((neuron, "beta", _FakeQuant(ctx, "beta")))
        if layer.neuron.has_syn:
            plan.append((neuron, "alpha", _FakeQuant(ctx, "alpha")))
    for module, name, fq in plan:
        parametrize.register_parametrization(module, name, fq)
    log.info("prepare_qat: %d tensors in %d layers fake-quantized", len(plan), len(graph.layers))
    return QATHandle(model=model, wrapped=tuple((m, n) for m, n, _ in plan), settings=settings)


def remove_qat(model: nn.Module, *, keep_quantized: bool = False) -> None:
    """Remove the QAT parametrizations of ``model`` (others are left alone).

    Args:
        model: A model prepared with :func:`prepare_qat`.
        keep_quantized: ``True``: write the quantized values into the parameters (the model then
            holds exactly what Loihi runs); ``False``: restore the float parameters.
    """
    for m in list(model.modules()):
        if not parametrize.is_parametrized(m):
            continue
        for name in list(m.parametrizations.keys()):
            if any(isinstance(p, _FakeQuant) for p in m.parametrizations[name]):
                parametrize.remove_parametrizations(m, name, leave_parametrized=keep_quantized)


@contextlib.contextmanager
def qat(
    model: nn.Module,
    input_shape: tuple[int, ...],
    settings: QuantizeSettings = QuantizeSettings(),
    *,
    keep_quantized: bool = False,
) -> Iterator[QATHandle]:
    """``with qat(model, (64,)): train...; spec = convert(model, (64,))`` — QAT inside the block.

    The parametrizations are removed on exit (also on errors); ``keep_quantized`` as in
    :func:`remove_qat`.
    """
    handle = prepare_qat(model, input_shape, settings)
    try:
        yield handle
    finally:
        remove_qat(model, keep_quantized=keep_quantized)
