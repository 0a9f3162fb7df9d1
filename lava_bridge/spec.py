"""A plain-data network spec: what the Lava bridge builds, emulates, quantizes and saves.

The spec depends on numpy only (no torch, no Lava). It describes a layered network of Lava
``LIF`` neurons connected by ``Dense`` / ``DelayDense`` synapses (each layer fed by the previous
one and, if recurrent, by itself), in *Lava's* terms::

    layer l, per time step s (s = 0, 1, ...):
        a[s] = Σ_j weight[i, j] · src_j[s - 1 - delay[i, j]]      (one hop = one step, + delay)
             + Σ_k recurrent[i, k] · spk_k[s - 1]  (a recurrent layer: Dense from itself)
             + bias[i] · [s ≥ l + 1]              (bias_timing "synaptic": channel of delay l)
        u[s] = u[s-1] · (1 - du) + a[s]
        v[s] = v[s-1] · (1 - dv) + u[s]
             + bias[i]                            (bias_timing "lava": LIF bias, every s ≥ 0)
        spike if v[s] > vth;  spiking neurons set v ← 0 (u is not reset)

``src`` is layer l-1's spikes, or the network input for layer 0, and ``spk`` the layer's own spikes
(``LIF.s_out → Dense(recurrent) → LIF.a_in``: one step, like every hop). A RingBuffer source sends input
``x[t]`` at step t, so it reaches layer 0 at step t+1 and the output layer at step t+L).
Each layer records its *bias timing* (``LayerSpec.bias_timing``, the token of
:class:`snntorch_async.BiasTiming`): ``"synaptic"`` (the default) makes the bias a synaptic
current (into ``u``, as snnTorch adds it to the input current), carried by an always-on input
channel through a ``DelayDense`` of delay l, so it reaches layer l together with the first input
(the "wavefront"); a converted snnTorch model (zero reset, ``reset_delay=False``) then runs in
Lava exactly as in snnTorch, shifted by L steps. ``"lava"`` makes it Lava's own LIF bias
(``bias_mant``), added to ``v`` from step 0, as lava-dl's netx files do; it reproduces
``Pipelined(bias_timing=BiasTiming.LAVA)``.

Float and fixed-point specs (``NetworkSpec.fixed_point``) share the fields; the field docstrings
say what each holds in both. Fixed-point values are integers in Lava's ``fixed_pt`` units:

* ``LayerSpec.weight``: int weight mantissas (8-bit, ``num_weight_bits``) and ``weight_exp``: Lava
  ``Dense.weight_exp`` (the accumulated sum is shifted by it; arithmetic, floor).
* ``LayerSpec.recurrent``: int mantissas of the recurrent ``Dense``, which shares the layer's
  ``weight_exp`` and ``num_weight_bits`` (one grid for the layer, as netx's ``dense_rec``).
* ``LayerSpec.bias``: int mantissas and ``bias_exp``; ``bias << bias_exp`` is the bias in ``a``
  units (like an accumulated weight sum). ``"synaptic"``: the always-on channel's weights and its
  ``weight_exp`` (a second ``DelayDense``, with Dense's sign mode and truncation). ``"lava"``:
  the LIF gets ``bias_mant = bias << bias_exp`` and ``bias_exp = 6`` (v units), as netx does.
* ``NeuronSpec.du``, ``dv``: 12-bit ints 0..4095 (4095 = the current clears each step).
* ``NeuronSpec.vth``: the threshold mantissa (Lava compares ``v > vth << 6``).

Save and load with :meth:`NetworkSpec.save` / :func:`load` (one ``.npz``, ``allow_pickle=False``,
versioned).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from snntorch_async._io import atomic_path

from .errors import SpecFormatError, SpecVersionError

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "BIAS_TIMINGS",
    "MAX_DELAY",
    "NEURON_KINDS",
    "RESET_RULES",
    "SOURCE_KINDS",
    "RECURRENT_FORMS",
    "LayerSpec",
    "NetworkSpec",
    "NeuronSpec",
    "load",
]

#: Identifies our ``.npz`` files.
FORMAT_NAME = "snntorch-async-network-spec"
#: Bumped whenever the file layout or the meaning of a field changes. Version 2 added each
#: layer's ``bias_timing``; version 1 files are read as ``"synaptic"`` (what they meant).
#: Version 3 added each layer's optional ``recurrent`` matrix; older files have none.
FORMAT_VERSION = 3
#: Versions :func:`load` reads.
READABLE_VERSIONS = (1, 2, 3)
#: Largest synaptic delay (in time steps) that Lava runs: 63 is accepted by Lava's model but 64
#: hangs its child process, and lava-dl netx clamps at 62.
MAX_DELAY = 62
#: The reset rules a spec can record (``NeuronSpec.source_reset``).
RESET_RULES = ("zero", "subtract", "none")
#: The snnTorch neuron a layer came from.
NEURON_KINDS = ("leaky", "synaptic")
#: The bias timings a layer can record: the tokens (``.value``) of ``snntorch_async.BiasTiming``,
#: which the spec cannot import (it stays free of torch); a test pins their equality.
BIAS_TIMINGS = ("synaptic", "lava")
#: How a layer's dense weight matrix was made.
SOURCE_KINDS = ("linear", "delayed-linear", "conv2d-as-dense", "dense")
#: The snnTorch recurrent connection a ``LayerSpec.recurrent`` matrix came from, recorded in
#: ``LayerSpec.meta["recurrent"]`` by ``convert`` (``"one-to-one"``: ``diag(V)``).
RECURRENT_FORMS = ("all-to-all", "one-to-one")


def _arr(value: Any, *, fixed: bool, what: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A read-only copy of ``value`` as float64 (float spec) or int64 (fixed point)."""
    a = np.asarray(value)
    if a.dtype == object:
        raise SpecFormatError(f"{what}: expected a numeric array, got an object array.")
    if fixed:
        if a.dtype.kind == "f":
            if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
                raise SpecFormatError(
                    f"{what}: a fixed-point spec holds integers; got non-integer values. Fix: "
                    "quantize the spec with lava_bridge.quantize(spec)."
                )
        elif a.dtype.kind not in "iub":
            raise SpecFormatError(f"{what}: expected integers, got dtype {a.dtype}.")
        a = a.astype(np.int64)
    else:
        if a.dtype.kind not in "fiub":
            raise SpecFormatError(f"{what}: expected real numbers, got dtype {a.dtype}.")
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise SpecFormatError(f"{what}: expected finite values, got NaN or infinity.")
    if shape is not None and a.shape != shape:
        raise SpecFormatError(f"{what}: expected shape {list(shape)}, got {list(a.shape)}.")
    a = a.copy()
    a.setflags(write=False)
    return a


