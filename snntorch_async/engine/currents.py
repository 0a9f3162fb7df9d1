"""Synaptic currents of one delivery: delivered spikes through a layer's ops.

Three ways, chosen per delivery by :func:`layer_current`: the dense op chain (the modules called
as LayerSync calls them: bit-identical currents for whole-layer deliveries), the sparse gather of
transposed weight rows for a lone ``nn.Linear`` (cost: events x fan-out; the inference arithmetic
the native kernel reproduces bit for bit), and a delay layer's per-delay synapses
(:func:`delayed_current`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..graph import Layer
from ..ops import LinearOp, MaxPoolOp

__all__ = ["WeightRows", "layer_current", "delayed_current", "received_count", "SPARSE_RATIO"]

#: A partial delivery gathers weight rows when it holds fewer events than 1/SPARSE_RATIO of its
#: inputs (measured on CPU: gather + index_add costs ~30x a dense GEMM per event and output).
SPARSE_RATIO = 32


class WeightRows:
    """``Wᵀ`` contiguous per lone ``nn.Linear`` (rows = inputs: gathering them is cheap), built on
    first use. The plan keeps one for the whole simulation in inference; with gradients the
    engine makes a fresh one per time step (autograd sees a fresh transpose in every step)."""

    def __init__(self) -> None:
        self._rows: dict[int, Tensor] = {}

    def of(self, op: LinearOp) -> Tensor:
        rows = self._rows.get(id(op))
        if rows is None:
            rows = self._rows[id(op)] = op.module.weight.t().contiguous()
        return rows


def apply_chain(
    layer: Layer, x: Tensor, with_bias: bool, pools: dict, synops: Tensor | None
) -> Tensor:
    """Run a layer's ops on delivered spikes ``x`` ``[B, *in_shape]`` (``pools``: the max-pool
    masks of this step, updated)."""
    for j, op in enumerate(layer.ops):
        if op.weighted and synops is not None:
            with torch.no_grad():
                synops += op.synops(x)
        if isinstance(op, MaxPoolOp):
            x, pools[j] = op.deliver_once(x, pools.get(j))
        elif with_bias:
            x = op.forward(x)
        else:
            x = op.deliver(x)
    return x


def _with_bias(cur: Tensor, op: LinearOp, first: Tensor) -> Tensor:
    if op.module.bias is not None and bool(first.any()):
        cur = cur + first.unsqueeze(1).to(cur.dtype) * op.module.bias
    return cur


def sparse_linear_current(
    op: LinearOp, x: Tensor, first: Tensor, synops: Tensor, rows: WeightRows
) -> Tensor:
    """``x Wᵀ`` for a few delivered events per sample: gathers the rows of ``Wᵀ`` of the
    delivered inputs instead of a dense matrix product; the bias for samples in ``first``."""
    xf = x.flatten(1)
    with torch.no_grad():
        synops += op.synops(xf)
    b_idx, j_idx = (xf.detach() != 0).nonzero(as_tuple=True)
    wt = rows.of(op)
    contrib = wt[j_idx] * xf[b_idx, j_idx].unsqueeze(1)
    cur = torch.zeros((xf.shape[0], wt.shape[1]), device=xf.device, dtype=xf.dtype)
    cur = cur.index_add(0, b_idx, contrib)
    return _with_bias(cur, op, first)


def layer_current(
    layer: Layer,
    lone: LinearOp | None,
    x: Tensor,
    first: Tensor,
    pools: dict,
    synops: Tensor,
    rows: WeightRows,
    sparse: bool = False,
    exact: bool = False,
) -> Tensor:
    """Current into ``layer`` from delivered spikes ``x``; samples in ``first`` get the bias.

    With ``sparse`` (a partial group was delivered) a lone ``nn.Linear`` (``lone``) gathers the
    delivered rows when few events arrive; with ``exact`` it always gathers (the inference
    arithmetic, which the native kernel reproduces). Otherwise the modules are called as
    LayerSync calls them.
    """
    if (
        (sparse or exact)
        and lone is not None
        and (exact or SPARSE_RATIO * int((x.detach() != 0).sum()) < x.numel())
    ):
        return sparse_linear_current(lone, x, first, synops, rows)
    n_first = int(first.sum()) if layer.has_bias else 0
    if n_first == 0:
        return apply_chain(layer, x, False, pools, synops)
    if n_first == first.numel():
        return apply_chain(layer, x, True, pools, synops)
    saved = dict(pools)
    with_b = apply_chain(layer, x, True, pools, synops)
    without = apply_chain(layer, x, False, dict(saved), None)
    return torch.where(first.view(-1, *([1] * (with_b.dim() - 1))), with_b, without)


def delayed_current(
    op,
    x: Tensor | None,
    arrived: list[tuple[int, Tensor]],
    first: Tensor,
    synops: Tensor,
    like: Tensor,
) -> Tensor:
    """Current into a delay layer: ``x`` through the delay-0 synapses, each arrived group
    ``(k, xk)`` through the delay-``k`` synapses, the bias for samples in ``first``."""
    cur = torch.zeros_like(like)
    if x is not None:
        xf = x.flatten(1)
        with torch.no_grad():
            synops += op.synops(xf)  # every synapse of a spike is counted once, when it is sent
        if 0 in op.delay_values:
            cur = cur + op.deliver_at(xf, 0)
    for k, xk in arrived:
        cur = cur + op.deliver_at(xk, k)
    return _with_bias(cur, op, first)


def received_count(layer: Layer, x: Tensor) -> Tensor:
    """Number of synaptic events each neuron receives from delivered spikes ``x``."""
    c = (x.detach() != 0).to(x.dtype)
    for op in layer.ops:
        c = op.apply(c, (op.module.weight.detach() != 0).to(c.dtype) if op.weighted else None)
    return c
