"""A batched, bit-exact torch emulator of Loihi's fixed-point Dense/DelayDense + LIF.

:func:`emulate` runs a fixed-point :class:`~lava_bridge.spec.NetworkSpec` (from
:func:`lava_bridge.quantize`) over a batch of binary spike inputs with int64 tensors, on CPU or
CUDA, and reproduces Lava's ``Loihi2SimCfg(select_tag="fixed_pt")`` simulation (lava-nc 0.10.0:
``PyDenseModelBitAcc``, ``PyDelayDenseModelBitAcc``, ``PyLifModelBitAcc``, ``PySendModelFixed``)
bit for bit: spikes and the ``u``/``v`` state of every neuron at every step.

Per time step ``t`` (0-based; Lava's ``time_step`` is ``t + 1``) and layer, in this order:

1. Synapses (``Dense``/``DelayDense``), with ``Wq`` the weights as Lava stores them after its
   first step (sign mode from the matrix, clip to ``[-256·mixed, 255]`` (``[-255, 0]`` if every
   weight is ≤ 0), drop ``8 - num_weight_bits + mixed`` LSBs with floor)::

       a_out[t]        = buf[t-1][0]                        (sent: what was accumulated before)
       acc_k           = Σ_{i: s_in[i], delay[j,i] = k} Wq[j, i]        for every delay k
       buf[t][k]       = buf[t-1][k+1] + (acc_k << e  if e > 0 else  acc_k >> -e)   (floor)

   so a spike crossing a synapse of delay ``d`` reaches the neurons ``1 + d`` steps later
   (``e`` = ``weight_exp``; a plain ``Dense`` is the case ``d = 0``). A recurrent layer's own
   ``Dense`` (``LayerSpec.recurrent``, the layer's ``e`` and ``num_weight_bits``, its own sign
   mode) is such a synapse from the layer's spikes: it accumulates ``spk[t]`` in step ``t`` (after
   the neurons fired) and sends it at ``t + 1``, so ``a_in[t] += Σ_k Wr[j, k]·spk_k[t-1]``.
2. Neurons (``LIF``; ``du``, ``dv`` 12-bit, ``vth`` 17-bit, ``u``, ``v`` 24-bit)::

       x = u·(4096 - (du + 1));   u ← sgn(x)·(|x| >> 12) + (a_in << 6)
       u ← u - 2²⁴ if u > 2²³;    u ← u + 2²⁴ if u ≤ -2²³            (one wrap, as Lava)
       y = v·(4096 - dv);         v ← clip(sgn(y)·(|y| >> 12) + u + bias, ±(2²³ - 1))
       spike = v > (vth << 6);    v ← 0 where spike        (u is not reset; no refractory time)

   A layer bias with ``bias_timing="synaptic"`` is a synaptic current: an always-on source
   feeds a second synapse ``[out, 1]`` (mantissas ``bias``, exponent ``bias_exp``, delay = layer
   index ``l``, with its own sign mode), so ``a_in += bias << bias_exp`` from step ``l + 1`` on;
   the LIF's own ``bias_mant`` stays 0. With ``bias_timing="lava"`` it is the LIF's own bias
   (``bias_mant = bias << bias_exp``, ``bias_exp = 6``, as lava-dl's netx sets it): ``bias =
   (bias << bias_exp) << 6`` above, from step 0 on. Intermediate sums are wrapped to int32 where Lava's numpy arrays
   are int32 (never reached by a quantized network).

Convolutions: a layer that is exactly one convolution (``LayerSpec.meta["conv"]`` from
``convert``, no delays, and a kernel that unrolls exactly to its weight matrix,
:func:`lava_bridge._conv.kernel_unrolls_to`) accumulates through its kernel instead of the dense
matrix: ``acc = conv2d(s_in, Wq_kernel)`` with the kernel's mantissas as Lava stores them (sign
mode, clip and LSB drop are elementwise once the mode is known, and the kernel has the matrix's
mode), then the same ``weight_exp`` shift with floor. The sums are integers, identical to the
matmul's, so the conv path equals the dense path bit for bit (tested); with ``weight_exp = 0``
it is also Lava's fixed-point ``Conv`` process (``PyConvModelFixed``: ``a_out[t]`` is the
integer convolution of step ``t - 1``, no exponent, wrapped to 24 bits, which ``build`` only uses
when no sum can reach 2²³). ``emulate(..., conv_as_dense=True)`` runs every layer as its matrix.

The input source is Lava's ``RingBuffer``: at step ``t`` it sends ``inputs[t]`` (Lava's
``data[..., (time_step - 1) % T]``), the first synapses accumulate it in the same step and the
first neurons integrate it at ``t + 1``; each further layer adds one step, so the output of an
``L``-layer network lags its input by ``L`` steps (plus synaptic delays).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from snntorch_async.bias_timing import BiasTiming

from .errors import BridgeTypeError, BridgeValueError
from .limits import worst_case_current
from .spec import LayerSpec, NetworkSpec

__all__ = [
    "EmulationResult",
    "LIFState",
    "emulate",
    "loihi_weights",
    "lif_fixed_step",
    "shift_floor",
]

_U_MAX = 2**23  # Lava's max_uv_val
_V_LIM = 2**23 - 1
_DECAY_UNITY = 4096
_DECAY_SHIFT = 12
_ACT_SHIFT = 6  # a_in and vth are MSB-aligned by 6 bits


class LIFState(NamedTuple):
    """Fixed-point LIF state of one layer; ``u``, ``v``: int64 ``[B, n]``."""

    u: Tensor
    v: Tensor


class EmulationResult(NamedTuple):
    """What :func:`emulate` returns. Every field is always present (``None`` when not recorded).

    Attributes:
        spikes: Output layer spikes ``[T, B, C]`` (float32 0/1; Lava's time axis, lagging the
            input by ``output_lag`` steps).
        layer_spikes: Every layer's spikes ``[T, B, n_l]`` (float32 0/1).
        u: Every layer's current ``u`` after each step ``[T, B, n_l]`` (int64), if recorded.
        v: Every layer's voltage ``v`` after each step (after the reset) ``[T, B, n_l]``
            (int64), if recorded.
        output_lag: Steps by which the output lags the input (one per layer, delays excluded).
    """

    spikes: Tensor
    layer_spikes: tuple[Tensor, ...]
    u: tuple[Tensor, ...] | None
    v: tuple[Tensor, ...] | None
    output_lag: int


# -- integer kernels ---------------------------------------------------------------------------


def _wrap32(x: Tensor) -> Tensor:
    """Two's-complement wrap of int64 values to int32 (what numpy's int32 arrays do)."""
    return ((x + 2**31) & (2**32 - 1)) - 2**31


def shift_floor(x: Tensor, exp: int | Tensor) -> Tensor:
    """``x << exp`` for ``exp > 0``, else ``x >> -exp`` (arithmetic shift = floor division)."""
    if torch.is_tensor(exp):
        return torch.where(exp >= 0, x << exp.clamp(min=0), x >> (-exp).clamp(min=0))
    return x << exp if exp > 0 else x >> (-exp)


def _decay(x: Tensor, keep: Tensor) -> Tensor:
    """``sgn(x·keep)·(|x·keep| >> 12)``: Loihi's decay, rounding toward zero."""
    y = x * keep
    return torch.sign(y) * (y.abs() >> _DECAY_SHIFT)


