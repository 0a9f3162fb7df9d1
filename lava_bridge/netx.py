"""Write (and read back) lava-dl's netx HDF5 network description, with h5py only.

lava-dl (``lava.lib.dl.netx.hdf5.Network``) cannot be installed beside our torch, so this module
writes its format from a fixed-point :class:`~lava_bridge.spec.NetworkSpec`. Layout (lava-dl's
netx README and reader, ``hdf5.py`` / ``utils.py``)::

    /layer/<i>/type            b"dense" (fixed-length ascii, shape (1,))
    /layer/<i>/shape           [n]             neurons of the layer
    /layer/<i>/inFeatures      in,  /layer/<i>/outFeatures  n
    /layer/<i>/weight          int [n, in]     effective 8-bit weights (exponent 0)
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
``Wq · 2^weight_exp`` is such an integer matrix; quantize with
``QuantizeSettings(weight_exp=0)`` (or ``QuantizeSettings.slayer()``) to be sure.

Bias: netx gives its ``bias`` to the LIF (``bias_mant``, ``bias_exp = 6``), which adds it to
``v`` from the first step on, while our spec's bias is a synaptic current that reaches layer
``l`` at step ``l + 1`` (with the first input). For Leaky layers (``du = 4095``) the two agree
from step ``l + 1`` on; the first ``l + 1`` steps differ (logged). A bias on a layer whose current
decays slowly (``du < 4095``, Synaptic) is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from snntorch_async._io import atomic_path

from .errors import LoihiLimitError, SpecFormatError
from .limits import check_loihi_limits
from .spec import LayerSpec, NetworkSpec, NeuronSpec

__all__ = ["export_netx", "read_netx"]

log = logging.getLogger(__name__)

_BIAS_LIMIT = 4095  # LIF bias_mant is a 13-bit signed field


def _uniform(a: np.ndarray, what: str, where: str) -> int:
    if a.size and not np.all(a == a.flat[0]):
        raise LoihiLimitError(
            f"{where}: netx stores one {what} per layer, but the neurons have different values "
            f"({int(a.min())}..{int(a.max())}). Fix: give every neuron of the layer the same "
            f"{what} (one beta/alpha/threshold per layer)."
        )
    return int(a.flat[0])


def _effective_weights(layer: LayerSpec, where: str) -> np.ndarray:
    w = layer.weight.astype(np.int64)
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
    return eff


def _ascii(group, name: str, text: str) -> None:
    group.create_dataset(name, (1,), "S10", [text.encode("ascii")])


def export_netx(spec: NetworkSpec, path: str | Path, *, num_steps: int | None = None) -> Path:
    """Write a fixed-point spec as a lava-dl netx HDF5 file.

    Args:
        spec: A fixed-point :class:`~lava_bridge.spec.NetworkSpec` (``quantize(...).spec``).
        path: The file to write (conventionally ``*.net``).
        num_steps: Steps per sample, written as ``/simulation/tSample`` (omitted if ``None``).

    Returns:
        The path written.

    Raises:
        SpecFormatError: The spec is not fixed point.
        LoihiLimitError: A layer has no exact netx form (see the module docstring).
    """
    import h5py

    if not isinstance(spec, NetworkSpec) or not spec.fixed_point:
        raise SpecFormatError(
            "export_netx() writes Loihi fixed-point networks; got "
            f"{'a float NetworkSpec' if isinstance(spec, NetworkSpec) else type(spec).__name__}. "
            "Fix: export_netx(quantize(spec, QuantizeSettings(weight_exp=0)).spec, path)."
        )
    check_loihi_limits(spec)
    path = Path(path)
    rows = []
    for i, layer in enumerate(spec.layers):
        where = f"Layer {i} ('{layer.name}')"
        n = layer.neuron
        du = _uniform(n.du, "du (current decay)", where)
        row = dict(
            weight=_effective_weights(layer, where),
            du=du,
            dv=_uniform(n.dv, "dv (voltage decay)", where),
            vth=_uniform(n.vth, "vth (threshold)", where),
        )
        if layer.bias is not None:
            if du != 4095:
                raise LoihiLimitError(
                    f"{where}: netx adds a layer's bias to the voltage, our spec to the current; "
                    f"they agree only when the current clears each step (du = 4095), here du = "
                    f"{du}. Fix: train this Synaptic layer without bias "
                    "(nn.Linear(..., bias=False))."
                )
            b = layer.bias.astype(np.int64)
            b = b << layer.bias_exp if layer.bias_exp >= 0 else b >> -layer.bias_exp
            if np.abs(b).max(initial=0) > _BIAS_LIMIT:
                raise LoihiLimitError(
                    f"{where}: the effective bias reaches {int(np.abs(b).max())}, beyond netx's "
                    f"13-bit bias_mant (±{_BIAS_LIMIT}). Fix: quantize with a smaller scale."
                )
            row["bias"] = b
            log.warning(
                "%s: netx applies the bias to v from step 0; our spec's bias current reaches "
                "layer %d at step %d: spikes of the first %d steps may differ.",
                where,
                i,
                i + 1,
                i + 1,
            )
        rows.append(row)
    with atomic_path(path, what="netx file") as tmp, h5py.File(tmp, "w") as f:
        layers = f.create_group("layer")
        for i, (layer, row) in enumerate(zip(spec.layers, rows)):
            g = layers.create_group(str(i))
            _ascii(g, "type", "dense")
            g.create_dataset("shape", data=np.array([layer.out_size]))
            g.create_dataset("inFeatures", data=layer.in_size)
            g.create_dataset("outFeatures", data=layer.out_size)
            g.create_dataset("weight", data=row["weight"])
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
    log.info("wrote netx file %s (%d dense layers)", path, spec.num_layers)
    return path


def _text(ds) -> str:
    v = ds[()]
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0]
    return v.decode("ascii") if isinstance(v, bytes) else str(v)


def read_netx(path: str | Path) -> NetworkSpec:
    """Read a netx file of dense CUBA layers back into a fixed-point spec (``weight_exp = 0``).

    The weights are the file's effective integers and ``du = iDecay - 1``, ``dv = vDecay``,
    ``vth = vThMant`` (lava-dl's reading). A ``bias`` becomes the spec's bias current
    (``bias_exp = 0``; see the module docstring for the timing of its first steps).

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
            if kind != "dense":
                raise SpecFormatError(
                    f"'{path}': layer {i} has type '{kind}'; read_netx reads dense layers only."
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
                )
            )
        dt = float(f["simulation/Ts"][()]) if "simulation/Ts" in f else 1.0
    if not layers:
        raise SpecFormatError(f"'{path}' has no layers.")
    return NetworkSpec(
        layers=tuple(layers), input_shape=(layers[0].in_size,), dt=dt, fixed_point=True
    )
