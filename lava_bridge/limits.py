"""Loihi/Lava limits of a :class:`~lava_bridge.spec.NetworkSpec`, checked before any Lava object exists.

numpy only (no torch, no Lava); ``lava_bridge.convert`` re-exports :func:`check_loihi_limits`.
"""

from __future__ import annotations

from .errors import LoihiLimitError
from .spec import MAX_DELAY, NetworkSpec

import numpy as np

__all__ = ["LOIHI_LIMITS", "U_LIMIT", "check_loihi_limits", "worst_case_current"]

#: Lava's LIF wraps the 24-bit current ``u`` at this magnitude (``max_uv_val``).
U_LIMIT = 2**23

#: Loihi fixed-point ranges checked by :func:`check_loihi_limits` (inclusive).
LOIHI_LIMITS = {
    "delay": (0, MAX_DELAY),
    "weight": (-256, 255),  # 8-bit mantissa (mixed sign: -256..254 after truncation)
    "weight_exp": (-8, 7),
    "decay": (0, 4095),  # du, dv: 12 bits
    "vth": (0, 2**17 - 1),  # 17-bit threshold mantissa
    "num_weight_bits": (1, 8),
    "bias_mant": (-4096, 4095),  # LIF bias_mant: 13-bit signed (bias_timing "lava")
}


def worst_case_current(
    weight_mantissas: np.ndarray,
    weight_exp: int,
    du: np.ndarray,
    *,
    bias: float = 0.0,
    slack: float = 0.0,
) -> float:
    """The largest ``|u|`` a layer can reach, in Lava's units (``a_in << 6``): the one bound.

    Every excitatory (or every inhibitory) input at once, each step, accumulated by the current
    decay: ``64 · max(4096 / (du + 1)) · (max_row(Σ⁺Wq, -Σ⁻Wq) · 2^e + slack + bias)``.

    Args:
        weight_mantissas: Integer weights ``[out, in]`` (as Lava stores them).
        weight_exp: The weight exponent ``e``.
        du: Integer current decays ``[out]`` (0..4095).
        bias: The largest ``|bias|`` per step in ``a_in`` units (0 without).
        slack: Extra ``a_in`` units per step (e.g. the floor of a negative exponent).

    Returns:
        The bound (float); Lava wraps ``u`` at :data:`U_LIMIT`.
    """
    w = np.asarray(weight_mantissas)
    rows = max(
        np.clip(w, 0, None).sum(1).max(initial=0), -np.clip(w, None, 0).sum(1).min(initial=0)
    )
    du = np.asarray(du)
    gain = float(np.max(4096.0 / (du + 1))) if du.size else 1.0
    per_step = rows * 2.0**weight_exp + slack
    per_step += bias
    return 64 * gain * per_step


def _range_error(
    where: str, what: str, lo_hi: tuple[int, int], got_lo, got_hi, fix: str
) -> LoihiLimitError:
    lo, hi = lo_hi
    return LoihiLimitError(
        f"{where}: {what} must lie in {lo}..{hi} on Loihi; got values in {got_lo}..{got_hi}. {fix}"
    )


def check_loihi_limits(spec: NetworkSpec) -> None:
    """Check Loihi/Lava limits before any Lava object exists (raises :class:`LoihiLimitError`).

    Always: delays in 0..62 (a delay of 64 hangs Lava's child process). Float specs: thresholds
    and decays must be what Lava's float LIF accepts (``0 ≤ du, dv ≤ 1``). Fixed-point specs
    additionally: weight mantissas (recurrent ones too) in -256..255 with ``num_weight_bits`` 1..8, ``weight_exp``
    and ``bias_exp`` in -8..7, ``du``/``dv`` in 0..4095, ``vth`` in 0..131071.
    """
    for i, layer in enumerate(spec.layers):
        where = f"Layer {i} ('{layer.name}')"
        if layer.delay is not None and layer.delay.size:
            lo, hi = int(layer.delay.min()), int(layer.delay.max())
            if lo < 0 or hi > MAX_DELAY:
                raise _range_error(
                    where,
                    "synaptic delays (time steps)",
                    LOIHI_LIMITS["delay"],
                    lo,
                    hi,
                    f"(Loihi holds 6 delay bits; Lava's DelayDense hangs at 64.) Fix: clip the "
                    f"delays to 0..{MAX_DELAY} (DelayedLinear(max_delay<={MAX_DELAY})).",
                )
        nrn = layer.neuron
        if not spec.fixed_point:
            for name in ("du", "dv"):
                a = getattr(nrn, name)
                if a.size and (a.min() < 0 or a.max() > 1):
                    raise LoihiLimitError(
                        f"{where}: {name} must lie in [0, 1] (decay = 1 - alpha/beta); got "
                        f"{a.min():g}..{a.max():g}. Fix: clamp alpha and beta to [0, 1]."
                    )
            continue
        checks = [
            ("weight mantissas", layer.weight, "weight", "Fix: quantize with a larger weight_exp."),
            ("du", nrn.du, "decay", "Fix: du is a 12-bit decay (4095 = clear each step)."),
            ("dv", nrn.dv, "decay", "Fix: dv is a 12-bit decay."),
            (
                "vth (threshold mantissa)",
                nrn.vth,
                "vth",
                "Fix: quantize with a smaller weight scale so the threshold fits 17 bits.",
            ),
        ]
        if layer.bias is not None:
            checks.append(
                ("bias mantissas", layer.bias, "weight", "Fix: quantize with a larger bias_exp.")
            )
        if layer.recurrent is not None:
            checks.append(
                (
                    "recurrent weight mantissas",
                    layer.recurrent,
                    "weight",
                    "Fix: quantize with a larger weight_exp (the recurrent Dense shares it).",
                )
            )
        for what, a, key, fix in checks:
            lo, hi = LOIHI_LIMITS[key]
            if a.size and (a.min() < lo or a.max() > hi):
                raise _range_error(where, what, (lo, hi), int(a.min()), int(a.max()), fix)
        for what, v, key in (
            ("weight_exp", layer.weight_exp, "weight_exp"),
            ("bias_exp", layer.bias_exp, "weight_exp"),
            ("num_weight_bits", layer.num_weight_bits, "num_weight_bits"),
        ):
            lo, hi = LOIHI_LIMITS[key]
            if not lo <= v <= hi:
                raise _range_error(where, what, (lo, hi), v, v, "Fix: re-quantize the spec.")
        if layer.bias is not None and layer.bias_timing == "lava" and layer.bias.size:
            b = layer.lif_bias_mant()
            lo, hi = LOIHI_LIMITS["bias_mant"]
            if b.min() < lo or b.max() > hi:
                raise _range_error(
                    where,
                    "the LIF bias_mant (bias << bias_exp, bias_timing 'lava')",
                    (lo, hi),
                    int(b.min()),
                    int(b.max()),
                    "Fix: quantize with a smaller weight scale.",
                )