def loihi_weights(weights: np.ndarray, num_weight_bits: int = 8) -> np.ndarray:
    """The weights Lava's fixed-point Dense uses after its first step.

    Sign mode from the matrix (EXCITATORY if every weight ≥ 0, INHIBITORY if every weight ≤ 0,
    else MIXED); clip to ``[-256·mixed, 255]`` (mirrored for INHIBITORY); drop
    ``8 - num_weight_bits + mixed`` least significant bits with floor (mirrored for
    INHIBITORY). In a mixed matrix odd weights round down: ``3 → 2``, ``-3 → -4``.

    Args:
        weights: Integer weights ``[out, in]``.
        num_weight_bits: Weight precision (1..8).

    Returns:
        int64 ``[out, in]``.
    """
    w = np.asarray(weights).astype(np.int64)
    if w.size == 0 or w.min() >= 0:
        sign, mixed = 1, 0
    elif w.max() <= 0:
        sign, mixed = -1, 0
    else:
        sign, mixed = 1, 1
    w = sign * w
    w = np.clip(w, -256 * mixed, 255)
    drop = 8 - int(num_weight_bits) + mixed
    w = (w >> drop) << drop
    return sign * w


def lif_fixed_step(
    state: LIFState,
    a_in: Tensor,
    *,
    du: Tensor,
    dv: Tensor,
    vth: Tensor,
    bias: Tensor | int = 0,
) -> tuple[Tensor, LIFState]:
    """One step of Lava's bit-accurate LIF (``PyLifModelBitAcc.run_spk``).

    Args:
        state: ``u``, ``v`` int64 ``[B, n]``.
        a_in: Synaptic input int64 ``[B, n]`` (what the Dense process sent).
        du, dv, vth: int64, broadcastable to ``[B, n]``.
        bias: The LIF's own bias ``bias_mant << bias_exp`` (added to ``v``): a
            ``bias_timing="lava"`` layer's bias; 0 for ``"synaptic"`` (a current instead).

    Returns:
        ``(spikes bool [B, n], new state)``; the update equations are in the module docstring.
    """
    u = _wrap32(_decay(state.u, _DECAY_UNITY - (du + 1)) + _wrap32(a_in << _ACT_SHIFT))
    u = torch.where(u > _U_MAX, u - 2 * _U_MAX, u)
    u = torch.where(u <= -_U_MAX, u + 2 * _U_MAX, u)
    v = _wrap32(_decay(state.v, _DECAY_UNITY - dv) + u + bias)
    v = v.clamp(-_V_LIM, _V_LIM)
    spk = v > (vth << _ACT_SHIFT)
    v = torch.where(spk, torch.zeros_like(v), v)
    return spk, LIFState(u, v)


