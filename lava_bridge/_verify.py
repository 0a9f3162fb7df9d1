"""Run our engine and real Lava side by side and count spike mismatches (zero expected).

* Float (default): the model under :class:`~snntorch_async.Pipelined` (``float64=True``; a spec
  without its model under :func:`simulate_spec`) against Lava's floating-point simulation
  (``Loihi2SimCfg(select_tag="floating_pt")``).
* Fixed point (``fixed_point=True``): the bit-exact emulator (``lava_bridge.emulate``) on the
  quantized spec against Lava's ``fixed_pt`` simulation.

Lava runs one sample at a time. Inputs ``[T, B, *features]`` are zero-padded so that the last
input reaches the output (``T + L`` steps plus the largest delays); both records stay on Lava's
time axis for the comparison, and :func:`align_pipeline` (core's ``metrics.drop_lag``, the one alignment)
removes the ``L``-step lag from what is returned.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConversionError, SpecFormatError
from ._run import RUN_TIMEOUT, run_spec
from .spec import NetworkSpec

__all__ = ["VerifyResult", "align_pipeline", "simulate_spec", "verify"]

log = logging.getLogger(__name__)


def align_pipeline(spikes, lag: int):
    """Remove the pipeline shift: ``aligned[t] = spikes[t + lag]`` (``snntorch_async``'s
    :func:`~snntorch_async.metrics.drop_lag`, the one definition; imported on use).

    Args:
        spikes: A record on Lava's (pipelined) time axis, ``[S, ...]`` (numpy array or tensor).
        lag: The pipeline shift, ``spec.output_lag()`` or ``SimulationResult.output_lag`` (L).

    Returns:
        ``[S - lag, ...]``: step ``t`` holds the response to input step ``t`` (LayerSync's axis).
    """
    from snntorch_async.metrics import drop_lag

    return drop_lag(spikes, lag)


def simulate_spec(spec: NetworkSpec, inputs) -> np.ndarray:
    """Run a float spec exactly as Lava's float simulation does (numpy float64; see ``spec.py``),
    the currents summed in ``build``'s connection order (synapses, bias channel, recurrent Dense).

    Args:
        spec: A float spec.
        inputs: ``[S, B, *input_shape]`` (Lava's time axis: pad with zeros to see late outputs).

    Returns:
        Output spikes ``[S, B, C]`` (float64 0/1), lagging the input by ``spec.output_lag()``.
    """
    if spec.fixed_point:
        raise SpecFormatError(
            "simulate_spec runs float specs; got a fixed-point spec. Fix: use lava_bridge.emulate."
        )
    x = np.asarray(inputs, dtype=np.float64)
    S, B = x.shape[:2]
    src = np.zeros((B, spec.input_size))
    state = []
    for layer in spec.layers:
        n = layer.out_size
        depth = layer.max_delay + 1
        state.append(
            dict(
                u=np.zeros((B, n)),
                v=np.zeros((B, n)),
                spk=np.zeros((B, n)),
                hist=np.zeros((depth, B, layer.in_size)),
            )
        )
    out = np.zeros((S, B, spec.output_size))
    for s in range(S):
        for i, layer in enumerate(spec.layers):
            st = state[i]
            hist = np.concatenate([src[None], st["hist"][:-1]], 0)
            st["hist"] = hist
            if layer.delay is None:
                a = src @ layer.weight.T
            else:
                a = np.zeros((B, layer.out_size))
                for k in np.unique(layer.delay):
                    a = a + hist[k] @ np.where(layer.delay == k, layer.weight, 0.0).T
            lava_bias = layer.bias is not None and layer.bias_timing == "lava"
            if layer.bias is not None and not lava_bias and s >= i + 1:
                a = a + layer.bias  # "synaptic": a current from the wavefront on
            if layer.recurrent is not None:  # the layer's own spikes of the previous step
                a = a + st["spk"] @ layer.recurrent.T
            nrn = layer.neuron
            u = st["u"] * (1 - nrn.du)
            u += a
            v = st["v"] * (1 - nrn.dv) + u
            if lava_bias:
                v = v + layer.bias  # "lava": the LIF's bias_mant, into v from step 0
            spk = v > nrn.vth
            v[spk] = 0
            src, st["u"], st["v"], st["spk"] = st["spk"], u, v, spk.astype(np.float64)
        out[s] = state[-1]["spk"]
        src = x[s].reshape(B, -1)
    return out


@dataclass(frozen=True)
class VerifyResult:
    """Our engine against Lava, spike for spike.

    Attributes:
        ours: Our output spikes, aligned (:func:`align_pipeline`): ``[T', B, C]`` with
            ``T' = T + extra steps for delays``; step ``t`` answers input step ``t``.
        lava: Lava's output spikes, aligned the same way.
        mismatches: Spike slots (step, sample, neuron) that differ over the whole run.
        per_sample: Mismatches per sample ``[B]``.
        compared: Number of spike slots compared.
        lag: The pipeline shift removed (L).
        exact: Whether the conversion was exact (False after ``approximate_reset=True``: then
            ``mismatches`` measures the approximation).
        fixed_point: Whether the fixed-point path was verified.
        engine: Which of our engines ran (``"Pipelined(float64=True)"``, ``"simulate_spec"``,
            ``"emulate"``).
        spec: The spec Lava ran.
    """

    ours: np.ndarray
    lava: np.ndarray
    mismatches: int
    per_sample: np.ndarray
    compared: int
    lag: int
    exact: bool
    fixed_point: bool
    engine: str
    spec: NetworkSpec

    @property
    def mismatch_rate(self) -> float:
        return self.mismatches / max(self.compared, 1)

    def __str__(self) -> str:
        kind = "fixed point" if self.fixed_point else "float"
        return (
            f"{self.engine} vs Lava ({kind}): {self.mismatches} / {self.compared} spike slots "
            f"differ ({100 * self.mismatch_rate:.3f} %), pipeline lag {self.lag}"
            + ("" if self.exact else ", reset rule approximated")
        )


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def verify(
    model_or_spec: Any,
    inputs,
    *,
    fixed_point: bool = False,
    approximate_reset: bool = False,
    bias_timing: Any = "synaptic",
    timeout: float = RUN_TIMEOUT,
) -> VerifyResult:
    """Run our engine and Lava on the same inputs and count spike mismatches.

    Args:
        model_or_spec: The user's snnTorch model, its graph, or a :class:`NetworkSpec`.
        inputs: ``[T, B, *features]`` (torch tensor or numpy array). Binary spikes, or values
            whose products with the weights are exact (e.g. multiples of 1/16), give bit-exact
            agreement in float; arbitrary reals may differ in the last bit of a sum.
        fixed_point: Verify the fixed-point path (a model or float spec is quantized with
            ``lava_bridge.quantize`` first; a fixed-point spec is used as is).
        approximate_reset: Convert subtract/none reset models anyway (see ``convert``); the
            result's ``mismatches`` then measures the approximation.
        bias_timing: For a model: the ``convert`` bias timing (``snntorch_async.BiasTiming``);
            ``Pipelined`` then runs the same timing. A spec's own timing is always used.
        timeout: Seconds allowed per Lava run.

    Returns:
        A :class:`VerifyResult` (``mismatches == 0`` expected for exact conversions).
    """
    x = _as_numpy(inputs)
    if x.ndim < 3:
        raise SpecFormatError(
            f"verify() expected inputs [T, B, *features]; got shape {list(x.shape)}."
        )
    T, B = x.shape[:2]
    model = None
    if isinstance(model_or_spec, NetworkSpec):
        spec = model_or_spec
    else:
        from ._convert import convert

        model = model_or_spec
        spec = convert(
            model, tuple(x.shape[2:]), approximate_reset=approximate_reset, bias_timing=bias_timing
        )
    if fixed_point and not spec.fixed_point:
        try:
            from ._quantize import quantize
        except ImportError as e:
            raise ConversionError(
                f"verify(fixed_point=True) needs lava_bridge.quantize, which is unavailable ({e})."
            ) from None
        q = quantize(spec)
        spec = getattr(q, "spec", q)
    lag = spec.output_lag()
    extra = sum(layer.max_delay for layer in spec.layers)
    S = T + lag + extra
    padded = np.zeros((S, *x.shape[1:]), dtype=x.dtype)
    padded[:T] = x
    if spec.fixed_point:
        import torch

        from .emulator import emulate

        ours = _as_numpy(emulate(spec, torch.as_tensor(padded)).spikes).astype(np.float64)
        engine = "emulate"
    elif model is not None:
        import torch

        from snntorch_async import NetworkGraph, Pipelined, simulate

        ref = (
            model.parameter() if isinstance(model, NetworkGraph) else next(model.parameters(), None)
        )
        dtype = torch.float32 if ref is None else ref.dtype
        with torch.no_grad():
            sched = Pipelined(float64=True, bias_timing=spec.bias_timing)
            res = simulate(model, torch.as_tensor(padded, dtype=dtype), scheduler=sched)
        ours = _as_numpy(res.spikes).astype(np.float64)
        engine = "Pipelined(float64=True)"
    else:
        ours = simulate_spec(spec, padded)
        engine = "simulate_spec"
    lava = np.stack(
        [run_spec(spec, padded[:, b], num_steps=S, timeout=timeout).spikes for b in range(B)], 1
    )
    diff = ours.reshape(S, B, -1) != lava.reshape(S, B, -1)
    result = VerifyResult(
        ours=align_pipeline(ours, lag),
        lava=align_pipeline(lava, lag),
        mismatches=int(diff.sum()),
        per_sample=diff.sum(axis=(0, 2)),
        compared=int(diff.size),
        lag=lag,
        exact=spec.exact,
        fixed_point=spec.fixed_point,
        engine=engine,
        spec=spec,
    )
    log.info("%s", result)
    return result
