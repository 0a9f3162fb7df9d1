"""Convert a user's snnTorch model (via the network graph) into a :class:`NetworkSpec`.

Mapping (docs/lava.md), per layer, float64::

    nn.Linear.weight [out, in]            -> LayerSpec.weight (same layout)
    DelayedLinear                         -> weight + delay (Lava DelayDense)
    Conv2d (+ AvgPool2d / Flatten ...)    -> one dense [out, in] matrix (logged: "conv2d-as-dense")
    bias of the layer's ops, ops(0)       -> LayerSpec.bias, with the chosen bias_timing (spec.py)
    snn.Leaky(beta, threshold)            -> du = 1,         dv = 1 - beta, vth = threshold
    snn.Synaptic(alpha, beta, threshold)  -> du = 1 - alpha, dv = 1 - beta, vth = threshold
    snn.RLeaky / snn.RSynaptic            -> as Leaky / Synaptic, plus
        recurrent nn.Linear(N, N).weight  -> LayerSpec.recurrent (a Dense from the layer to itself)
        one-to-one V                      -> LayerSpec.recurrent = diag(V)
        recurrent nn.Linear.bias          -> added to LayerSpec.bias (a constant current per step
                                             from step 0, like the layer bias: same bias_timing)

The recurrent hop takes one step in Lava (``LIF.s_out → Dense → LIF.a_in``), which is snnTorch's
``spk[t-1]``. RSynaptic runs with ``reset_delay=True`` only (snnTorch 1.0), so it converts with
``approximate_reset=True``.

Only ``reset_mechanism="zero", reset_delay=False`` maps exactly (Lava's LIF sets ``v ← 0`` in the
step it spikes). Other reset rules are refused with an error naming the layer and both fixes;
``approximate_reset=True`` converts them anyway (Lava will run zero reset), records the source
rule in ``NeuronSpec.source_reset``, and :func:`lava_bridge.verify.verify` measures the mismatch.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

if (
    TYPE_CHECKING
):  # torch and snntorch_async are imported on first use (lava_bridge imports without torch)
    from snntorch_async.bias_timing import BiasTiming
    from snntorch_async.graph import Layer, NetworkGraph
    from torch import nn

from .errors import ConversionError
from .limits import LOIHI_LIMITS, check_loihi_limits
from .spec import LayerSpec, NetworkSpec, NeuronSpec

__all__ = ["convert", "check_loihi_limits", "LOIHI_LIMITS"]

log = logging.getLogger(__name__)

#: Largest dense matrix (elements) a convolution is unrolled into before we refuse.
MAX_DENSE_ELEMENTS = 50_000_000


def _op_kinds() -> dict:
    from snntorch_async.ops import AvgPoolOp, Conv2dOp, FlattenOp, IdentityOp, LinearOp

    return {
        LinearOp: "linear",
        Conv2dOp: "conv2d-as-dense",
        AvgPoolOp: "conv2d-as-dense",
        FlattenOp: None,
        IdentityOp: None,
    }


def _is_delayed(op) -> bool:
    return op.stateful and hasattr(op, "delays")


def _check_ops(layer: Layer) -> str:
    """The layer's source kind; raises for ops that have no dense (Lava) counterpart."""
    from snntorch_async.ops import MaxPoolOp

    op_kind = _op_kinds()
    kinds = []
    for op in layer.ops:
        if isinstance(op, MaxPoolOp):
            raise ConversionError(
                f"Layer {layer.index} ('{layer.path}'): nn.MaxPool2d at '{op.path}' is not linear, "
                "so it has no Lava Dense counterpart. Fix: use nn.AvgPool2d or a strided "
                "nn.Conv2d instead, and retrain."
            )
        if _is_delayed(op):
            kinds.append("delayed-linear")
            continue
        kind = op_kind.get(type(op), "unknown")
        if kind == "unknown":
            raise ConversionError(
                f"Layer {layer.index} ('{layer.path}'): op '{op.path}' ({type(op.module).__name__}) "
                "cannot be converted to Lava. Supported: nn.Linear, DelayedLinear, nn.Conv2d, "
                "nn.AvgPool2d, nn.Flatten, nn.Identity, nn.Dropout."
            )
        if kind is not None:
            kinds.append(kind)
    if "delayed-linear" in kinds and len(kinds) > 1:
        raise ConversionError(
            f"Layer {layer.index} ('{layer.path}'): a DelayedLinear must be the only weighted or "
            f"pooling op of its layer (got {kinds}). Fix: put a spiking neuron between them."
        )
    if "conv2d-as-dense" in kinds:
        return "conv2d-as-dense"
    if kinds.count("linear") > 1:
        return "dense"
    return kinds[0]