# -- network -----------------------------------------------------------------------------------


class _ConvPlan(NamedTuple):
    """A convolution layer's integer kernel for the conv path (``w_stack`` is then empty)."""

    kernel: Tensor  # [O, C, kh, kw]: Lava's mantissas (loihi_weights; times 2^(e+6) if fold)
    in_shape: tuple[int, int, int]  # (C, H, W)
    stride: tuple[int, int]
    padding: tuple[int, int]


class _Prepared(NamedTuple):
    """One layer ready to run: weights as Lava uses them, float for exact matmuls.

    ``fast``: no quantity of this layer can leave int32 or wrap ``u`` (bound below), so the
    step runs in plain int64 with ``a_in << 6`` folded into the synapses ("u units"); otherwise
    every int32 wrap of Lava is reproduced (:func:`lif_fixed_step`).
    """

    w_stack: Tensor  # [K*out, in], delay-bucket major (bucket k = synapses of delay k)
    rec_w: Tensor | None  # [out, out] the recurrent Dense (scaled like w_stack), or None
    n_delay: int  # K = max delay + 1
    out: int
    weight_exp: int
    fold: bool  # fast path with weight_exp >= 0: 2^(e+6) folded into w_stack (or the kernel)
    fast: bool
    bias_current: Tensor | None  # [out] int64 per step: a_in units (exact) / u units (fast)
    bias_from: int  # first step at which it arrives (layer index + 1)
    v_bias: Tensor | None  # [out] int64: the LIF's bias_mant << bias_exp (bias_timing "lava")
    clear_u: bool  # du = 4095 everywhere: the current is cleared each step
    keep_u: Tensor  # 4096 - (du + 1)
    keep_v: Tensor  # 4096 - dv
    du: Tensor
    dv: Tensor
    vth: Tensor
    conv: _ConvPlan | None  # accumulate through the kernel (no dense matrix), or None


