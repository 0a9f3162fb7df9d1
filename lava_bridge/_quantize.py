"""Quantize a float :class:`~lava_bridge.spec.NetworkSpec` to Loihi's fixed point.

Per layer, one positive *scale* ``s`` maps the float model's units to Lava's integer units
(``v >> 6``): a float weight ``w`` becomes ``Wq · 2^e ≈ w · s`` with an 8-bit mantissa ``Wq``
and the layer's weight exponent ``e``; the threshold becomes ``vth ≈ θ · s``; the bias (a
synaptic current per step) becomes ``bq · 2^be ≈ b · s``. Decays are 12-bit::

    du = clip(round(4096 · du_float) - 1, 0, 4095)     (u ← u·(4096 - (du + 1)) >> 12)
    dv = clip(round(4096 · dv_float),     0, 4095)     (v ← v·(4096 - dv) >> 12)

so a Leaky layer (``du_float = 1``) gets ``du = 4095`` (the current clears each step).

Mantissas are put on the grid Lava itself uses (:func:`lava_bridge.emulator.loihi_weights` is
the identity on them): step ``2^(8 - num_weight_bits + mixed)`` (``mixed`` = the matrix has
both signs), range ``[-256, 256 - step]`` (mixed), ``[0, 256 - step]`` (excitatory) or
``[-(256 - step), 0]`` (inhibitory).

Choosing ``s`` and ``e`` (:class:`QuantizeSettings`, default): the mantissas use the whole
8-bit range (``max |Wq|`` = the range's end), which fixes ``s / 2^e``; the exponent ``e`` is
then the *largest* in ``weight_exp_range`` for which the threshold fits its 17 bits, the bias
exponent fits, and (``guard_current=True``) no input pattern can wrap the 24-bit current
``u``: ``64 · (4096 / (du + 1)) · max_rows(Σ positive | Σ negative Wq) · 2^e + bias < 2^23``.
A larger ``e`` puts the threshold and the voltage on a finer grid relative to the decays'
rounding. ``QuantizeSettings(scale=64.0, weight_exp=0)`` is SLAYER's fixed grid (weights on
multiples of 2/64 in ``[-256, 254]/64``, threshold on 1/64); out-of-range weights are then an
error, not clipped.

Recurrent layers (``LayerSpec.recurrent``): the recurrent ``Dense`` shares the layer's scale
``s`` (both currents add into the same ``u``, so they must have the same units), its weight
exponent ``e`` and ``num_weight_bits``: the layer is one grid over ``[weight | recurrent]``. We
chose the shared exponent over one of its own because lava-dl's netx ``dense_rec`` stores the two
matrices as one (its reader derives one exponent and bit count from their concatenation), and one
grid keeps such a file exact; the price is that a recurrent matrix much smaller than the
feed-forward one gets fewer mantissa levels (``LayerQuantReport.recurrent_rel_error`` says how
much). Each matrix keeps the range of its own signs (each is its own Lava ``Dense``, with its own
sign mode) within the range of the concatenation, on the coarser step (:func:`part_range`): e.g.
an excitatory ``V`` beside a mixed-sign feed-forward matrix uses ``0, 2, ..., 254``. The
worst-case current counts every recurrent synapse too (all of them firing at once).

:func:`layer_grid` holds the rule; :mod:`lava_bridge.qat` uses the same function, so
``quantize`` reproduces the fake-quantized values of a QAT model exactly (QAT refuses recurrent
layers).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np

from .errors import BridgeTypeError, BridgeValueError, LoihiLimitError
from .limits import U_LIMIT, worst_case_current
from .spec import LayerSpec, NetworkSpec, NeuronSpec

__all__ = [
    "QuantizeSettings",
    "LayerGrid",
    "LayerQuantReport",
    "QuantizeReport",
    "QuantizeResult",
    "layer_grid",
    "quantize",
    "quantize_decays",
    "mantissa_range",
    "part_range",
]

log = logging.getLogger(__name__)

VTH_MAX = 2**17 - 1
LIF_BIAS_MAX = 4095  # LIF bias_mant: 13-bit signed (a bias_timing "lava" bias, bias_exp 6)


@dataclass(frozen=True, kw_only=True)
class QuantizeSettings:
    """How :func:`quantize` (and QAT) put a layer on Loihi's grids.

    Attributes:
        num_weight_bits: Weight mantissa precision (1..8; Lava ``num_weight_bits``).
        weight_exp: A fixed weight exponent for every layer, or ``None`` to choose one per layer.
        weight_exp_range: Allowed weight/bias exponents (Loihi: -8..7).
        scale: A fixed float→integer scale ``s`` for every layer (e.g. 64.0, SLAYER's), or
            ``None`` to use the full mantissa range of each layer.
        guard_current: Choose the exponent so that no input pattern can wrap the 24-bit
            current ``u`` (the worst case: every excitatory, or every inhibitory, input at once).
    """

    num_weight_bits: int = 8
    weight_exp: int | None = None
    weight_exp_range: tuple[int, int] = (-8, 7)
    scale: float | None = None
    guard_current: bool = True

    def __post_init__(self) -> None:
        b = self.num_weight_bits
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 1 <= b <= 8:
            raise BridgeValueError(
                f"QuantizeSettings: num_weight_bits must be in 1..8, a whole number (the weight "
                f"mantissa's bits); got {b!r}. Fix: e.g. num_weight_bits=8 (the default)."
            )
        lo, hi = self.weight_exp_range
        if lo > hi:
            raise BridgeValueError(
                f"weight_exp_range must be (low, high) with low <= high; "
                f"got {self.weight_exp_range}."
            )
        if self.weight_exp is not None and not lo <= self.weight_exp <= hi:
            raise BridgeValueError(
                f"weight_exp={self.weight_exp} lies outside "
                f"weight_exp_range={self.weight_exp_range}."
            )
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise BridgeValueError(
                f"scale must be a positive finite number or None; got {self.scale}."
            )

    @classmethod
    def slayer(cls) -> QuantizeSettings:
        """SLAYER's Loihi recipe: scale 64, weight exponent 0."""
        return cls(scale=64.0, weight_exp=0)


class LayerGrid(NamedTuple):
    """The grids of one layer: ``float ≈ mantissa · 2^exp / scale``."""

    scale: float
    weight_exp: int
    bias_exp: int
    weight_range: tuple[int, int, int]  # (low, high, step) of the weight mantissas
    bias_range: tuple[int, int, int]
    recurrent_range: tuple[int, int, int] | None = None  # of the recurrent mantissas


def mantissa_range(values: np.ndarray, num_weight_bits: int) -> tuple[int, int, int]:
    """``(low, high, step)`` of the mantissas Lava keeps for a matrix with these signs."""
    v = np.asarray(values)
    mixed = int(v.size > 0 and v.min() < 0 < v.max())
    step = 2 ** (8 - num_weight_bits + mixed)
    if mixed:
        return -256, 256 - step, step
    if v.size and v.max() <= 0 and v.min() < 0:
        return -(256 - step), 0, step
    return 0, 256 - step, step


def part_range(part: np.ndarray, joint: np.ndarray, num_weight_bits: int) -> tuple[int, int, int]:
    """``(low, high, step)`` of one matrix of a layer whose matrices share one grid: its own sign
    range (what its Lava ``Dense`` keeps) within the range of the concatenation ``joint`` (what
    netx's ``dense_rec`` reads as one matrix), on the coarser of the two steps. For a layer with
    one matrix (``part is joint``) this is :func:`mantissa_range`."""
    olo, ohi, ostep = mantissa_range(part, num_weight_bits)
    jlo, jhi, jstep = mantissa_range(joint, num_weight_bits)
    step = max(ostep, jstep)
    lo = -((-max(olo, jlo)) // step) * step  # up to the step
    hi = (min(ohi, jhi) // step) * step
    return int(lo), int(hi), int(step)


def _on_grid(x: np.ndarray, rng: tuple[int, int, int]) -> np.ndarray:
    lo, hi, step = rng
    return np.clip(np.round(x / step) * step, lo, hi).astype(np.int64)


def quantize_decays(du: np.ndarray, dv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float decays (``1 - alpha``, ``1 - beta``) → Lava's 12-bit ``du``, ``dv``."""
    du_q = np.clip(np.round(np.asarray(du, dtype=np.float64) * 4096) - 1, 0, 4095).astype(np.int64)
    dv_q = np.clip(np.round(np.asarray(dv, dtype=np.float64) * 4096), 0, 4095).astype(np.int64)
    return du_q, dv_q


def _scale_unit(weight: np.ndarray, rng: tuple[int, int, int]) -> float:
    """``s / 2^e`` that maps the largest weight onto the end of the mantissa range."""
    lo, hi, _ = rng
    ratios = []
    wmax, wmin = float(weight.max(initial=0.0)), float(weight.min(initial=0.0))
    if wmax > 0:
        ratios.append(hi / wmax)
    if wmin < 0:
        ratios.append(-lo / -wmin)
    return min(ratios) if ratios else math.inf  # an all-zero matrix sets no scale


def _bias_exp(bias_units: np.ndarray | None, brange: tuple[int, int, int]) -> int:
    """Smallest exponent >= 0 with every ``|bias·s| / 2^be`` inside the bias mantissa range."""
    if bias_units is None or not np.any(bias_units):
        return 0
    lo, hi, _ = brange
    need = max(
        float(bias_units.max(initial=0.0)) / max(hi, 1),
        float(-bias_units.min(initial=0.0)) / -lo if lo < 0 else 0.0,
    )
    return max(0, math.ceil(math.log2(need))) if need > 1 else 0


def layer_grid(
    weight: np.ndarray,
    vth: np.ndarray,
    du: np.ndarray,
    bias: np.ndarray | None,
    settings: QuantizeSettings,
    where: str = "layer",
    *,
    lif_bias: bool = False,
    recurrent: np.ndarray | None = None,
) -> LayerGrid:
    """Choose the scale and exponents of one layer (the rule in the module docstring).

    Args:
        weight: Float weights ``[out, in]``.
        vth: Float thresholds ``[out]`` (>= 0).
        du: Float current decays ``[out]`` (``1 - alpha``; 1 for Leaky).
        bias: Float bias currents ``[out]`` or ``None``.
        settings: The quantization settings.
        where: The layer's name for error messages.
        lif_bias: The bias goes to Lava's LIF (``bias_timing="lava"``): ``bias << bias_exp``
            must also fit its 13-bit ``bias_mant`` (|.| <= 4095).
        recurrent: Float recurrent weights ``[out, out]`` (a recurrent layer), on the layer's
            grid: same scale and exponent, ranges by :func:`part_range`.

    Raises:
        LoihiLimitError: No exponent satisfies the limits (the message says which and the fix).
    """
    weight = np.asarray(weight, dtype=np.float64)
    vth = np.asarray(vth, dtype=np.float64)
    if vth.size and vth.min() < 0:
        raise LoihiLimitError(
            f"{where}: thresholds must be >= 0 for Loihi (vth is an unsigned 17-bit mantissa); "
            f"got a minimum of {vth.min():g}. Fix: train with a non-negative threshold."
        )
    nb = settings.num_weight_bits
    parts = [weight] if recurrent is None else [weight, np.asarray(recurrent, dtype=np.float64)]
    joint = np.concatenate(parts, axis=1) if len(parts) > 1 else weight
    ranges = [part_range(p, joint, nb) for p in parts]
    wrange = ranges[0]
    brange = mantissa_range(bias if bias is not None else np.zeros(1), nb)
    lo_e, hi_e = settings.weight_exp_range
    du_q, _ = quantize_decays(du, np.zeros_like(du))
    theta = float(vth.max(initial=0.0))
    candidates = (
        [settings.weight_exp]
        if settings.weight_exp is not None
        else list(range(hi_e, lo_e - 1, -1))
    )
    problems: list[str] = []
    for e in candidates:
        if settings.scale is None:
            unit = min(_scale_unit(p, r) for p, r in zip(parts, ranges))
            s = (unit if math.isfinite(unit) else 1.0) * 2.0**e
        else:
            s = float(settings.scale)
        reals = [p * s / 2.0**e for p in parts]
        outside = [
            f"{what}weights reach {p.min(initial=0):g}..{p.max(initial=0):g}, i.e. mantissas "
            f"{q.min(initial=0):.1f}..{q.max(initial=0):.1f} outside {lo}..{hi}"
            for what, p, q, (lo, hi, step) in zip(("", "recurrent "), parts, reals, ranges)
            if q.max(initial=0) > hi + step / 2 or q.min(initial=0) < lo - step / 2
        ]
        if settings.scale is not None and outside:
            problems.append(f"weight_exp={e}: {'; '.join(outside)}")
            continue
        vth_q = round(theta * s)
        if vth_q > VTH_MAX:
            problems.append(f"weight_exp={e}: threshold mantissa {vth_q} > {VTH_MAX}")
            continue
        be = _bias_exp(None if bias is None else np.asarray(bias) * s, brange)
        if be > hi_e:
            problems.append(f"weight_exp={e}: bias exponent {be} > {hi_e}")
            continue
        if lif_bias and bias is not None:
            peak = float(np.abs(np.asarray(bias) * s).max(initial=0)) + 2.0**be
            if peak > LIF_BIAS_MAX:
                problems.append(f"weight_exp={e}: LIF bias_mant up to {peak:.0f} > {LIF_BIAS_MAX}")
                continue
        if settings.guard_current:
            b_peak = (
                0.0
                if bias is None
                else float(np.abs(np.asarray(bias) * s).max(initial=0)) + 2.0**be
            )
            grid = np.concatenate([_on_grid(q, r) for q, r in zip(reals, ranges)], axis=1)
            u_peak = worst_case_current(grid, e, du_q, bias=b_peak, slack=len(parts))
            if u_peak >= U_LIMIT:
                problems.append(f"weight_exp={e}: worst-case current {u_peak:.3g} >= 2^23")
                continue
        return LayerGrid(
            scale=s,
            weight_exp=e,
            bias_exp=be,
            weight_range=wrange,
            bias_range=brange,
            recurrent_range=ranges[1] if len(ranges) > 1 else None,
        )
    detail = "; ".join(problems[-3:])
    raise LoihiLimitError(
        f"{where}: no weight exponent in {lo_e}..{hi_e} fits Loihi's fields ({detail}). Fix: "
        "lower the threshold relative to the weights (or the bias), reduce the fan-in, pass "
        "QuantizeSettings(guard_current=False) to accept a possible current wrap-around, or let "
        "quantize choose weight_exp/scale (QuantizeSettings())."
    )


@dataclass(frozen=True, kw_only=True)
class LayerQuantReport:
    """Quantization error of one layer (float units unless stated).

    Attributes:
        name: The layer's name.
        scale: Integer units per float unit (``vth ≈ θ·scale``).
        weight_exp: Chosen weight exponent; ``bias_exp`` the bias exponent.
        weight_max_abs_error: ``max |w - Wq·2^e/s|``; ``weight_mean_abs_error`` the mean.
        weight_rel_error: ``weight_max_abs_error / max |w|`` (0 for an all-zero matrix).
        weight_levels: Distinct mantissa values used.
        zeroed_weights: Non-zero float weights that became 0.
        threshold_rel_error: ``max |θ - vth/s| / θ``.
        du_max_error, dv_max_error: ``max |decay - decay_q|`` in the float decays' units.
        bias_max_abs_error: ``max |b - bq·2^be/s|`` (0 without bias).
        current_headroom: Worst-case ``|u| / 2^23`` (below 1: no wrap possible), recurrent
            synapses included.
        recurrent_max_abs_error: ``max |Wr - Wrq·2^e/s|`` of the recurrent weights (0 if the
            layer is not recurrent); ``recurrent_rel_error`` relative to ``max |Wr|``.
    """

    name: str
    scale: float
    weight_exp: int
    bias_exp: int
    weight_max_abs_error: float
    weight_mean_abs_error: float
    weight_rel_error: float
    weight_levels: int
    zeroed_weights: int
    threshold_rel_error: float
    du_max_error: float
    dv_max_error: float
    bias_max_abs_error: float
    current_headroom: float
    recurrent_max_abs_error: float = 0.0
    recurrent_rel_error: float = 0.0


@dataclass(frozen=True, kw_only=True)
class QuantizeReport:
    """Per-layer quantization errors of one :func:`quantize` call."""

    layers: tuple[LayerQuantReport, ...]
    settings: QuantizeSettings = field(default_factory=QuantizeSettings)

    def summary(self) -> str:
        """One line per layer."""
        lines = ["layer            scale  e  be  w_err_max  w_err_rel  vth_err  dv_err  headroom"]
        for r in self.layers:
            lines.append(
                f"{r.name[:14]:14s} {r.scale:8.2f} {r.weight_exp:2d} {r.bias_exp:3d} "
                f"{r.weight_max_abs_error:10.3g} {r.weight_rel_error:10.3g} "
                f"{r.threshold_rel_error:8.3g} {r.dv_max_error:7.3g} {r.current_headroom:9.3g}"
            )
        return "\n".join(lines)


class QuantizeResult(NamedTuple):
    """What :func:`quantize` returns: the fixed-point spec and its error report."""

    spec: NetworkSpec
    report: QuantizeReport


def _quantize_layer(
    layer: LayerSpec, settings: QuantizeSettings, where: str
) -> tuple[LayerSpec, LayerQuantReport]:
    n = layer.neuron
    grid = layer_grid(
        layer.weight,
        n.vth,
        n.du,
        layer.bias,
        settings,
        where,
        lif_bias=layer.bias_timing == "lava",
        recurrent=layer.recurrent,
    )
    s, e, be = grid.scale, grid.weight_exp, grid.bias_exp
    wq = _on_grid(layer.weight * s / 2.0**e, grid.weight_range)
    vth_q = np.round(n.vth * s).astype(np.int64)
    lost = (vth_q == 0) & (n.vth > 0)
    if lost.any():
        raise LoihiLimitError(
            f"{where}: the threshold {float(n.vth[lost].max()):g} becomes vth = 0 in fixed point "
            f"(scale {s:g} integer units per float unit, set by the largest weight or bias), so "
            f"the neuron would fire on any input. Fix: make the weights smaller relative to the "
            f"threshold (e.g. raise the threshold), or pass QuantizeSettings(scale=...) large "
            f"enough that threshold x scale >= 1."
        )
    du_q, dv_q = quantize_decays(n.du, n.dv)
    bq = None if layer.bias is None else _on_grid(layer.bias * s / 2.0**be, grid.bias_range)
    rq = (
        None
        if layer.recurrent is None
        else _on_grid(layer.recurrent * s / 2.0**e, grid.recurrent_range)
    )
    rec_err = 0.0 if rq is None else float(np.abs(layer.recurrent - rq * 2.0**e / s).max(initial=0))
    rmax = 0.0 if rq is None else float(np.abs(layer.recurrent).max(initial=0.0))
    joint_q = wq if rq is None else np.concatenate([wq, rq], axis=1)

    w_back = wq * 2.0**e / s
    err = np.abs(layer.weight - w_back)
    wmax = float(np.abs(layer.weight).max(initial=0.0))
    theta_err = np.abs(n.vth - vth_q / s) / np.where(n.vth > 0, n.vth, 1.0)
    b_peak = 0.0 if bq is None else float(np.abs(bq).max(initial=0)) * 2.0**be
    report = LayerQuantReport(
        name=layer.name,
        scale=s,
        weight_exp=e,
        bias_exp=be,
        weight_max_abs_error=float(err.max(initial=0.0)),
        weight_mean_abs_error=float(err.mean()) if err.size else 0.0,
        weight_rel_error=float(err.max(initial=0.0) / wmax) if wmax > 0 else 0.0,
        weight_levels=int(np.unique(wq).size),
        zeroed_weights=int(np.count_nonzero((layer.weight != 0) & (wq == 0))),
        threshold_rel_error=float(theta_err.max(initial=0.0)),
        du_max_error=float(np.abs(n.du - (du_q + 1) / 4096.0).max(initial=0.0)),
        dv_max_error=float(np.abs(n.dv - dv_q / 4096.0).max(initial=0.0)),
        bias_max_abs_error=(
            0.0 if bq is None else float(np.abs(layer.bias - bq * 2.0**be / s).max(initial=0.0))
        ),
        current_headroom=worst_case_current(joint_q, e, du_q, bias=b_peak) / U_LIMIT,
        recurrent_max_abs_error=rec_err,
        recurrent_rel_error=rec_err / rmax if rmax > 0 else 0.0,
    )
    fixed = LayerSpec(
        name=layer.name,
        weight=wq,
        neuron=NeuronSpec(
            du=du_q,
            dv=dv_q,
            vth=vth_q,
            kind=n.kind,
            source_reset=n.source_reset,
            source_reset_delay=n.source_reset_delay,
        ),
        shape=layer.shape,
        delay=layer.delay,
        bias=bq,
        weight_exp=e,
        bias_exp=be,
        num_weight_bits=settings.num_weight_bits,
        source=layer.source,
        meta={**dict(layer.meta), "scale": s},
        bias_timing=layer.bias_timing,
        recurrent=rq,
    )
    return fixed, report


def quantize(spec: NetworkSpec, settings: QuantizeSettings = QuantizeSettings()) -> QuantizeResult:
    """Quantize a float spec to Loihi fixed point (rules in the module docstring).

    Args:
        spec: A float :class:`~lava_bridge.spec.NetworkSpec` (from :func:`lava_bridge.convert`).
        settings: The grids' settings (default: per-layer exponents using the full 8-bit range).

    Returns:
        ``QuantizeResult(spec, report)``: the fixed-point spec (``fixed_point=True``, each
        layer's ``meta["scale"]`` records ``s``) and the per-layer error report.

    Raises:
        LoihiLimitError: A threshold, bias or the worst-case current does not fit Loihi's
            fields, or (with a fixed ``scale``) weights fall outside the mantissa range.
        ValueError: ``spec`` is already fixed point.
    """
    if not isinstance(spec, NetworkSpec):
        raise BridgeTypeError(
            f"quantize() expected a lava_bridge.NetworkSpec; got {type(spec).__name__}."
        )
    if spec.fixed_point:
        raise BridgeValueError(
            "quantize() expected a float NetworkSpec; got one that is already fixed point. Fix: "
            "pass the float spec from lava_bridge.convert(model, ...)."
        )
    from ._convert import check_loihi_limits

    layers, reports = [], []
    for i, layer in enumerate(spec.layers):
        fixed, report = _quantize_layer(layer, settings, f"Layer {i} ('{layer.name}')")
        layers.append(fixed)
        reports.append(report)
        log.info(
            "quantize layer %d ('%s'): scale %.4g, weight_exp %d, max weight error %.3g "
            "(%.2g%% of max |w|)",
            i,
            layer.name,
            report.scale,
            report.weight_exp,
            report.weight_max_abs_error,
            100 * report.weight_rel_error,
        )
    meta = {
        **dict(spec.meta),
        "quantize_settings": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items()
        },
    }
    fixed_spec = NetworkSpec(
        layers=tuple(layers), input_shape=spec.input_shape, dt=spec.dt, fixed_point=True, meta=meta
    )
    check_loihi_limits(fixed_spec)
    return QuantizeResult(fixed_spec, QuantizeReport(layers=tuple(reports), settings=settings))
