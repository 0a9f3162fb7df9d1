"""Write (and read back) lava-dl's netx HDF5 network description, with h5py only.

This module writes the format that lava-dl's reader (``lava.lib.dl.netx.hdf5.Network``) loads,
from a :class:`~lava_bridge.spec.NetworkSpec` (the tests run our files in that reader and
compare with :func:`lava_bridge.emulate`, spike for spike). Layout (lava-dl's netx README and
reader, ``hdf5.py`` / ``utils.py``)::

    /layer/<i>/type            b"dense" (b"dense_rec": a recurrent layer; fixed-length ascii, (1,))
    /layer/<i>/shape           [n]             neurons of the layer
    /layer/<i>/inFeatures      in,  /layer/<i>/outFeatures  n
    /layer/<i>/weight          int [n, in]     effective 8-bit weights (exponent 0)
    /layer/<i>/weight_rec      int [n, n]      effective recurrent weights (only dense_rec)
    /layer/<i>/delay           int [n, in]     synaptic delays 0..62 (only with delays)
    /layer/<i>/bias            int [n]         (only with bias; see below)
    /layer/<i>/neuron/type     b"CUBA"
    /layer/<i>/neuron/iDecay   du + 1          (netx: LIF du = iDecay - 1)
    /layer/<i>/neuron/vDecay   dv
    /layer/<i>/neuron/vThMant  vth             (Lava compares v > vThMant << 6)
    /layer/<i>/neuron/refDelay 1
    /layer/<i>/neuron/gradedSpike False
    /simulation/Ts             dt,  /simulation/tSample  steps per sample (if given)

The netx reader has no weight exponent: it stores *effective* integer weights and re-derives
mantissa, exponent and bit count itself (``optimize_weight_bits``), which is exact for integer
weights in ``[-256, 254]`` (mixed sign) or 8-bit one-signed. So a layer is written only if
``Wq · 2^weight_exp`` is such an integer matrix. :func:`export_netx` takes care of that grid: a
float spec is quantized on :data:`NETX_GRID` (weight exponent 0); a fixed-point spec is written
as it is if it has an exact netx form.

Recurrent layers (``LayerSpec.recurrent``) are written as lava-dl's ``dense_rec`` layers: its reader
(``RecurrentDense``) builds the layer's ``Dense`` and a second ``Dense(weight_rec)`` from the
neurons' ``s_out`` back to their ``a_in``, exactly the spec's recurrent hop. It reads ``weight``
and ``weight_rec`` as *one* matrix ``[weight | weight_rec]`` (one exponent and bit count for both:
the reason ``quantize`` puts the recurrent Dense on the layer's grid), so the exactness rules
above apply to the concatenation; and it scales that matrix by ``2^k``, the largest power of two
that keeps it in its sign mode's 8-bit range, before each ``Dense`` keeps its own sign mode. A
matrix (or part) that is all ≤ 0 and so reaches ``-256`` is clipped to ``-255`` by Lava's inhibitory
``Dense``: such a layer is refused (``quantize`` with the default grid never makes one). A
recurrent layer with synaptic delays is refused: ``RecurrentDense`` gives the recurrent Dense the
feed-forward delay matrix.

Bias: netx gives its ``bias`` to the LIF (``bias_mant``, ``bias_exp = 6``), which adds it to
``v`` from the first step on: the spec's ``bias_timing="lava"`` (convert with
``bias_timing=BiasTiming.LAVA``), written exactly. A biased ``"synaptic"`` layer (a current that
reaches layer ``l`` at step ``l + 1``) has no netx form: it is refused, or, on the explicit opt-in
``approximate_bias_timing=inputs``, written with Lava's timing after measuring, on those inputs,
how many spikes the change moves (:func:`bias_timing_mismatch`, both timings emulated); the
measured count is logged, never guessed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from typing import NamedTuple

from snntorch_async._io import atomic_path

from .errors import BiasTimingError, LoihiLimitError, SpecFormatError
from .limits import check_loihi_limits
from ._quantize import QuantizeSettings, quantize
from .spec import LayerSpec, NetworkSpec, NeuronSpec

__all__ = [
    "NETX_GRID",
    "TimingMismatch",
    "bias_timing_mismatch",
    "export_netx",
    "netx_timing_conflicts",
    "read_netx",
]

log = logging.getLogger(__name__)


def _uniform(a: np.ndarray, what: str, where: str) -> int:
    if a.size and not np.all(a == a.flat[0]):
        raise LoihiLimitError(
            f"{where}: netx stores one {what} per layer, but the neurons have different values "
            f"({int(a.min())}..{int(a.max())}). Fix: give every neuron of the layer the same "
            f"{what} (one beta/alpha/threshold per layer)."
        )
    return int(a.flat[0])


def _effective_weights(layer: LayerSpec, where: str) -> np.ndarray:
    """The effective integer weights netx stores: ``[weight | recurrent]`` for a recurrent layer
    (one matrix to lava-dl's reader), checked for an exact netx form."""
    w = layer.joint_weight().astype(np.int64)
    e = layer.weight_exp
    if e >= 0:
        eff = w << e
    else:
        if np.any(w % (1 << -e)):
            raise LoihiLimitError(
                f"{where}: weight_exp={e} with mantissas that are not multiples of 2^{-e}; netx "
                "stores integer weights without an exponent, so this layer has no exact netx "
                "form. Fix: quantize with QuantizeSettings(weight_exp=0) (or "
                "QuantizeSettings.slayer()) before exporting to netx."
            )
        eff = w >> -e
    mixed = eff.size and eff.min() < 0 < eff.max()
    lo, hi = (-256, 254) if mixed else (-255, 255)
    if eff.size and (eff.min() < lo or eff.max() > hi):
        raise LoihiLimitError(
            f"{where}: the effective weights Wq·2^{e} reach {int(eff.min())}..{int(eff.max())}, "
            f"outside netx's 8-bit range {lo}..{hi} (netx has no weight exponent). Fix: quantize "
            "with QuantizeSettings(weight_exp=0) before exporting to netx."
        )
    parts = [("weights", eff[:, : layer.in_size])]
    if layer.recurrent is not None:
        parts = [
            ("feed-forward weights", parts[0][1]),
            ("recurrent weights", eff[:, layer.in_size :]),
        ]
    k = _reader_shift(eff)
    for what, part in parts:
        if part.size and part.max() <= 0 and part.min() < 0 and part.min() * 2**k == -256:
            raise LoihiLimitError(
                f"{where}: lava-dl's netx reader scales the layer's weights by 2^{k} to fill 8 "
                f"bits, which puts the {what} (all <= 0, minimum {int(part.min())}) at -256, and "
                "Lava's inhibitory Dense clips that to -255: the file would not run as emulated. "
                "Fix: quantize with QuantizeSettings(weight_exp=0), whose full-range grid keeps "
                "such mantissas >= -255."
            )
    return eff


def _reader_shift(eff: np.ndarray) -> int:
    """The ``k`` lava-dl's netx reader (0.6.0) scales an integer matrix by: the largest power of
    two keeping it in ``[-256, 254]`` (mixed signs), ``[0, 255]`` or ``[-256, 0]``."""
    if not eff.size or not np.any(eff):
        return 0
    lo, hi = int(eff.min()), int(eff.max())
    top, bottom = (254, -256) if lo < 0 < hi else (255, -256)
    k = 0
    while hi * 2 ** (k + 1) <= top and lo * 2 ** (k + 1) >= bottom:
        k += 1
    return k


#: The grid :func:`export_netx` quantizes a float spec on: netx has no weight exponent.
NETX_GRID = QuantizeSettings(weight_exp=0)


class TimingMismatch(NamedTuple):
    """Spikes moved by giving every layer Lava's bias timing (:func:`bias_timing_mismatch`).

    Attributes:
        mismatches: Output spike slots (step, sample, neuron) that differ.
        compared: Output spike slots compared.
        layer_mismatches: Per layer, the spike slots that differ.
    """

    mismatches: int
    compared: int
    layer_mismatches: tuple[int, ...]

    def __str__(self) -> str:
        rate = 100 * self.mismatches / max(self.compared, 1)
        return (
            f"{self.mismatches} / {self.compared} output spike slots differ ({rate:.2f} %); per "
            f"layer {list(self.layer_mismatches)}"
        )


def _with_timing(spec: NetworkSpec, timing: str) -> NetworkSpec:
    from dataclasses import replace

    return replace(spec, layers=tuple(replace(l, bias_timing=timing) for l in spec.layers))


def bias_timing_mismatch(spec: NetworkSpec, inputs) -> TimingMismatch:
    """Measure what Lava's bias timing changes: ``spec`` emulated as it is and with ``"lava"``.

    Args:
        spec: A fixed-point spec.
        inputs: Binary spikes ``[T, B, *input_shape]`` (torch tensor or numpy array).

    Returns:
        A :class:`TimingMismatch` (0 mismatches when the spec already has Lava's timing).
    """
    import torch

    from .emulator import emulate

    x = torch.as_tensor(np.asarray(inputs) if not torch.is_tensor(inputs) else inputs)
    ours = emulate(spec, x)
    lava = emulate(_with_timing(spec, "lava"), x)
    per_layer = tuple(int((a != b).sum()) for a, b in zip(ours.layer_spikes, lava.layer_spikes))
    return TimingMismatch(
        mismatches=per_layer[-1], compared=int(ours.spikes.numel()), layer_mismatches=per_layer
    )


def netx_timing_conflicts(spec: NetworkSpec) -> list[int]:
    """Indices of the layers whose bias netx cannot hold as timed: biased layers whose timing is
    not Lava's (netx gives a layer's bias to the LIF, into v from step 0)."""
    return [i for i, l in enumerate(spec.layers) if l.bias is not None and l.bias_timing != "lava"]


def _netx_spec(spec, approximate_bias_timing) -> NetworkSpec:
    """The fixed-point, Lava-timed spec that is written (quantized, measured as needed)."""
    if not isinstance(spec, NetworkSpec):
        raise SpecFormatError(
            f"export_netx() expected a lava_bridge.NetworkSpec; got {type(spec).__name__}. Fix: "
            "export_netx(lava_bridge.convert(model, input_shape, bias_timing='lava'), path)."
        )
    if not spec.fixed_point:
        spec = quantize(spec, NETX_GRID).spec
    late = [f"{i} ('{spec.layers[i].name}')" for i in netx_timing_conflicts(spec)]
    if not late:
        return spec
    if approximate_bias_timing is None:
        raise BiasTimingError(
            f"export_netx(): layers {', '.join(late)} carry their bias with bias_timing "
            "'synaptic' (a current from the step the first input arrives), but netx gives a "
            "layer's bias to Lava's LIF, which adds it to v from step 0; the early bias stays in "
            "the membranes and moves spikes long after. Fix: convert with "
            "bias_timing=BiasTiming.LAVA (and train with Pipelined(bias_timing=BiasTiming.LAVA) "
            "for hardware), or pass approximate_bias_timing=inputs to write Lava's timing anyway "
            "and log the spike mismatch measured on those inputs."
        )
    measured = bias_timing_mismatch(spec, approximate_bias_timing)
    log.warning(
        "export_netx: layers %s written with Lava's bias timing (into v from step 0) instead of "
        "'synaptic'; measured on the given inputs (emulate, both timings): %s.",
        ", ".join(late),
        measured,
    )
    return _with_timing(spec, "lava")


def _ascii(group, name: str, text: str) -> None:
    group.create_dataset(name, (1,), "S10", [text.encode("ascii")])


def export_netx(
    spec: NetworkSpec,
    path: str | Path,
    *,
    num_steps: int | None = None,
    approximate_bias_timing=None,
    conv_as_dense: bool = False,
) -> Path:
    """Write a spec as a lava-dl netx HDF5 file (nothing is written if it has no exact form).

    Args:
        spec: A float spec (quantized here on :data:`NETX_GRID`, weight exponent 0) or a
            fixed-point spec with an exact netx form. Biased layers need
            ``bias_timing="lava"``.
        path: The file to write (conventionally ``*.net``).
        num_steps: Steps per sample, written as ``/simulation/tSample`` (omitted if ``None``).
        approximate_bias_timing: Opt-in for biased ``"synaptic"`` layers: inputs
            ``[T, B, *input_shape]`` (0/1) on which the mismatch of writing Lava's timing is
            measured and logged (see :func:`bias_timing_mismatch`).
        conv_as_dense: Write convolutional layers as unrolled ``dense`` layers. By default the
            leading layers that are exactly one convolution (``meta["conv"]`` from ``convert``,
            see ``lava_bridge._conv``) are written as netx ``conv`` layers (an ``input``
            entry with the shape first, a ``flatten`` before the first dense layer); a netx
            file with conv layers takes its input as Lava's ``(x, y, c)`` = ``(W, H, C)`` array.

    Returns:
        The path written.

    Raises:
        SpecFormatError: Not a NetworkSpec.
        BiasTimingError: A biased layer with ``"synaptic"`` timing, without the opt-in.
        LoihiLimitError: A layer has no exact netx form (see the module docstring).
    """
    import h5py

    spec = _netx_spec(spec, approximate_bias_timing)
    check_loihi_limits(spec)
    path = Path(path)
    rows = []
    for i, layer in enumerate(spec.layers):
        where = f"Layer {i} ('{layer.name}')"
        n = layer.neuron
        du = _uniform(n.du, "du (current decay)", where)
        if layer.recurrent is not None and layer.delay is not None:
            raise LoihiLimitError(
                f"{where}: a recurrent layer with synaptic delays has no netx form: lava-dl's "
                "dense_rec reader gives the recurrent Dense the feed-forward delay matrix. Fix: "
                "remove the delays of recurrent layers (DelayedLinear before a non-recurrent "
                "neuron), or save the .npz spec instead."
            )
        eff = _effective_weights(layer, where)
        row = dict(
            weight=eff[:, : layer.in_size],
            weight_rec=None if layer.recurrent is None else eff[:, layer.in_size :],
            du=du,
            dv=_uniform(n.dv, "dv (voltage decay)", where),
            vth=_uniform(n.vth, "vth (threshold)", where),
        )
        if layer.bias is not None:  # "lava" timing (checked above), range by check_loihi_limits
            row["bias"] = layer.lif_bias_mant()
        rows.append(row)
    convs: list = []  # the leading layers written as netx conv (nothing after a dense)
    if not conv_as_dense:
        from ._conv import conv_layer
        from .emulator import loihi_weights

        for i, layer in enumerate(spec.layers):
            c = None
            if layer.weight_exp == 0 and layer.recurrent is None:
                eff = loihi_weights(layer.weight, layer.num_weight_bits)
                c = conv_layer(layer, eff, f"Layer {i} ('{layer.name}')")
            if c is None:
                break
            convs.append(c)
    with atomic_path(path, what="netx file") as tmp, h5py.File(tmp, "w") as f:
        layers = f.create_group("layer")
        entries = iter(range(3 * len(rows) + 2))
        if convs:
            g = layers.create_group(str(next(entries)))
            _ascii(g, "type", "input")
            g.create_dataset("shape", data=np.array(convs[0].in_shape))
        for i, (layer, row) in enumerate(zip(spec.layers, rows)):
            if convs and i == len(convs):
                _ascii(layers.create_group(str(next(entries))), "type", "flatten")
            g = layers.create_group(str(next(entries)))
            if i < len(convs):
                c = convs[i]
                _ascii(g, "type", "conv")
                g.create_dataset("shape", data=np.array(c.out_shape))
                g.create_dataset("weight", data=c.kernel)
                g.create_dataset("stride", data=np.array(c.stride))
                g.create_dataset("padding", data=np.array(c.padding))
                g.create_dataset("dilation", data=np.array([1, 1]))
                g.create_dataset("groups", data=1)
                if c.bias is not None:
                    g.create_dataset("bias", data=c.bias)
            else:
                _ascii(g, "type", "dense" if row["weight_rec"] is None else "dense_rec")
                g.create_dataset("shape", data=np.array([layer.out_size]))
                g.create_dataset("inFeatures", data=layer.in_size)
                g.create_dataset("outFeatures", data=layer.out_size)
                g.create_dataset("weight", data=row["weight"])
                if row["weight_rec"] is not None:
                    g.create_dataset("weight_rec", data=row["weight_rec"])
                if layer.delay is not None:
                    g.create_dataset("delay", data=layer.delay.astype(np.int64))
                if "bias" in row:
                    g.create_dataset("bias", data=row["bias"])
            nrn = g.create_group("neuron")
            _ascii(nrn, "type", "CUBA")
            nrn.create_dataset("iDecay", data=row["du"] + 1)
            nrn.create_dataset("vDecay", data=row["dv"])
            nrn.create_dataset("vThMant", data=row["vth"])
            nrn.create_dataset("refDelay", data=1)
            nrn.create_dataset("gradedSpike", data=False)
        sim = f.create_group("simulation")
        sim.create_dataset("Ts", data=float(spec.dt))
        if num_steps is not None:
            sim.create_dataset("tSample", data=int(num_steps))
    log.info(
        "wrote netx file %s (%d conv, %d dense layers)",
        path,
        len(convs),
        spec.num_layers - len(convs),
    )
    return path


def _text(ds) -> str:
    v = ds[()]
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0]
    return v.decode("ascii") if isinstance(v, bytes) else str(v)