#: Use the int64 fast path where it is provably identical (tests switch it off to compare).
FAST_PATH = True
#: Largest first-layer accumulation (T·B·K·out elements) precomputed for all steps at once.
FIRST_LAYER_MAX_ELEMENTS = 2**26


def _matmul_dtype(fan_in: int, device: torch.device) -> torch.dtype:
    # Partial sums of 0/1 spikes times |w| <= 256 (times a power of two) are integers (times
    # that power) below 256·fan_in: exact in float32 while that stays below 2**24, and always
    # exact in float64. TF32 (a CUDA float32 matmul option) is not exact: float64 then.
    tf32 = device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
    if 256 * fan_in < 2**24 and not tf32:
        return torch.float32
    return torch.float64


def _conv_dtype(fan_in: int, device: torch.device) -> torch.dtype:
    # As _matmul_dtype; on CUDA float64 always (cuDNN may pick TF32, FFT or Winograd kernels;
    # their rounding errors stay far below 0.5 in float64, and the sums are rounded).
    if device.type == "cuda" or 256 * fan_in >= 2**24:
        return torch.float64
    return torch.float32


def _conv_plan(layer: LayerSpec, index: int, device: torch.device) -> _ConvPlan | None:
    """The conv path of a layer that is exactly one convolution, else None (dense path)."""
    if layer.meta.get("conv") is None or layer.delay is not None or layer.recurrent is not None:
        return None
    from ._conv import conv_kernel

    # the kernel of the stored weights; the matrix's sign mode is the kernel's (the matrix holds
    # the kernel's values and zeros), so Lava's weights are loihi_weights of the kernel
    c = conv_kernel(layer, np.asarray(layer.weight), f"Layer {index} ('{layer.name}')")
    if c is None:
        return None
    kq = loihi_weights(c.kernel, layer.num_weight_bits)
    dtype = _conv_dtype(int(np.prod(kq.shape[1:])), device)
    return _ConvPlan(
        kernel=torch.tensor(kq, dtype=dtype, device=device),
        in_shape=tuple(c.in_shape),
        stride=tuple(c.stride),
        padding=tuple(c.padding),
    )


