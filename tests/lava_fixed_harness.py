"""Test helper: run a fixed-point NetworkSpec in real Lava (``select_tag="fixed_pt"``).

Builds ``RingBuffer → Dense/DelayDense → LIF → ...`` directly from a fixed-point
:class:`lava_bridge.NetworkSpec` with Lava's own processes (one sample at a time), following the
spec's documented meaning: the layer bias is an always-on ``RingBuffer`` channel through a
``DelayDense`` ``[out, 1]`` of delay = layer index and ``weight_exp = bias_exp`` (a layer with
``bias_timing="lava"``: the LIF's own ``bias_mant = bias << bias_exp``, ``bias_exp = 6``); a
recurrent layer gets a ``Dense(recurrent)`` from its ``LIF.s_out`` back to its ``a_in`` with the
layer's ``weight_exp`` and ``num_weight_bits``. Every layer's
spikes are recorded with sink ``RingBuffer``s and, on request, ``u``/``v`` with ``Monitor``s;
``stop()`` is always called. It is the independent reference the emulator is compared against
and deliberately does not use ``lava_bridge.build``; keep the networks tiny (Lava takes a few ms
per step and ~0.3 s to compile). Layers given a kernel in ``conv_kernels`` are Lava's ``Conv``
process instead (``lava.proc.conv``, no exponent: only for ``weight_exp = 0`` and kernels on
Lava's weight grid) with ``(W, H, C)`` neurons; their ports are transposed to the spec's flat
``C·H·W`` order.
"""

from __future__ import annotations

import numpy as np
import pytest

from lava_bridge import lava_available

# Lava sets the multiprocessing start method when first imported, which fails once anything
# (e.g. a tqdm lock in an earlier test) has set it: import it now, tolerantly.
lava_available()  # imports Lava now, before anything sets the multiprocessing start method

pytest.importorskip(
    "lava.magma.core.run_configs",
    reason="Lava is not installed: run `make test`, or install the [lava] extra on Python 3.10",
)


def _scalar(a, what: str) -> int:
    a = np.asarray(a)
    if a.size and not np.all(a == a.flat[0]):
        raise ValueError(f"the Lava harness needs one {what} per layer; got {a}")
    return int(a.flat[0])


def _whc(port, chw):
    """A port of ``C·H·W`` flat neurons (C order) as Lava's ``(W, H, C)`` layout, or back."""
    return port.reshape(tuple(chw)).transpose([2, 1, 0])


def run_lava_fixed(spec, x: np.ndarray, *, record_state: bool = False, conv_kernels=None):
    """Run one sample ``x`` ``[T, n_in]`` (0/1) of a fixed-point spec through Lava.

    ``conv_kernels``: ``{layer index: kernel [O, C, kh, kw]}`` (torch layout) for layers to build
    as Lava's ``Conv``, with the geometry of ``layer.meta["conv"]``.

    Returns:
        ``(spikes, u, v)``: lists over layers of int64 arrays ``[T, n_l]`` (``u``/``v`` are
        ``None`` unless ``record_state``).
    """
    lava_available()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense, DelayDense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.proc.monitor.process import Monitor

    T = x.shape[0]
    src = RingBuffer(data=np.ascontiguousarray(x.reshape(T, -1).T).astype(np.int32))
    on = None
    port = src.s_out
    lifs, sinks, monitors, shapes = [], [], [], []
    conv_kernels = conv_kernels or {}
    for i, layer in enumerate(spec.layers):
        n = layer.out_size
        kw = dict(weight_exp=int(layer.weight_exp), num_weight_bits=int(layer.num_weight_bits))
        w = np.asarray(layer.weight).astype(np.int32)
        out_chw = None
        if i in conv_kernels:
            g = layer.meta["conv"]
            (C, H, W), out_chw = g["in_shape"], g["out_shape"]
            k = np.asarray(conv_kernels[i])
            # Lava's Conv weight is (O, kx, ky, C), flipped in both spatial axes
            conn = Conv(
                weight=np.ascontiguousarray(k[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)).astype(
                    np.int32
                ),
                input_shape=(W, H, C),
                stride=tuple(g["stride"][::-1]),
                padding=tuple(g["padding"][::-1]),
                num_weight_bits=int(layer.num_weight_bits),
            )
            _whc(port, (C, H, W)).connect(conn.s_in)
            lif_shape = tuple(out_chw[::-1])
        elif layer.delay is not None:
            conn = DelayDense(weights=w, delays=np.asarray(layer.delay).astype(int), **kw)
            port.connect(conn.s_in)
            lif_shape = (n,)
        else:
            conn = Dense(weights=w, **kw)
            port.connect(conn.s_in)
            lif_shape = (n,)
        lava_bias = layer.bias is not None and layer.bias_timing == "lava"
        bias_kw = {}
        if lava_bias:
            b = np.asarray(layer.bias).astype(np.int64)
            b = b << layer.bias_exp if layer.bias_exp >= 0 else b >> -layer.bias_exp
            bias_kw = dict(bias_mant=b.astype(np.int32), bias_exp=6)
        lif = LIF(
            shape=lif_shape,
            du=_scalar(layer.neuron.du, "du"),
            dv=_scalar(layer.neuron.dv, "dv"),
            vth=_scalar(layer.neuron.vth, "vth"),
            **bias_kw,
        )
        sink = Sink(shape=(n,), buffer=T)
        conn.a_out.connect(lif.a_in)
        if layer.bias is not None and not lava_bias:
            if on is None:
                on = RingBuffer(data=np.ones((1, T), dtype=np.int32))
            bias = DelayDense(
                weights=np.asarray(layer.bias).astype(np.int32)[:, None],
                delays=np.full((n, 1), i, dtype=int),
                weight_exp=int(layer.bias_exp),
                num_weight_bits=int(layer.num_weight_bits),
            )
            on.s_out.connect(bias.s_in)
            (bias.a_out if out_chw is None else _whc(bias.a_out, out_chw)).connect(lif.a_in)
        if getattr(layer, "recurrent", None) is not None:
            rec = Dense(weights=np.asarray(layer.recurrent).astype(np.int32), **kw)
            lif.s_out.connect(rec.s_in)
            rec.a_out.connect(lif.a_in)
        port = lif.s_out if out_chw is None else lif.s_out.transpose([2, 1, 0]).flatten()
        port.connect(sink.a_in)
        if record_state:
            mu, mv = Monitor(), Monitor()
            mu.probe(lif.u, T)
            mv.probe(lif.v, T)
            monitors.append((mu, mv))
        lifs.append(lif)
        sinks.append(sink)
        shapes.append(out_chw)
    try:
        src.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        spikes = [s.data.get().T.astype(np.int64) for s in sinks]
        us = vs = None
        if record_state:
            us, vs = [], []
            for lif, (mu, mv), chw in zip(lifs, monitors, shapes):
                for rec, m, var in ((us, mu, "u"), (vs, mv, "v")):
                    a = np.asarray(m.get_data()[lif.name][var]).astype(np.int64)
                    if chw is not None:  # [T, W, H, C] -> [T, C·H·W] (C order)
                        a = a.reshape(T, *chw[::-1]).transpose(0, 3, 2, 1).reshape(T, -1)
                    rec.append(a)
    finally:
        src.stop()
    return spikes, us, vs