def read_netx(path: str | Path) -> NetworkSpec:
    """Read a netx file of dense (and ``dense_rec``) CUBA layers back into a fixed-point spec
    (``weight_exp = 0``; ``weight_rec`` becomes ``LayerSpec.recurrent``).

    The weights are the file's effective integers and ``du = iDecay - 1``, ``dv = vDecay``,
    ``vth = vThMant`` (lava-dl's reading). A ``bias`` becomes a ``bias_timing="lava"`` bias
    (``bias_exp = 0``: the LIF's ``bias_mant``, as netx gives it).

    Raises:
        SpecFormatError: The file is not a netx description of dense CUBA layers.
    """
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except (OSError, FileNotFoundError) as e:
        raise SpecFormatError(f"'{path}' cannot be opened as an HDF5 netx file ({e}).") from None
    with f:
        if "layer" not in f:
            raise SpecFormatError(
                f"'{path}' is HDF5 but has no /layer group: not a netx network description."
            )
        g = f["layer"]
        layers = []
        for i in range(len(g)):
            lg = g[str(i)]
            kind = _text(lg["type"])
            if kind not in ("dense", "dense_rec"):
                raise SpecFormatError(
                    f"'{path}': layer {i} has type '{kind}'; read_netx reads files of dense (and "
                    "dense_rec) layers only. Fix: write the file with export_netx(..., "
                    "conv_as_dense=True) to read it back, or load the .npz spec."
                )
            ng = lg["neuron"]
            if _text(ng["type"]) not in ("CUBA", "LOIHI"):
                raise SpecFormatError(
                    f"'{path}': layer {i} has neuron type '{_text(ng['type'])}'; expected CUBA."
                )
            w = np.asarray(lg["weight"][()]).astype(np.int64)
            n = int(np.prod(lg["shape"][()]))
            w = w.reshape(n, -1)
            full = np.ones(n, dtype=np.int64)
            layers.append(
                LayerSpec(
                    name=f"netx{i}",
                    weight=w,
                    neuron=NeuronSpec(
                        du=full * (int(ng["iDecay"][()]) - 1),
                        dv=full * int(ng["vDecay"][()]),
                        vth=full * int(ng["vThMant"][()]),
                    ),
                    shape=(n,),
                    delay=(
                        np.asarray(lg["delay"][()]).astype(np.int64).reshape(n, -1)
                        if "delay" in lg
                        else None
                    ),
                    bias=np.asarray(lg["bias"][()]).astype(np.int64) if "bias" in lg else None,
                    source="dense",
                    bias_timing="lava",
                    recurrent=(
                        np.asarray(lg["weight_rec"][()]).astype(np.int64).reshape(n, n)
                        if kind == "dense_rec"
                        else None
                    ),
                )
            )
        dt = float(f["simulation/Ts"][()]) if "simulation/Ts" in f else 1.0
    if not layers:
        raise SpecFormatError(f"'{path}' has no layers.")
    return NetworkSpec(
        layers=tuple(layers), input_shape=(layers[0].in_size,), dt=dt, fixed_point=True
    )