def _prepare(
    layer: LayerSpec, index: int, device: torch.device, conv_as_dense: bool = False
) -> _Prepared:
    conv = None if conv_as_dense else _conv_plan(layer, index, device)
    e = int(layer.weight_exp)
    out, k = layer.out_size, 1
    if conv is not None:
        # the kernel's rows bound every neuron's row for u_bound (a border neuron sees a part)
        w = conv.kernel.to(torch.int64).cpu().numpy().reshape(conv.kernel.shape[0], -1)
        w_stack = torch.zeros((0, layer.in_size), device=device)
    else:
        w = loihi_weights(layer.weight, layer.num_weight_bits)
        stack = w
        if layer.delay is not None:
            k = layer.max_delay + 1
            stack = np.concatenate([np.where(layer.delay == j, w, 0) for j in range(k)], axis=0)
        w_stack = torch.tensor(stack, dtype=_matmul_dtype(w.shape[1], device), device=device)
    b = v_bias = None
    if layer.bias is not None and layer.bias_timing == BiasTiming.LAVA:
        v_bias = layer.lif_bias_mant() << _ACT_SHIFT  # the LIF's bias_mant << bias_exp (= 6)
    elif layer.bias is not None:
        # its own [out, 1] Dense: sign mode, clipping and truncation of that column
        b = loihi_weights(layer.bias[:, None], layer.num_weight_bits)[:, 0]
        b = (b << layer.bias_exp) if layer.bias_exp >= 0 else (b >> -layer.bias_exp)
    n = layer.neuron
    du = np.asarray(n.du, dtype=np.int64)
    wr = None if layer.recurrent is None else loihi_weights(layer.recurrent, layer.num_weight_bits)
    # |u| for all time: every synapse of one sign at once, recurrent ones included (+1 per delay
    # bucket and for the recurrent Dense, for the floor of a negative exponent) plus the bias
    # current (limits.worst_case_current, the one bound)
    b_peak = 0.0 if b is None else float(np.abs(b).max(initial=0))
    joint = w if wr is None else np.concatenate([w, wr], axis=1)
    slack = k + (wr is not None)
    u_bound = worst_case_current(joint, e, du, bias=b_peak, slack=slack) if du.size else 0.0
    fast = FAST_PATH and u_bound < _U_MAX - 1
    fold = fast and e >= 0
    # (each matmul is exact in the dtype its own fan-in allows: they are summed as integers)
    rec_w = (
        None
        if wr is None
        else torch.tensor(wr, dtype=_matmul_dtype(wr.shape[1], device), device=device)
    )
    if fold and conv is None:
        w_stack = w_stack * 2.0 ** (e + _ACT_SHIFT)  # exact: a power of two
    elif fold:
        conv = conv._replace(kernel=conv.kernel * 2.0 ** (e + _ACT_SHIFT))
    if fold and rec_w is not None:
        rec_w = rec_w * 2.0 ** (e + _ACT_SHIFT)

    def vec(a) -> Tensor:
        return torch.tensor(np.asarray(a, dtype=np.int64), device=device)

    bias = None
    if b is not None:
        bias = vec(b) << _ACT_SHIFT if fast else _wrap32(vec(b))
    return _Prepared(
        w_stack=w_stack,
        rec_w=rec_w,
        n_delay=k,
        out=out,
        weight_exp=e,
        fold=fold,
        fast=fast,
        bias_current=bias,
        bias_from=index + 1,
        v_bias=None if v_bias is None else vec(v_bias),
        clear_u=bool(du.size and np.all(du == 4095)),
        keep_u=vec(_DECAY_UNITY - (du + 1)),
        keep_v=vec(_DECAY_UNITY - np.asarray(n.dv, dtype=np.int64)),
        du=vec(du),
        dv=vec(n.dv),
        vth=vec(n.vth),
        conv=conv,
    )


def _accumulate(p: _Prepared, spikes: Tensor) -> Tensor:
    """Accumulation per delay bucket: 0/1 ``[N, in]`` → int64 ``[N, K, out]``.

    In ``a_in`` units, shifted by ``weight_exp`` with floor; in the fast path in ``u`` units
    (``a_in << 6``).
    """
    if p.conv is not None:
        c = p.conv
        x = spikes.to(c.kernel.dtype).reshape(-1, *c.in_shape)
        y = F.conv2d(x, c.kernel, stride=c.stride, padding=c.padding).round_()
        acc = y.to(torch.int64).reshape(spikes.shape[0], 1, p.out)
    else:
        acc = (
            (spikes.to(p.w_stack.dtype) @ p.w_stack.T)
            .to(torch.int64)
            .unflatten(-1, (p.n_delay, p.out))
        )
    if p.fold:
        return acc
    acc = shift_floor(acc, p.weight_exp)
    return acc << _ACT_SHIFT if p.fast else acc


def _accumulate_recurrent(p: _Prepared, spikes: Tensor) -> Tensor:
    """The recurrent Dense's accumulation of the layer's own spikes: 0/1 ``[B, out]`` → int64
    ``[B, out]``, in the units of :func:`_accumulate` (it is a plain ``Dense``)."""
    acc = (spikes.to(p.rec_w.dtype) @ p.rec_w.T).to(torch.int64)
    if p.fold:
        return acc
    acc = shift_floor(acc, p.weight_exp)
    return acc << _ACT_SHIFT if p.fast else acc