def _arrays_equal(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))


@dataclass(frozen=True, kw_only=True, eq=False)
class NeuronSpec:
    """Per-neuron LIF parameters of one layer (Lava ``LIF``), arrays of shape ``[n]``.

    Attributes:
        du: Current decay. Float: ``1 - alpha`` (``1.0`` for Leaky: the current clears each
            step). Fixed point: int 0..4095 (Leaky: 4095).
        dv: Voltage decay. Float: ``1 - beta``. Fixed point: int 0..4095.
        vth: Threshold. Float: snnTorch's threshold. Fixed point: the mantissa (compared as
            ``v > vth << 6``).
        kind: ``"leaky"`` or ``"synaptic"`` (the snnTorch neuron it came from).
        source_reset: The reset rule of the snnTorch model it came from (``"zero"``,
            ``"subtract"`` or ``"none"``). Lava always resets to zero at once; any other value
            means the conversion was an explicit approximation (``approximate_reset=True``).
        source_reset_delay: The snnTorch ``reset_delay`` it came from (exact only if False).
    """

    du: np.ndarray
    dv: np.ndarray
    vth: np.ndarray
    kind: str = "leaky"
    source_reset: str = "zero"
    source_reset_delay: bool = False

    @property
    def size(self) -> int:
        return int(self.vth.shape[0])

    @property
    def exact(self) -> bool:
        """True if Lava's zero reset reproduces the source model's reset rule exactly."""
        from snntorch_async.neurons import exact_on_lava  # (the bridge loads torch lazily)

        return exact_on_lava(self.source_reset, self.source_reset_delay)

    def _validated(self, fixed: bool, n: int, where: str) -> NeuronSpec:
        if self.kind not in NEURON_KINDS:
            raise SpecFormatError(
                f"{where}: neuron kind must be one of {NEURON_KINDS}; got {self.kind!r}."
            )
        if self.source_reset not in RESET_RULES:
            raise SpecFormatError(
                f"{where}: source_reset must be one of {RESET_RULES}; got {self.source_reset!r}."
            )
        arrays = {
            name: _arr(getattr(self, name), fixed=fixed, what=f"{where}.neuron.{name}", shape=(n,))
            for name in ("du", "dv", "vth")
        }
        return replace(self, **arrays, source_reset_delay=bool(self.source_reset_delay))

    def equals(self, other: NeuronSpec) -> bool:
        """Exact equality of every field (arrays compared element for element and by dtype)."""
        return (
            isinstance(other, NeuronSpec)
            and all(_arrays_equal(getattr(self, k), getattr(other, k)) for k in ("du", "dv", "vth"))
            and (self.kind, self.source_reset, self.source_reset_delay)
            == (other.kind, other.source_reset, other.source_reset_delay)
        )