def _dense(layer: Layer) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The layer's ops as ``weight [out, in]``, ``delay [out, in]`` or None, ``bias [out]`` or None."""
    import torch

    if any(_is_delayed(op) for op in layer.ops):
        op = next(op for op in layer.ops if _is_delayed(op))
        m = op.module
        w = m.weight.detach().to("cpu", torch.float64).numpy()
        d = m.delays.detach().to("cpu").numpy().astype(np.int64)
        b = None if m.bias is None else m.bias.detach().to("cpu", torch.float64).numpy()
        return w, d, b
    in_size = int(np.prod(layer.in_shape))
    out_size = layer.numel
    if in_size * out_size > MAX_DENSE_ELEMENTS:
        raise ConversionError(
            f"Layer {layer.index} ('{layer.path}') unrolls into a dense {out_size}x{in_size} "
            f"matrix ({in_size * out_size:,} weights, over the limit of {MAX_DENSE_ELEMENTS:,}). "
            "Fix: use a smaller input or fewer channels for Lava."
        )
    chunk = max(1, min(in_size, MAX_DENSE_ELEMENTS // (8 * max(out_size, 1))))
    with torch.no_grad():
        w = layer.dense_matrix(torch.float64, chunk=chunk).numpy()
        bias = layer.bias_current(torch.float64, "cpu")
    return w, None, None if bias is None else bias.reshape(-1).numpy()


def _recurrence(layer: Layer, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """A recurrent layer's ``[N, N]`` matrix and its bias with the recurrent bias added."""
    import torch

    with torch.no_grad():
        rec = layer.neuron.recurrent_matrix(torch.float64).detach().to("cpu").numpy().copy()
        rb = layer.neuron.recurrent_bias(torch.float64, "cpu")
    if rb is not None:
        rb = rb.detach().reshape(-1).numpy()
        bias = rb.copy() if bias is None else bias + rb
    return rec, bias


def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]


def conv_geometry(layer: Layer) -> dict | None:
    """The layer's matrix as one convolution, for netx's ``conv`` layers, or ``None``.

    A layer of ops ``Conv2d`` (``groups = dilation = 1``, zero padding) optionally followed by
    non-overlapping, unpadded ``AvgPool2d`` is one strided convolution (both are linear and
    shift-equivariant): kernel ``kc + (kp - 1)·sc``, stride ``sc·sp``, the convolution's padding.
    Returns ``{"in_shape", "out_shape", "kernel", "stride", "padding"}`` (``[C, H, W]`` and
    ``[h, w]`` pairs), recorded in ``LayerSpec.meta["conv"]``; the dense matrix stays the
    meaning (``lava_bridge.netx`` re-derives the kernel from it and checks it is exact).
    """
    from torch import nn

    ops = [op for op in layer.ops if type(op.module).__name__ not in ("Identity", "Dropout")]
    if not ops or not isinstance(ops[0].module, nn.Conv2d) or len(layer.in_shape) != 3:
        return None
    c = ops[0].module
    if (
        c.groups != 1
        or _pair(c.dilation) != [1, 1]
        or c.padding_mode != "zeros"
        or isinstance(c.padding, str)
    ):
        return None
    kernel, stride, padding = _pair(c.kernel_size), _pair(c.stride), _pair(c.padding)
    for op in ops[1:]:
        m = op.module
        if isinstance(m, nn.Flatten):
            continue
        if not isinstance(m, nn.AvgPool2d) or m.ceil_mode or _pair(m.padding) != [0, 0]:
            return None
        kp, sp = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
        if kp != sp:
            return None
        kernel = [k + (q - 1) * s for k, q, s in zip(kernel, kp, stride)]
        stride = [s * q for s, q in zip(stride, sp)]
    out_c = c.out_channels
    n = int(np.prod(layer.shape))
    if n % out_c:
        return None
    hw = [
        (i + 2 * p - k) // s + 1 for i, p, k, s in zip(layer.in_shape[1:], padding, kernel, stride)
    ]
    if out_c * hw[0] * hw[1] != n:
        return None
    return dict(
        in_shape=list(layer.in_shape),
        out_shape=[out_c, *hw],
        kernel=kernel,
        stride=stride,
        padding=padding,
    )


def _neuron(layer: Layer, approximate_reset: bool) -> NeuronSpec:
    import torch
    from snntorch_async.neurons import RESET_NAMES

    n = layer.neuron
    exact = layer.exact_on_lava
    if not exact and not approximate_reset:
        raise ConversionError(
            f"Layer {layer.index} ('{layer.path}', {type(n.module).__name__}) uses "
            f"reset_mechanism='{n.reset_name}', reset_delay={n.reset_delay}; Lava's LIF resets the "
            "membrane to zero in the step it spikes, so only reset_mechanism='zero' with "
            "reset_delay=False converts exactly. Fix: retrain with reset_mechanism='zero', "
            "reset_delay=False; or pass approximate_reset=True to convert anyway (Lava then "
            "runs zero reset) and measure the spike mismatch with lava_bridge.verify."
        )
    if not exact:
        log.warning(
            "Layer %d ('%s'): approximating reset '%s' (reset_delay=%s) by Lava's zero reset; "
            "measure the mismatch with lava_bridge.verify.",
            layer.index,
            layer.path,
            n.reset_name,
            n.reset_delay,
        )
    with torch.no_grad():
        p = n.params()
        shape = (layer.numel,)

        def per_neuron(t: torch.Tensor) -> np.ndarray:
            t = t.detach().to("cpu", torch.float64)
            return torch.broadcast_to(t, layer.shape).reshape(shape).numpy().copy()

        beta = per_neuron(p.beta)
        du = np.ones(shape) if p.alpha is None else 1.0 - per_neuron(p.alpha)
        vth = per_neuron(p.threshold)
    return NeuronSpec(
        du=du,
        dv=1.0 - beta,
        vth=vth,
        kind="synaptic" if n.has_syn else "leaky",
        source_reset=RESET_NAMES[n.reset],
        source_reset_delay=n.reset_delay,
    )


def convert(
    model_or_graph: nn.Module | NetworkGraph,
    input_shape: tuple[int, ...] | None = None,
    *,
    approximate_reset: bool = False,
    dt: float = 1.0,
    bias_timing: BiasTiming | str = "synaptic",
) -> NetworkSpec:
    """Convert a model (or its graph) to a float :class:`NetworkSpec` for Lava.

    Args:
        model_or_graph: The user's ``nn.Sequential`` or a graph from ``read_model``.
        input_shape: Per-sample input shape (required for a model, e.g. ``(784,)``).
        approximate_reset: Convert layers whose reset rule Lava cannot run exactly (subtract,
            none, ``reset_delay=True``) by Lava's zero reset, instead of raising.
        dt: The time step recorded in the spec.
        bias_timing: When each layer's bias flows (``snntorch_async.BiasTiming``, recorded on
            every layer): ``SYNAPTIC`` (default) reproduces the model as LayerSync/snnTorch
            runs it; ``LAVA`` is Lava's LIF bias (into ``v`` from step 0), what netx files and
            natively built Lava networks do, and what ``Pipelined(bias_timing=BiasTiming.LAVA)``
            trains.

    Raises:
        ConversionError: A layer cannot be converted (reset rule without opt-in, max pooling...).
        LoihiLimitError: Delays outside 0..62.
    """
    from snntorch_async.bias_timing import BiasTiming
    from snntorch_async.graph import NetworkGraph, read_model
    from snntorch_async.recurrent import is_recurrent

    try:
        timing = BiasTiming.coerce(bias_timing, "convert(bias_timing=...)")
    except ValueError as e:
        raise ConversionError(str(e)) from None

    if isinstance(model_or_graph, NetworkGraph):
        graph = model_or_graph
    else:
        if input_shape is None:
            raise ConversionError(
                "convert(model) needs the per-sample input shape, e.g. convert(model, (784,)) "
                "for inputs [T, B, 784]. Fix: pass input_shape, or a graph from read_model."
            )
        graph = read_model(model_or_graph, tuple(input_shape))
    layers = []
    for layer in graph.layers:
        source = _check_ops(layer)
        neuron = _neuron(layer, approximate_reset)
        w, d, b = _dense(layer)
        if source == "conv2d-as-dense":
            log.info(
                "Layer %d ('%s'): convolution unrolled into a dense %dx%d matrix (Lava Dense).",
                layer.index,
                layer.path,
                w.shape[0],
                w.shape[1],
            )
        geometry = conv_geometry(layer) if source == "conv2d-as-dense" else None
        meta: dict = {} if geometry is None else {"conv": geometry}
        rec = None
        if is_recurrent(layer):
            rec, b = _recurrence(layer, b)
            meta["recurrent"] = "all-to-all" if layer.neuron.all_to_all else "one-to-one"
        layers.append(
            LayerSpec(
                name=layer.path,
                weight=w,
                neuron=neuron,
                shape=tuple(layer.shape),
                delay=d,
                bias=b,
                source=source,
                bias_timing=timing.value,
                meta=meta,
                recurrent=rec,
            )
        )
    spec = NetworkSpec(layers=tuple(layers), input_shape=tuple(graph.input_shape), dt=dt)
    check_loihi_limits(spec)
    return spec