def _step_fast(p: _Prepared, state: LIFState, du_in: Tensor) -> tuple[Tensor, LIFState]:
    """:func:`lif_fixed_step` in int64 for a layer that provably never wraps.

    ``du_in`` is ``a_in << 6`` (plus the bias); ``x >> 12`` toward zero is a truncating division.
    """
    if p.clear_u:
        u = du_in
    else:
        u = torch.div(state.u * p.keep_u, _DECAY_UNITY, rounding_mode="trunc") + du_in
    v = torch.div(state.v * p.keep_v, _DECAY_UNITY, rounding_mode="trunc") + u
    if p.v_bias is not None:
        v = v + p.v_bias
    v = v.clamp_(-_V_LIM, _V_LIM)
    spk = v > (p.vth << _ACT_SHIFT)
    return spk, LIFState(u, v.masked_fill_(spk, 0))


def _check_spec(spec: NetworkSpec) -> None:
    if not isinstance(spec, NetworkSpec):
        raise BridgeTypeError(
            f"emulate() expected a fixed-point lava_bridge.NetworkSpec; got {type(spec).__name__}. "
            "Fix: spec = lava_bridge.quantize(lava_bridge.convert(model, ...)).spec."
        )
    if not spec.fixed_point:
        raise BridgeValueError(
            "emulate() runs Loihi's fixed-point arithmetic; got a float NetworkSpec "
            "(fixed_point=False). Fix: quantize it first: lava_bridge.quantize(spec).spec (or run "
            "the float spec with snntorch_async's Pipelined scheduler)."
        )


def _check_inputs(spec: NetworkSpec, inputs: Tensor) -> Tensor:
    expected = [spec.input_size] if not spec.input_shape else list(spec.input_shape)
    if not torch.is_tensor(inputs) or inputs.dim() < 3:
        got = list(inputs.shape) if torch.is_tensor(inputs) else type(inputs).__name__
        raise BridgeValueError(
            f"emulate() expected binary spike inputs as a torch.Tensor of shape [T, B, "
            f"{', '.join(map(str, expected))}]; got {got}. Fix: make the tensor time-major "
            "[T, B, *features] (x.unsqueeze(1) for one sample)."
        )
    if inputs.shape[0] == 0 or inputs.shape[1] == 0:
        raise BridgeValueError(
            f"emulate() got empty inputs of shape {list(inputs.shape)}; expected T, B >= 1."
        )
    flat = inputs.reshape(inputs.shape[0], inputs.shape[1], -1)
    if flat.shape[2] != spec.input_size:
        raise BridgeValueError(
            f"emulate() got inputs of shape {list(inputs.shape)} ({flat.shape[2]} features per "
            f"step), but the spec's first layer takes {spec.input_size} (input_shape "
            f"{list(spec.input_shape)}). Fix: pass inputs of shape [T, B, "
            f"{', '.join(map(str, expected))}]."
        )
    bad = (flat != 0) & (flat != 1)
    if bool(bad.any()):
        raise BridgeValueError(
            f"emulate() expected binary spike inputs (0 or 1); got values such as "
            f"{flat[bad][:3].tolist()}. Loihi's Dense receives 1-bit spikes (Lava treats any "
            "non-zero as a spike). Fix: spike-encode the inputs first, e.g. "
            "snntorch.spikegen.rate(x, ...) or (x > level).float()."
        )
    return flat