@dataclass(frozen=True, kw_only=True, eq=False)
class LayerSpec:
    """One layer: dense synapses from the previous layer (or the input) into LIF neurons.

    Attributes:
        name: The layer's path in the user's model (the neuron module's path), for messages.
        weight: ``[out, in]`` (``nn.Linear.weight`` layout; ``in`` = the source's flattened size).
            Float: the weights. Fixed point: int mantissas.
        neuron: The neurons' parameters (``out`` of them).
        shape: Per-sample shape of the layer's neurons (``prod(shape) == out``).
        delay: Optional ``[out, in]`` int synaptic delays in time steps (``DelayDense``); a
            delayed spike arrives ``1 + delay`` steps after it was sent. ``None`` = no delays.
        bias: Optional ``[out]`` constant bias per step (see the module docstring and
            ``bias_timing``). Float: the bias. Fixed point: int mantissas. A recurrent layer's
            recurrent ``nn.Linear`` bias is part of it (both are constant currents per step).
        recurrent: Optional ``[out, out]`` weights of a ``Dense`` from this layer's spikes back to
            its own input (``nn.Linear.weight`` layout; snnTorch's ``RLeaky``/``RSynaptic``
            recurrence, ``diag(V)`` for the one-to-one form), one step per hop. Float: the
            weights. Fixed point: int mantissas with the layer's ``weight_exp`` and
            ``num_weight_bits``. ``None``: not recurrent.
        bias_timing: ``"synaptic"`` (a current from step ``l + 1``) or ``"lava"`` (Lava's LIF
            bias, into ``v`` from step 0); the token of ``snntorch_async.BiasTiming``.
        weight_exp: Fixed point: Lava ``Dense.weight_exp`` of the weights (0 in float).
        bias_exp: Fixed point: ``weight_exp`` of the bias channel (0 in float).
        num_weight_bits: Fixed point: Lava ``num_weight_bits`` (8 in float too, unused there).
        source: How the matrix was made: ``"linear"``, ``"delayed-linear"``,
            ``"conv2d-as-dense"`` (a convolution, with any pooling/flatten folded in, unrolled
            into a dense matrix) or ``"dense"``.
        meta: JSON-serialisable extra information (e.g. the quantization scale).
    """

    name: str
    weight: np.ndarray
    neuron: NeuronSpec
    shape: tuple[int, ...]
    delay: np.ndarray | None = None
    bias: np.ndarray | None = None
    weight_exp: int = 0
    bias_exp: int = 0
    num_weight_bits: int = 8
    source: str = "linear"
    meta: Mapping[str, Any] = field(default_factory=dict)
    bias_timing: str = "synaptic"
    recurrent: np.ndarray | None = None

    @property
    def out_size(self) -> int:
        return int(self.weight.shape[0])

    @property
    def in_size(self) -> int:
        return int(self.weight.shape[1])

    @property
    def max_delay(self) -> int:
        return 0 if self.delay is None or self.delay.size == 0 else int(self.delay.max())

    @property
    def is_recurrent(self) -> bool:
        """True if the layer has a recurrent ``Dense`` from itself."""
        return self.recurrent is not None

    def joint_weight(self) -> np.ndarray:
        """``[weight | recurrent]`` ``[out, in + out]`` (just ``weight`` if not recurrent): every
        synapse into the layer, one grid in fixed point (netx's ``dense_rec`` stores it so)."""
        if self.recurrent is None:
            return self.weight
        return np.concatenate([self.weight, self.recurrent], axis=1)

    def lif_bias_mant(self) -> np.ndarray:
        """Fixed point: ``bias << bias_exp`` (floor for a negative exponent), int64 ``[out]``.

        The bias in ``a`` units; a ``bias_timing="lava"`` layer gives it to Lava's LIF as
        ``bias_mant`` with ``bias_exp = 6`` (added to ``v`` as ``bias_mant << 6``), as lava-dl's
        netx reader does with a file's ``bias``.
        """
        b = np.asarray(self.bias, dtype=np.int64)
        return (b << self.bias_exp) if self.bias_exp >= 0 else (b >> -self.bias_exp)

    def _validated(self, fixed: bool, in_size: int, where: str) -> LayerSpec:
        where = f"{where} ('{self.name}')"
        shape = tuple(int(s) for s in self.shape)
        out = int(np.prod(shape)) if shape else 1
        weight = _arr(self.weight, fixed=fixed, what=f"{where}.weight", shape=(out, in_size))
        delay = None
        if self.delay is not None:
            d = np.asarray(self.delay)
            if d.dtype.kind not in "iu":
                raise SpecFormatError(
                    f"{where}.delay: expected integer delays (time steps), got dtype {d.dtype}. "
                    "Fix: round the delays and pass an int array."
                )
            delay = _arr(d, fixed=True, what=f"{where}.delay", shape=(out, in_size))
            if delay.size and delay.min() < 0:
                raise SpecFormatError(
                    f"{where}.delay: delays must be >= 0 time steps; got a minimum of "
                    f"{int(delay.min())}."
                )
        bias = (
            None
            if self.bias is None
            else _arr(self.bias, fixed=fixed, what=f"{where}.bias", shape=(out,))
        )
        recurrent = (
            None
            if self.recurrent is None
            else _arr(self.recurrent, fixed=fixed, what=f"{where}.recurrent", shape=(out, out))
        )
        if self.source not in SOURCE_KINDS:
            raise SpecFormatError(
                f"{where}: source must be one of {SOURCE_KINDS}; got {self.source!r}."
            )
        timing = getattr(self.bias_timing, "value", self.bias_timing)  # a BiasTiming or its token
        if timing not in BIAS_TIMINGS:
            raise SpecFormatError(
                f"{where}: bias_timing must be one of {BIAS_TIMINGS} (snntorch_async.BiasTiming); "
                f"got {self.bias_timing!r}."
            )
        try:
            meta = json.loads(json.dumps(dict(self.meta)))
        except (TypeError, ValueError) as e:
            raise SpecFormatError(f"{where}.meta must be JSON-serialisable: {e}") from None
        form = meta.get("recurrent")
        if form is not None and (recurrent is None or form not in RECURRENT_FORMS):
            raise SpecFormatError(
                f"{where}.meta['recurrent'] = {form!r} needs a recurrent matrix and one of "
                f"{RECURRENT_FORMS}. Fix: set LayerSpec.recurrent, or drop the entry."
            )
        if form == "one-to-one" and np.any(recurrent != np.diag(np.diag(recurrent))):
            raise SpecFormatError(
                f"{where}: a one-to-one recurrence (meta['recurrent']) must be a diagonal matrix "
                "diag(V); got off-diagonal weights. Fix: record it as 'all-to-all'."
            )
        return replace(
            self,
            name=str(self.name),
            weight=weight,
            neuron=self.neuron._validated(fixed, out, where),
            shape=shape,
            delay=delay,
            bias=bias,
            weight_exp=int(self.weight_exp),
            bias_exp=int(self.bias_exp),
            num_weight_bits=int(self.num_weight_bits),
            meta=meta,
            bias_timing=str(timing),
            recurrent=recurrent,
        )

    def equals(self, other: LayerSpec) -> bool:
        """Exact equality of every field (arrays compared element for element and by dtype)."""
        if not isinstance(other, LayerSpec):
            return False
        scalars = (
            "name",
            "shape",
            "weight_exp",
            "bias_exp",
            "num_weight_bits",
            "source",
            "bias_timing",
        )
        return (
            all(getattr(self, k) == getattr(other, k) for k in scalars)
            and dict(self.meta) == dict(other.meta)
            and all(
                _arrays_equal(getattr(self, k), getattr(other, k))
                for k in ("weight", "delay", "bias", "recurrent")
            )
            and self.neuron.equals(other.neuron)
        )


