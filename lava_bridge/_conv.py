"""Convolution layers for Lava: re-derive a kernel from a layer's dense matrix (netx and build).

``convert`` records, for a layer that is one (strided) convolution, its geometry in
``LayerSpec.meta["conv"]`` (``lava_bridge._convert.conv_geometry``); the dense matrix stays the
layer's meaning. lava-dl's netx reader builds a ``conv`` layer as Lava's ``Conv`` process, whose
fixed-point model adds the integer kernel as it is (no weight exponent, no sign-mode truncation;
the sum clamped to 24 bits), while ``Dense`` (and :func:`lava_bridge.emulate`) use the truncated
mantissas ``loihi_weights(W) << weight_exp``. So the kernel written is read from those effective
weights, and a layer is written as ``conv`` only if that kernel, unrolled again, is *exactly* the
effective dense matrix, its channel bias is one value per channel, and no sum can reach 2^23;
otherwise it stays ``dense`` (logged). :func:`lava_bridge.build` uses the same kernel for Lava's
``Conv`` process (float: the float matrix; fixed point: the effective weights), so a ``Conv``
network computes exactly what the dense form (and ``emulate``) computes.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from .spec import LayerSpec

log = logging.getLogger(__name__)

#: Lava's Conv clamps its accumulated sum to signed 24 bits.
_A_LIMIT = 2**23


class ConvLayer(NamedTuple):
    """A layer as netx writes a ``conv``: kernel ``[O, C, kh, kw]`` (torch layout) and geometry."""

    kernel: np.ndarray
    stride: list[int]
    padding: list[int]
    in_shape: list[int]
    out_shape: list[int]
    bias: np.ndarray | None  # [O] per channel (LIF bias_mant), or None


def _unroll(kernel: np.ndarray, geometry: dict) -> np.ndarray:
    """The dense ``[out, in]`` matrix of the convolution (exact: integer kernel, float64)."""
    import torch
    import torch.nn.functional as F

    C, H, W = geometry["in_shape"]
    n_in = C * H * W
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, C, H, W)
    out = F.conv2d(
        eye,
        torch.tensor(kernel, dtype=torch.float64),
        stride=geometry["stride"],
        padding=geometry["padding"],
    )
    return out.reshape(n_in, -1).T.numpy()


def kernel_unrolls_to(kernel: np.ndarray, geometry: dict, matrix: np.ndarray) -> bool:
    """True if the convolution of ``kernel`` (``[O, C, kh, kw]``) unrolled is exactly ``matrix``.

    The same test as ``np.array_equal(_unroll(kernel, geometry), matrix)`` without building the
    unrolled matrix: every (output neuron, kernel tap) pair that lands inside the input names one
    entry ``matrix[o·Ho·Wo + y·Wo + x, c·H·W + iy·W + ix]`` with ``iy = y·sh - ph + dy`` (and
    ``ix`` alike), which must equal ``kernel[o, c, dy, dx]``; these entries are distinct, so the
    matrix holds nothing else if it has as many non-zeros as they do.
    """
    O, Ho, Wo = geometry["out_shape"]
    C, H, W = geometry["in_shape"]
    (sh, sw), (ph, pw) = geometry["stride"], geometry["padding"]
    kernel = np.asarray(kernel)
    if kernel.ndim != 4 or kernel.shape[:2] != (O, C) or matrix.shape != (O * Ho * Wo, C * H * W):
        return False
    kh, kw = kernel.shape[2:]
    o, y, x, c, dy, dx = np.meshgrid(
        *(np.arange(n) for n in (O, Ho, Wo, C, kh, kw)), indexing="ij", sparse=True
    )
    iy, ix = y * sh - ph + dy, x * sw - pw + dx
    full = (O, Ho, Wo, C, kh, kw)
    inside = np.broadcast_to((iy >= 0) & (iy < H) & (ix >= 0) & (ix < W), full)
    rows = np.broadcast_to((o * Ho + y) * Wo + x, full)[inside]
    cols = np.broadcast_to((c * H + iy) * W + ix, full)[inside]
    vals = np.broadcast_to(kernel[:, None, None], full)[inside]
    return bool(
        np.array_equal(matrix[rows, cols], vals)
        and np.count_nonzero(matrix) == np.count_nonzero(vals)
    )


def lava_conv_weight(kernel: np.ndarray) -> np.ndarray:
    """A torch-layout kernel ``[O, C, kh, kw]`` in Lava ``Conv``'s layout ``(O, kx, ky, C)``.

    The transform lava-dl's netx reader applies to a file's ``conv`` weight (flipped in both
    spatial axes); the tests check that the result equals our dense form.
    """
    return np.ascontiguousarray(kernel[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))


def whc(a: np.ndarray, chw: list[int]) -> np.ndarray:
    """A per-neuron ``[C·H·W]`` array (C order) in Lava's ``(W, H, C)`` neuron layout."""
    return np.asarray(a).reshape(chw).transpose(2, 1, 0)


