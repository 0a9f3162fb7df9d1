"""Build Lava processes from a :class:`~lava_bridge.spec.NetworkSpec` (the only module that imports Lava).

Lava is imported lazily, inside :func:`build`, so the rest of ``lava_bridge`` works without it.
Lava (lava-nc 0.10.0) runs on Python 3.10 only: on Python ≥ 3.11, or when it is not installed,
:func:`build` raises :class:`~lava_bridge.errors.LavaUnavailableError` saying which Python is
running and how to get Lava (Python 3.10 and ``pip install 'snntorch-async[lava]'``).

The network, for one sample (Lava runs one sample at a time)::

    RingBuffer(input [n_in, num_steps]) ─ Dense/DelayDense(W₀, D₀) ─► LIF₀ ─ Dense(W₁) ─► LIF₁ ...
    RingBuffer(ones [1, 1]) ─ DelayDense(bias_l [n_l, 1], delay l) ─► LIF_l   (bias, "synaptic")
    LIF_l(bias_mant = bias_l)                         (bias, "lava": float; fixed: see below)
    LIF_l.s_out ─ Dense(recurrent_l) ─► LIF_l.a_in     (a recurrent layer: one step per hop)

The inputs of ``LIF_l.a_in`` are connected in this order: synapses, bias channel, recurrent
``Dense`` (Lava sums them in connection order; :func:`lava_bridge.simulate_spec` and
``Pipelined`` add them in the same order). The recurrent ``Dense`` has the layer's
``weight_exp`` and ``num_weight_bits`` in fixed point.

A ``bias_timing="lava"`` layer's bias is the LIF's own: ``bias_mant = b`` in float, and in
fixed point ``bias_mant = bias << bias_exp`` with ``bias_exp = 6``, as lava-dl's netx sets it.
    LIF_{L-1} (and every LIF if record_layers) ─► RingBuffer sink [n, num_steps]

Per-neuron ``du``/``dv``/``vth`` that differ within a layer are passed to ``LIF`` as arrays (Lava's
models broadcast them; never read those Vars back: their declared shape is ``(1,)``).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from .limits import check_loihi_limits
from .errors import LavaUnavailableError, SpecFormatError
from .spec import NetworkSpec

__all__ = ["BuiltNetwork", "build", "lava_available", "require_lava"]

log = logging.getLogger(__name__)

#: Message bits of the first synapses in float: graded (real-valued) inputs pass unchanged.
INPUT_MESSAGE_BITS = 24


def _python_version() -> tuple[int, int, int]:
    return tuple(sys.version_info[:3])  # type: ignore[return-value]


def _import_lava_runtime() -> None:
    """Import Lava's runtime, tolerating an already-set multiprocessing start method.

    Lava calls ``multiprocessing.set_start_method('fork')`` when first imported, which raises
    "context has already been set" once anything (e.g. a tqdm progress bar creating its lock)
    has fixed the start method, even to ``'fork'``. During this one import, a request for the
    method already in effect is accepted as a no-op; any other request still raises.
    """
    import multiprocessing as mp

    original = mp.set_start_method

    def set_start_method(method, force=False):
        if not force and mp.get_start_method(allow_none=True) == method:
            return
        original(method, force=force)

    mp.set_start_method = set_start_method
    try:
        import lava.magma.core.run_configs  # noqa: F401
        import lava.magma.runtime.runtime  # noqa: F401
    finally:
        mp.set_start_method = original


def require_lava() -> None:
    """Raise :class:`LavaUnavailableError` unless Lava can be imported here."""
    v = _python_version()
    version = ".".join(str(x) for x in v)
    if tuple(v[:2]) >= (3, 11):
        raise LavaUnavailableError(
            f"Lava (lava-nc 0.10.0) needs Python 3.10, but this is Python {version} "
            f"({sys.executable}). Fix: create a Python 3.10 environment and install "
            "`pip install 'snntorch-async[lava]'` (or run `make test`, which does)."
        )
    try:
        _import_lava_runtime()
    except ImportError as e:
        raise LavaUnavailableError(
            f"Lava (lava-nc) cannot be imported in Python {version} ({e}). Fix: "
            "`pip install 'snntorch-async[lava]'` in a Python 3.10 environment (or run `make test`)."
        ) from None


def lava_available() -> bool:
    """True if :func:`build` can import Lava in this interpreter."""
    try:
        require_lava()
    except LavaUnavailableError:
        return False
    return True


@dataclass(frozen=True, eq=False)
class BuiltNetwork:
    """Lava processes built from a spec for one input sample (run them with :func:`lava_bridge.run`).

    Attributes:
        spec: The spec built.
        source: The input ``RingBuffer`` (data ``[n_in, num_steps]``).
        synapses: Per layer, the ``Dense`` or ``DelayDense`` from the previous layer.
        lifs: Per layer, the ``LIF`` process.
        bias_synapses: Per layer, the bias ``DelayDense`` (``None`` without bias).
        sinks: Per layer, the spike sink ``RingBuffer`` (``None`` where not recorded).
        num_steps: Steps the network is built to run (the input is zero-padded to it).
        run_cfg: The ``Loihi2SimCfg`` (floating point or ``fixed_pt``).
        recurrent_synapses: Per layer, the recurrent ``Dense`` from the layer's ``LIF`` back to
            itself (``None`` for a layer that is not recurrent).
    """

    spec: NetworkSpec
    source: Any
    synapses: tuple
    lifs: tuple
    bias_synapses: tuple
    sinks: tuple
    num_steps: int
    run_cfg: Any
    recurrent_synapses: tuple = ()

    @property
    def anchor(self) -> Any:
        """A process of the network: ``run``/``stop`` on it run/stop the whole network."""
        return self.lifs[-1]


def _param(a: np.ndarray, fixed: bool):
    """A scalar when all neurons share the value (ints for fixed point), else the array."""
    if a.size and np.all(a == a.flat[0]):
        return int(a.flat[0]) if fixed else float(a.flat[0])
    return a.astype(np.int32) if fixed else a.astype(np.float64)


def _input_data(spec: NetworkSpec, sample, num_steps: int | None) -> np.ndarray:
    x = np.asarray(sample.detach().cpu().numpy() if hasattr(sample, "detach") else sample)
    if x.ndim < 1 or tuple(x.shape[1:]) != tuple(spec.input_shape):
        raise SpecFormatError(
            f"build() expected one sample of shape [T, {', '.join(map(str, spec.input_shape))}] "
            f"(time first, no batch); got {list(x.shape)}. Fix: pass inputs[:, b] for sample b."
        )
    T = x.shape[0]
    steps = T + spec.output_lag() if num_steps is None else int(num_steps)
    if steps < T:
        raise SpecFormatError(f"num_steps={steps} is shorter than the input ({T} steps).")
    data = np.zeros((spec.input_size, steps), dtype=np.int32 if spec.fixed_point else np.float64)
    flat = x.reshape(T, -1).T
    if spec.fixed_point:
        if not np.all(flat == np.round(flat)):
            raise SpecFormatError(
                "A fixed-point network takes integer (0/1 spike) inputs; got fractions."
            )
    elif not np.all(np.isfinite(flat)):
        raise SpecFormatError("build() got NaN or infinite input values.")
    data[:, :T] = flat
    return data


def _conv_form(layer, fixed: bool, where: str):
    """The layer's :class:`lava_bridge._conv.ConvLayer` for Lava's ``Conv``, or ``None`` (dense;
    also for a recurrent layer, whose neurons are flat)."""
    if layer.meta.get("conv") is None or layer.delay is not None or layer.recurrent is not None:
        return None
    from ._conv import conv_kernel, conv_layer

    if not fixed:
        return conv_kernel(layer, layer.weight, where)
    if layer.weight_exp != 0:  # Lava's fixed-point Conv applies no exponent
        log.info(
            "%s: weight_exp=%d; built as Dense (Lava's Conv has no exponent).",
            where,
            layer.weight_exp,
        )
        return None
    from .emulator import loihi_weights

    return conv_layer(layer, loihi_weights(layer.weight, layer.num_weight_bits), where)


def build(
    spec: NetworkSpec,
    sample,
    *,
    num_steps: int | None = None,
    record_layers: bool = False,
    conv_as_dense: bool = False,
) -> BuiltNetwork:
    """Build the Lava processes of ``spec`` for one input sample.

    Args:
        spec: A float or fixed-point spec (Loihi limits are checked first).
        sample: One sample ``[T, *input_shape]`` (numpy or torch). It is zero-padded to
            ``num_steps``: Lava's RingBuffer would otherwise repeat it.
        num_steps: Steps to run (default ``T + L``, so the last input reaches the output).
        record_layers: Record every layer's spikes (default: the output layer only).
        conv_as_dense: Build convolution layers as their unrolled ``Dense`` matrices. By
            default a layer that is exactly one convolution (``meta["conv"]`` from ``convert``)
            is built as Lava's ``Conv`` process with ``(W, H, C)`` neurons (fixed point: with
            ``weight_exp = 0`` only; its kernel is the effective weights, see
            ``lava_bridge._conv``); its ports are reshaped so that the rest of the network and
            the sinks see the spec's flat ``C·H·W`` order.

    Raises:
        LoihiLimitError: Out-of-range delays, weights, decays or thresholds (before any Lava
            object exists).
        LavaUnavailableError: Lava cannot be imported (Python ≥ 3.11, or no ``[lava]`` extra).
    """
    if not isinstance(spec, NetworkSpec):
        raise SpecFormatError(f"build() expected a NetworkSpec; got {type(spec).__name__}.")
    check_loihi_limits(spec)
    data = _input_data(spec, sample, num_steps)
    require_lava()
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import DelayDense, Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF

    fixed = spec.fixed_point
    steps = data.shape[1]
    wtype = np.int32 if fixed else np.float64
    source = Source(data=data)
    on = None
    port = source.s_out
    synapses, lifs, biases, sinks, recurrents = [], [], [], [], []
    for i, layer in enumerate(spec.layers):
        n = layer.out_size
        conv = None if conv_as_dense else _conv_form(layer, fixed, f"Layer {i} ('{layer.name}')")
        if conv is None:
            shaped, lif_shape = (lambda a: a), (n,)
            kw: dict = {}
            if fixed:
                kw = dict(weight_exp=layer.weight_exp, num_weight_bits=layer.num_weight_bits)
            elif i == 0:
                kw = dict(num_message_bits=INPUT_MESSAGE_BITS)
            w = layer.weight.astype(wtype)
            if layer.delay is not None:
                syn = DelayDense(weights=w, delays=layer.delay.astype(int), **kw)
            else:
                syn = Dense(weights=w, **kw)
            port.connect(syn.s_in)
        else:
            from lava.proc.conv.process import Conv

            from ._conv import lava_conv_weight, whc

            (C, H, W), (O, Ho, Wo) = conv.in_shape, conv.out_shape
            lif_shape = (Wo, Ho, O)
            shaped = lambda a: whc(a, [O, Ho, Wo]) if isinstance(a, np.ndarray) else a  # noqa: E731
            kw = (
                dict(num_weight_bits=layer.num_weight_bits)
                if fixed
                else dict(num_message_bits=INPUT_MESSAGE_BITS if i == 0 else 0)
            )
            syn = Conv(
                weight=lava_conv_weight(conv.kernel).astype(wtype),
                input_shape=(W, H, C),
                padding=tuple(conv.padding[::-1]),
                stride=tuple(conv.stride[::-1]),
                **kw,
            )
            port.reshape((C, H, W)).transpose([2, 1, 0]).connect(syn.s_in)
        nrn = layer.neuron
        lava_bias = layer.bias is not None and layer.bias_timing == "lava"
        bias_kw: dict = {}
        if lava_bias and fixed:
            bias_kw = dict(bias_mant=shaped(layer.lif_bias_mant().astype(np.int32)), bias_exp=6)
        elif lava_bias:
            bias_kw = dict(bias_mant=shaped(layer.bias.astype(np.float64)))
        lif = LIF(
            shape=lif_shape,
            du=shaped(_param(nrn.du, fixed)),
            dv=shaped(_param(nrn.dv, fixed)),
            vth=shaped(_param(nrn.vth, fixed)),
            name=f"lif{i}",
            **bias_kw,
        )
        syn.a_out.connect(lif.a_in)
        bias_syn = None
        if layer.bias is not None and not lava_bias:
            if on is None:
                on = Source(data=np.ones((1, 1), dtype=wtype))
            bkw = (
                dict(weight_exp=layer.bias_exp, num_weight_bits=layer.num_weight_bits)
                if fixed
                else {}
            )
            bias_syn = DelayDense(
                weights=layer.bias.astype(wtype)[:, None],
                delays=np.full((n, 1), i, dtype=int),
                **bkw,
            )
            on.s_out.connect(bias_syn.s_in)
            bias_out = bias_syn.a_out
            if conv is not None:
                bias_out = bias_out.reshape(tuple(conv.out_shape)).transpose([2, 1, 0])
            bias_out.connect(lif.a_in)
        rec_syn = None
        if layer.recurrent is not None:  # flat neurons (never the Conv form): lif.s_out is [n]
            rkw = (
                dict(weight_exp=layer.weight_exp, num_weight_bits=layer.num_weight_bits)
                if fixed
                else {}
            )
            rec_syn = Dense(weights=layer.recurrent.astype(wtype), name=f"rec{i}", **rkw)
            lif.s_out.connect(rec_syn.s_in)
            rec_syn.a_out.connect(lif.a_in)
        out = lif.s_out if conv is None else lif.s_out.transpose([2, 1, 0]).flatten()
        sink = None
        if record_layers or i == len(spec.layers) - 1:
            sink = Sink(shape=(n,), buffer=steps)
            out.connect(sink.a_in)
        port = out
        synapses.append(syn)
        lifs.append(lif)
        biases.append(bias_syn)
        sinks.append(sink)
        recurrents.append(rec_syn)
    cfg = Loihi2SimCfg(select_tag="fixed_pt") if fixed else Loihi2SimCfg(select_tag="floating_pt")
    log.debug(
        "built %d Lava layers for %d steps (%s)", len(lifs), steps, "fixed_pt" if fixed else "float"
    )
    return BuiltNetwork(
        spec=spec,
        source=source,
        synapses=tuple(synapses),
        lifs=tuple(lifs),
        bias_synapses=tuple(biases),
        sinks=tuple(sinks),
        num_steps=steps,
        run_cfg=cfg,
        recurrent_synapses=tuple(recurrents),
    )