def emulate(
    spec: NetworkSpec,
    inputs: Tensor,
    *,
    record_state: bool = False,
    conv_as_dense: bool = False,
) -> EmulationResult:
    """Run a fixed-point network bit-exactly as Lava's ``fixed_pt`` simulation does, batched.

    Args:
        spec: A fixed-point :class:`~lava_bridge.spec.NetworkSpec` (``quantize(...).spec``).
        inputs: Binary spikes ``[T, B, *input_shape]`` (any dtype, values 0/1) on the device to
            run on (CPU or CUDA); sample ``b`` equals Lava run with ``RingBuffer(data=
            inputs[:, b].reshape(T, -1).T)``.
        record_state: Also return every layer's ``u`` and ``v`` after each step.
        conv_as_dense: Run convolution layers through their unrolled matrices too. By default a
            layer that is exactly one convolution accumulates through its kernel (the same
            integers, less memory and time; see the module docstring).

    Returns:
        An :class:`EmulationResult`. ``spikes[t]`` is the output layer's spike vector at Lava's
        step ``t + 1``; an ``L``-layer network's output lags its input by ``L`` steps.

    Raises:
        TypeError, ValueError: ``spec`` is not a fixed-point spec, or ``inputs`` is not a
            binary ``[T, B, *input_shape]`` tensor.
    """
    _check_spec(spec)
    flat = _check_inputs(spec, inputs)
    device = flat.device
    T, B = flat.shape[:2]
    prepared = [_prepare(layer, i, device, conv_as_dense) for i, layer in enumerate(spec.layers)]
    # The first synapses see the whole input up front: one matmul for all steps and samples.
    p0 = prepared[0]
    first = None
    if T * B * p0.n_delay * p0.out <= FIRST_LAYER_MAX_ELEMENTS:  # else step by step (memory)
        first = _accumulate(p0, flat.reshape(T * B, -1)).reshape(T, B, p0.n_delay, p0.out)
    bufs = [torch.zeros((B, p.n_delay, p.out), dtype=torch.int64, device=device) for p in prepared]
    # what each recurrent Dense accumulated last step (sent this step)
    rec_bufs = [
        None if p.rec_w is None else torch.zeros((B, p.out), dtype=torch.int64, device=device)
        for p in prepared
    ]
    states = [
        LIFState(*(torch.zeros((B, p.out), dtype=torch.int64, device=device) for _ in range(2)))
        for p in prepared
    ]
    spk_rec: list[list[Tensor]] = [[] for _ in prepared]
    u_rec: list[list[Tensor]] = [[] for _ in prepared]
    v_rec: list[list[Tensor]] = [[] for _ in prepared]
    for t in range(T):
        for i, p in enumerate(prepared):
            buf = bufs[i]
            if p.fast:
                a_in = buf[:, 0]  # already a_in << 6
                if p.bias_current is not None and t >= p.bias_from:
                    a_in = a_in + p.bias_current
                if p.rec_w is not None:
                    a_in = a_in + rec_bufs[i]
            else:
                a_in = _wrap32(buf[:, 0])  # what Dense sends: its previous accumulation (int32)
                if p.bias_current is not None and t >= p.bias_from:
                    a_in = _wrap32(a_in + p.bias_current)  # the in-port adds every channel
                if p.rec_w is not None:
                    a_in = _wrap32(a_in + _wrap32(rec_bufs[i]))
            # Dense i receives what its source sends in this same step (input or layer i-1)
            if i == 0:
                acc = first[t] if first is not None else _accumulate(p, flat[t])
            else:
                acc = _accumulate(p, spk_rec[i - 1][-1])
            if p.n_delay == 1:
                bufs[i] = acc
            else:
                shifted = torch.cat([buf[:, 1:], torch.zeros_like(buf[:, :1])], dim=1)
                bufs[i] = shifted + acc if p.fast else _wrap32(shifted + acc)
            if p.fast:
                spk, states[i] = _step_fast(p, states[i], a_in)
            else:
                spk, states[i] = lif_fixed_step(
                    states[i],
                    a_in,
                    du=p.du,
                    dv=p.dv,
                    vth=p.vth,
                    bias=0 if p.v_bias is None else p.v_bias,
                )
            if p.rec_w is not None:  # the recurrent Dense receives this step's spikes
                rec_bufs[i] = _accumulate_recurrent(p, spk)
            spk_rec[i].append(spk)
            if record_state:
                u_rec[i].append(states[i].u)
                v_rec[i].append(states[i].v)
    layer_spikes = tuple(torch.stack(s).to(torch.float32) for s in spk_rec)
    return EmulationResult(
        spikes=layer_spikes[-1],
        layer_spikes=layer_spikes,
        u=tuple(torch.stack(r) for r in u_rec) if record_state else None,
        v=tuple(torch.stack(r) for r in v_rec) if record_state else None,
        output_lag=len(prepared),
    )