def conv_kernel(layer: LayerSpec, matrix: np.ndarray, where: str) -> ConvLayer | None:
    """The kernel whose unrolled convolution is exactly ``matrix`` (or ``None``; logged).

    Args:
        layer: A layer with ``meta["conv"]`` (float or fixed point, no delays).
        matrix: The dense ``[out, in]`` weights to match (float, or effective integers).
        where: The layer, for log messages.

    Returns:
        A :class:`ConvLayer` without bias (``bias=None``).
    """
    g = layer.meta.get("conv")
    if g is None or layer.delay is not None:
        return None
    O, Ho, Wo = g["out_shape"]
    C, H, W = g["in_shape"]
    kh, kw = g["kernel"]
    (sh, sw), (ph, pw) = g["stride"], g["padding"]
    # an output position whose window lies inside the input holds the whole kernel
    ys = [y for y in range(Ho) if y * sh - ph >= 0 and y * sh - ph + kh <= H]
    xs = [x for x in range(Wo) if x * sw - pw >= 0 and x * sw - pw + kw <= W]
    if not ys or not xs:
        log.info(
            "%s: no interior output position to read the kernel from; written as dense.", where
        )
        return None
    y0, x0 = ys[0], xs[0]
    rows = np.arange(O) * Ho * Wo + y0 * Wo + x0
    dense = matrix.reshape(O * Ho * Wo, C, H, W)
    kernel = dense[rows][:, :, y0 * sh - ph : y0 * sh - ph + kh, x0 * sw - pw : x0 * sw - pw + kw]
    kernel = np.ascontiguousarray(kernel)
    if not kernel_unrolls_to(kernel, g, matrix):
        log.info("%s: the dense matrix is not one convolution kernel; kept dense.", where)
        return None
    return ConvLayer(kernel, [sh, sw], [ph, pw], [C, H, W], [O, Ho, Wo], None)


def conv_layer(layer: LayerSpec, effective: np.ndarray, where: str) -> ConvLayer | None:
    """``layer`` as a netx ``conv`` (see the module docstring), or ``None`` to keep it dense.

    Args:
        layer: A fixed-point layer with ``meta["conv"]``.
        effective: Its weights as Lava's Dense uses them (``loihi_weights(W) << weight_exp``).
        where: The layer, for log messages.
    """
    c = conv_kernel(layer, effective, where)
    if c is None:
        return None
    kernel = c.kernel.astype(np.int64)
    O, Ho, Wo = c.out_shape
    peak = max(
        np.clip(kernel, 0, None).sum(axis=(1, 2, 3)).max(),
        -np.clip(kernel, None, 0).sum(axis=(1, 2, 3)).min(),
    )
    if peak >= _A_LIMIT:
        log.info("%s: a sum could reach 2^23 (Lava's Conv clamps it); written as dense.", where)
        return None
    bias = None
    if layer.bias is not None:
        b = layer.lif_bias_mant().reshape(O, Ho * Wo)
        if not np.all(b == b[:, :1]):
            log.info("%s: the bias is not one value per channel; written as dense.", where)
            return None
        bias = b[:, 0].copy()
    return c._replace(kernel=kernel, bias=bias)