@dataclass(frozen=True, kw_only=True, eq=False)
class NetworkSpec:
    """A layered network of LIF layers (feed-forward, layers optionally recurrent), in Lava's
    terms (see the module docstring).

    Construction validates shapes and dtypes and stores read-only copies of the arrays (float64
    in a float spec, int64 in a fixed-point one). Loihi's ranges are checked separately by
    :func:`lava_bridge.check_loihi_limits`.

    Attributes:
        layers: The layers, input side first.
        input_shape: Per-sample shape of the network input (inputs are ``[T, B, *input_shape]``).
        dt: Duration of one time step (arbitrary unit, recorded for NIR/netx; 1.0 by default).
        fixed_point: True if the arrays hold Loihi fixed-point integers.
        meta: JSON-serialisable extra information.
        version: The spec format version (:data:`FORMAT_VERSION`).
    """

    layers: tuple[LayerSpec, ...]
    input_shape: tuple[int, ...]
    dt: float = 1.0
    fixed_point: bool = False
    meta: Mapping[str, Any] = field(default_factory=dict)
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.version != FORMAT_VERSION:
            raise SpecVersionError(
                f"This is spec format version {FORMAT_VERSION}; got a spec of version "
                f"{self.version}. Fix: convert the model again with this version of snntorch-async."
            )
        layers = tuple(self.layers)
        if not layers:
            raise SpecFormatError("A NetworkSpec needs at least one layer; got none.")
        input_shape = tuple(int(s) for s in self.input_shape)
        size = int(np.prod(input_shape)) if input_shape else 1
        checked = []
        for i, layer in enumerate(layers):
            if not isinstance(layer, LayerSpec):
                raise SpecFormatError(
                    f"layers[{i}]: expected a LayerSpec, got {type(layer).__name__}."
                )
            checked.append(layer._validated(bool(self.fixed_point), size, f"layers[{i}]"))
            size = checked[-1].out_size
        dt = float(self.dt)
        if not (np.isfinite(dt) and dt > 0):
            raise SpecFormatError(f"dt must be a positive finite number; got {self.dt!r}.")
        try:
            meta = json.loads(json.dumps(dict(self.meta)))
        except (TypeError, ValueError) as e:
            raise SpecFormatError(f"NetworkSpec.meta must be JSON-serialisable: {e}") from None
        object.__setattr__(self, "layers", tuple(checked))
        object.__setattr__(self, "input_shape", input_shape)
        object.__setattr__(self, "dt", dt)
        object.__setattr__(self, "fixed_point", bool(self.fixed_point))
        object.__setattr__(self, "meta", meta)

    # -- derived ------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def input_size(self) -> int:
        return int(np.prod(self.input_shape)) if self.input_shape else 1

    @property
    def output_size(self) -> int:
        return self.layers[-1].out_size

    @property
    def has_delays(self) -> bool:
        return any(layer.delay is not None for layer in self.layers)

    @property
    def has_recurrence(self) -> bool:
        return any(layer.recurrent is not None for layer in self.layers)

    @property
    def exact(self) -> bool:
        """True if every layer's reset rule maps exactly (no ``approximate_reset`` used)."""
        return all(layer.neuron.exact for layer in self.layers)

    @property
    def bias_timing(self) -> str:
        """The bias timing token every layer records (``"synaptic"`` or ``"lava"``).

        Raises:
            SpecFormatError: The layers record different timings (convert gives them one).
        """
        timings = sorted({layer.bias_timing for layer in self.layers})
        if len(timings) > 1:
            raise SpecFormatError(
                f"The spec's layers record different bias timings {timings}; one network runs "
                "one timing. Fix: convert the model again with one bias_timing."
            )
        return timings[0]

    def output_lag(self) -> int:
        """Steps by which the output lags the input in Lava: one per synaptic hop (L)."""
        return self.num_layers

    def equals(self, other: NetworkSpec) -> bool:
        """Exact equality of every field (arrays compared element for element and by dtype)."""
        return (
            isinstance(other, NetworkSpec)
            and (self.input_shape, self.dt, self.fixed_point, self.version)
            == (other.input_shape, other.dt, other.fixed_point, other.version)
            and dict(self.meta) == dict(other.meta)
            and len(self.layers) == len(other.layers)
            and all(a.equals(b) for a, b in zip(self.layers, other.layers))
        )

    def summary(self) -> str:
        """A one-line-per-layer description."""
        kind = "fixed point" if self.fixed_point else "float"
        lines = [
            f"NetworkSpec v{self.version} ({kind}, dt={self.dt}): input {list(self.input_shape)}"
        ]
        for i, l in enumerate(self.layers):
            extra = f", delays 0..{l.max_delay}" if l.delay is not None else ""
            extra += f", bias ({l.bias_timing})" if l.bias is not None else ""
            if l.recurrent is not None:
                extra += (
                    f", recurrent {l.meta.get('recurrent', 'dense')} {l.out_size}->{l.out_size}"
                )
            lines.append(
                f"layer {i} '{l.name}': {l.source} {l.in_size}->{l.out_size} "
                f"{l.neuron.kind}{extra} (source reset {l.neuron.source_reset})"
            )
        return "\n".join(lines)

    # -- files --------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the spec to one ``.npz`` file (no pickled objects); returns the path written.

        ``numpy.savez`` appends ``.npz`` to a path without that suffix.
        """
        header = {
            "format": FORMAT_NAME,
            "version": self.version,
            "input_shape": list(self.input_shape),
            "dt": self.dt,
            "fixed_point": self.fixed_point,
            "meta": self.meta,
            "layers": [],
        }
        arrays: dict[str, np.ndarray] = {}
        for i, l in enumerate(self.layers):
            header["layers"].append(
                {
                    "name": l.name,
                    "shape": list(l.shape),
                    "weight_exp": l.weight_exp,
                    "bias_exp": l.bias_exp,
                    "num_weight_bits": l.num_weight_bits,
                    "source": l.source,
                    "meta": l.meta,
                    "has_delay": l.delay is not None,
                    "has_bias": l.bias is not None,
                    "has_recurrent": l.recurrent is not None,
                    "bias_timing": l.bias_timing,
                    "neuron": {
                        "kind": l.neuron.kind,
                        "source_reset": l.neuron.source_reset,
                        "source_reset_delay": l.neuron.source_reset_delay,
                    },
                }
            )
            arrays[f"layer{i}.weight"] = l.weight
            for name in ("du", "dv", "vth"):
                arrays[f"layer{i}.neuron.{name}"] = getattr(l.neuron, name)
            if l.delay is not None:
                arrays[f"layer{i}.delay"] = l.delay
            if l.bias is not None:
                arrays[f"layer{i}.bias"] = l.bias
            if l.recurrent is not None:
                arrays[f"layer{i}.recurrent"] = l.recurrent
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        with atomic_path(path, what="spec file") as tmp:  # never a half-written .npz
            np.savez(tmp, header=np.array(json.dumps(header)), **arrays)
        return path


_NPZ_HINT = "Fix: pass a file written by NetworkSpec.save(), and write it again if it was damaged."


def _starts_like_npz(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def load(path: str | Path) -> NetworkSpec:
    """Read a spec written by :meth:`NetworkSpec.save` (``allow_pickle=False``).

    Raises:
        SpecVersionError: The file was written by another version of the format.
        SpecFormatError: The file is missing, truncated, not a spec, or holds pickled objects.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise SpecFormatError(f"Spec file '{path}' does not exist.") from None
    except ValueError as e:
        if not _starts_like_npz(path):
            raise SpecFormatError(
                f"Spec file '{path}' is not an .npz archive ({path.stat().st_size} bytes that do "
                f"not start like one). {_NPZ_HINT}"
            ) from None
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise SpecFormatError(
                f"Spec file '{path}' holds pickled Python objects; spec files hold numeric arrays "
                f"only and are never unpickled (allow_pickle=False). {_NPZ_HINT}"
            ) from None
        raise SpecFormatError(
            f"Spec file '{path}' cannot be read as .npz ({e}). {_NPZ_HINT}"
        ) from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as e:
        raise SpecFormatError(
            f"Spec file '{path}' is truncated or not an .npz archive ({type(e).__name__}: {e}). "
            f"{_NPZ_HINT}"
        ) from None
    if "header" not in data:
        raise SpecFormatError(
            f"'{path}' is an .npz file but not a network spec (no header). {_NPZ_HINT}"
        )
    try:
        header = json.loads(str(data["header"]))
    except (TypeError, ValueError) as e:
        raise SpecFormatError(
            f"Spec file '{path}' has an unreadable header ({e}). {_NPZ_HINT}"
        ) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise SpecFormatError(f"'{path}' is an .npz file but not a network spec. {_NPZ_HINT}")
    if header.get("version") not in READABLE_VERSIONS:
        raise SpecVersionError(
            f"Spec file '{path}' has format version {header.get('version')!r}; this snntorch-async "
            f"reads version {FORMAT_VERSION} (and versions 1, 2). Fix: convert and save the model "
            "again with this version (or load the file with the snntorch-async version that "
            "wrote it)."
        )
    try:
        fixed = bool(header["fixed_point"])
        layers = []
        for i, h in enumerate(header["layers"]):
            n = h["neuron"]
            neuron = NeuronSpec(
                du=data[f"layer{i}.neuron.du"],
                dv=data[f"layer{i}.neuron.dv"],
                vth=data[f"layer{i}.neuron.vth"],
                kind=n["kind"],
                source_reset=n["source_reset"],
                source_reset_delay=n["source_reset_delay"],
            )
            layers.append(
                LayerSpec(
                    name=h["name"],
                    weight=data[f"layer{i}.weight"],
                    neuron=neuron,
                    shape=tuple(h["shape"]),
                    delay=data[f"layer{i}.delay"] if h["has_delay"] else None,
                    bias=data[f"layer{i}.bias"] if h["has_bias"] else None,
                    weight_exp=h["weight_exp"],
                    bias_exp=h["bias_exp"],
                    num_weight_bits=h["num_weight_bits"],
                    source=h["source"],
                    meta=h["meta"],
                    # version 1 had no timing field: its bias was the synaptic channel
                    bias_timing=h["bias_timing"] if header["version"] >= 2 else "synaptic",
                    # versions 1 and 2 had no recurrent layers
                    recurrent=(
                        data[f"layer{i}.recurrent"]
                        if header["version"] >= 3 and h["has_recurrent"]
                        else None
                    ),
                )
            )
        return NetworkSpec(
            layers=tuple(layers),
            input_shape=tuple(header["input_shape"]),
            dt=header["dt"],
            fixed_point=fixed,
            meta=header["meta"],
        )
    except KeyError as e:
        raise SpecFormatError(f"Spec file '{path}' lacks the entry {e}. {_NPZ_HINT}") from None


NetworkSpec.load = staticmethod(load)  # type: ignore[attr-defined]
