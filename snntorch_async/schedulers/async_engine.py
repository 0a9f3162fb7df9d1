"""One time step of asynchronous execution (shared by every asynchronous scheduler).

Per sample (all vectorised over the batch) and per time step:

1. *Leak*: every layer's neuron kernel computes its start-of-step membrane (``Neuron.begin``).
   Neurons whose membrane would exceed threshold with no synaptic input at all (e.g. a large bias,
   or a subtract-reset carry-over) are *candidates*.
2. *Input*: with ``prioritize_input`` the whole input frame is delivered in a first forward step;
   otherwise the input's non-zero entries join the pending set as events.
3. *Forward steps*, while something is pending (or a layer still holds unreached candidates):
   select up to ``F`` pending spikes per sample by the strategy's priority, deliver them through
   the receiving layers' ops (a layer's bias arrives with the first delivery into that layer in
   the step), add the current to each neuron's accumulated step current, and let the evaluated
   neurons fire once (``mem > thr``), their spikes joining the pending set. A neuron is evaluated
   when it received non-zero current, and — at the first delivery into its layer in the step —
   every neuron of the layer is evaluated (``full_layer_evaluation``) or only its candidates.
   When nothing is pending but a layer that no spike reached holds candidates, a *settle* forward
   step reaches the lowest such layer (bias only).
4. *Finish*: the neuron kernel turns the step's accumulated current and spikes into the new
   state, with exactly snnTorch's reset formulas. Zero-reset neurons discard current that arrives
   after they fired (held at 0 until the next leak).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..neurons import ZERO
from ..ops import FlattenOp, IdentityOp, LinearOp, MaxPoolOp
from .base import SimContext, StepOutput

if TYPE_CHECKING:  # pragma: no cover
    from .asynchronous import AsyncScheduler, AsyncState


def _apply_chain(layer, x: Tensor, with_bias: bool, pools: dict, synops: Tensor | None) -> Tensor:
    """Run a layer's ops on delivered spikes ``x`` ``[B, *in_shape]``."""
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


def delayed_linear(layer):
    """The layer's delay op (``DelayedLinearOp``) if it has synapses with delay > 0 and is the
    layer's only weighted op (behind Flatten / Identity / eval Dropout); else ``None``."""
    lin = lone_linear(layer)
    if lin is None or not lin.stateful:
        return None
    return lin if any(k > 0 for k in lin.delay_values) else None


def arrival_groups(graph) -> list[tuple[int, int]]:
    """The delayed arrival groups ``(layer, k)``: for every delay layer, one per delay ``k > 0``.

    A spike delivered to a delay layer at step ``t`` reaches it through the delay-0 synapses at
    once and, for each ``k > 0``, joins the pending set of step ``t + k`` as an event of group
    ``(layer, k)``, delivered through the synapses of delay ``k`` only.
    """
    out = []
    for l, layer in enumerate(graph.layers):
        op = delayed_linear(layer)
        if op is not None:
            out += [(l, k) for k in op.delay_values if k > 0]
    return out


def _delayed_current(op, x: Tensor | None, arrived: list[tuple[int, Tensor]], first: Tensor,
                     synops: Tensor, like: Tensor) -> Tensor:
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
    if op.module.bias is not None and bool(first.any()):
        cur = cur + first.unsqueeze(1).to(cur.dtype) * op.module.bias
    return cur


def lone_linear(layer) -> LinearOp | None:
    """The layer's ``nn.Linear`` if its ops are only that (plus Flatten / Identity / eval Dropout)."""
    found = None
    for op in layer.ops:
        if isinstance(op, LinearOp) and found is None:
            found = op
        elif isinstance(op, FlattenOp) or (isinstance(op, IdentityOp) and not op.module.training):
            continue
        else:
            return None
    return found


def _sparse_linear_current(
    op: LinearOp, x: Tensor, first: Tensor, synops: Tensor, cache: dict
) -> Tensor:
    """``x Wᵀ`` for a few delivered events per sample: gathers the columns of the delivered
    inputs (cost: events × fan-out) instead of a dense matrix product; bias for ``first``."""
    xf = x.flatten(1)
    with torch.no_grad():
        synops += op.synops(xf)
    b_idx, j_idx = (xf.detach() != 0).nonzero(as_tuple=True)
    wt = transposed_weight(op, cache)  # rows of Wᵀ are contiguous: gathering them is cheap
    contrib = wt[j_idx] * xf[b_idx, j_idx].unsqueeze(1)
    cur = torch.zeros((xf.shape[0], wt.shape[1]), device=xf.device, dtype=xf.dtype)
    cur = cur.index_add(0, b_idx, contrib)
    if op.module.bias is not None and bool(first.any()):
        cur = cur + first.unsqueeze(1).to(cur.dtype) * op.module.bias
    return cur


def transposed_weight(op: LinearOp, cache: dict) -> Tensor:
    """``Wᵀ`` contiguous (rows = inputs), built once per ``cache``: the simulation's scratch
    space in inference, a per-time-step dict when gradients are recorded (autograd then sees a
    fresh transpose of the parameter in every step, as before)."""
    key = ("wt", id(op))
    if key not in cache:
        cache[key] = op.module.weight.t().contiguous()
    return cache[key]


#: A partial delivery gathers weight rows when it holds fewer events than 1/SPARSE_RATIO of its
#: inputs (measured on CPU: gather + index_add costs ~30x a dense GEMM per event and output).
SPARSE_RATIO = 32


def _layer_current(
    layer, x: Tensor, first: Tensor, pools: dict, synops: Tensor, sparse: bool = False,
    cache: dict | None = None, exact: bool = False,
) -> Tensor:
    """Current into ``layer`` from delivered spikes; samples in ``first`` also get the bias.

    With ``sparse`` (a partial group was delivered) a lone ``nn.Linear`` gathers the delivered
    columns instead of multiplying a mostly-zero matrix; otherwise the dense path calls the
    modules exactly as LayerSync does (bit-identical currents for whole-layer deliveries).
    With ``exact`` a lone ``nn.Linear`` always gathers (the inference arithmetic, which the
    native kernel reproduces bit for bit).
    """
    if sparse or exact:
        lin = lone_linear(layer)
        if lin is not None and (
            exact or SPARSE_RATIO * int((x.detach() != 0).sum()) < x.numel()
        ):
            return _sparse_linear_current(lin, x, first, synops, cache if cache is not None else {})
    n_first = int(first.sum()) if layer.has_bias else 0
    if n_first == 0:
        return _apply_chain(layer, x, False, pools, synops)
    if n_first == first.numel():
        return _apply_chain(layer, x, True, pools, synops)
    saved = dict(pools)
    with_b = _apply_chain(layer, x, True, pools, synops)
    without = _apply_chain(layer, x, False, dict(saved), None)
    return torch.where(first.view(-1, *([1] * (with_b.dim() - 1))), with_b, without)


def _received_count(layer, x: Tensor) -> Tensor:
    """Number of synaptic events each neuron receives from delivered spikes ``x`` (sync rule)."""
    c = (x.detach() != 0).to(x.dtype)
    for op in layer.ops:
        if op.weighted:
            c = op.apply(c, (op.module.weight.detach() != 0).to(c.dtype))
        elif isinstance(op, MaxPoolOp):
            c = op.module(c)
        else:
            c = op.deliver(c)
    return c


def _take(buf: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Split ``buf`` by ``mask`` (broadcastable): ``(the masked entries, buf with them zeroed)``."""
    zero = torch.zeros_like(buf)
    return torch.where(mask, buf, zero), torch.where(mask, zero, buf)


def _bview(mask: Tensor, like: Tensor) -> Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1)))


def _leak(ctx: SimContext, state) -> tuple[list, list[Tensor]]:
    """Each layer's start-of-step base (``Neuron.begin``) and its candidates ``[B, *shape]``:
    the neurons that fire with no synaptic input at all (bias alone)."""
    bases, cand = [], []
    for l, layer in enumerate(ctx.graph.layers):
        p = ctx.params[l]
        base = layer.neuron.begin(p, state.neurons[l])
        with torch.no_grad():
            mem0, _ = layer.neuron.membrane(p, base, state.zero_current[l])
            cand.append((layer.neuron.fire(p, mem0) > 0).expand((ctx.batch, *layer.shape)))
        bases.append(base)
    return bases, cand


def _initial_keys(sched, prio, sizes, off, gen, B, dev, dt):
    """Keys of the pending sources at the start of a time step (higher goes first; a source's key
    is fixed when it becomes pending), the step's noise draws and the race clock."""
    total = sum(sizes)
    mode = sched.key_mode
    noise = clock = None
    if mode == "random":  # exponential race: key = -(clock + Exp(1)), see docs/async.md
        u = torch.rand((B, total), generator=gen, device=dev, dtype=dt)
        noise = u.neg_().add_(1).log_().neg_()  # -log(1 - U): Exp(1), finite (U < 1)
        keys = -noise
        clock = torch.zeros(B, device=dev, dtype=dt)
    elif mode == "membrane":
        noise = sched.jitter * torch.rand((B, total), generator=gen, device=dev, dtype=dt)
        keys = torch.cat([p.detach() for p in prio] + [noise[:, :0]], 1) + noise
        if off:  # non-prioritised input events go before every neuron spike
            keys[:, : sizes[0]] = float("inf")
    else:
        keys = (-torch.arange(total, device=dev).to(dt)).expand(B, -1).clone()
    return keys, noise, clock


def run_time_step(sched: "AsyncScheduler", ctx: SimContext, state: "AsyncState", x: Tensor, t: int):
    lib = _native_for(sched, ctx, state, x)
    if lib is not None:
        return _native_time_step(lib, sched, ctx, state, x)
    from .asynchronous import AsyncState

    graph, params = ctx.graph, ctx.params
    layers = graph.layers
    L, B, dev, dt = len(layers), ctx.batch, ctx.device, ctx.dtype
    training = graph.model.training
    gen = state.generator
    off = 0 if sched.prioritize_input else 1  # group index of layer l's spikes is l + off
    pending, prio = list(state.pending), list(state.priority)
    arrivals = arrival_groups(graph)
    n_regular = len(pending) - len(arrivals)
    queues = list(state.queues)
    for i in range(len(arrivals)):  # delayed spikes due now join the pending set
        g = n_regular + i
        pending[g] = pending[g] + queues[i][0]
        queues[i] = torch.cat([queues[i][1:], torch.zeros_like(queues[i][:1])], 0)
    delay_ops = [delayed_linear(layer) for layer in layers]
    sizes = [p.shape[1] for p in pending]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    total = sum(sizes)
    F = sched.forward_group_size
    exact = _exact_inference(sched, ctx, state, x)

    mode = sched.key_mode
    keys = noise = clock = None
    if F is not None and F < total:  # else every forward step delivers all pending: no order
        keys, noise, clock = _initial_keys(sched, prio, sizes, off, gen, B, dev, dt)

    # 1. leak; candidates = neurons that fire with the bias alone
    zero_cur = state.zero_current
    bases, cand = _leak(ctx, state)
    cand_any = [c.flatten(1).any(1) for c in cand]
    any_cand = bool(torch.stack(cand_any).any())
    # transposed weights for sparse deliveries: once per simulation in inference, else per step
    wt_cache: dict = {} if _needs_grad(ctx, x) else ctx.cache
    acc = [torch.zeros((B, *layer.shape), device=dev, dtype=dt) for layer in layers]
    fired = [torch.zeros((B, *layer.shape), device=dev, dtype=torch.bool) for layer in layers]
    evaluated = [torch.zeros_like(f) for f in fired]
    spikes = [torch.zeros((B, *layer.shape), device=dev, dtype=dt) for layer in layers]
    sync = [torch.zeros_like(a) for a in acc] if sched.sync_threshold is not None else None
    reached = torch.zeros((B, L), device=dev, dtype=torch.bool)
    # zero-valued outputs of evaluated, non-firing neurons: gradient carriers (silent_gradients)
    silent = [torch.zeros_like(p) for p in pending] if sched.silent_gradients else None
    pools: list[dict] = [{} for _ in layers]
    synops = torch.zeros((B, L), device=dev, dtype=dt)
    fsteps = torch.zeros(B, device=dev, dtype=torch.long)
    out_at = torch.full((B,), -1, device=dev, dtype=torch.long)
    stopped = torch.zeros(B, device=dev, dtype=torch.bool)

    def drop(v: Tensor, p: float) -> Tensor:
        if not training or p <= 0:
            return v
        keep = torch.rand(v.shape, generator=gen, device=dev, dtype=dt) >= p
        return v * keep

    def forward_step(
        deliveries: dict[int, Tensor],
        settle: Tensor | None,
        active: Tensor,
        sparse: bool = False,
        arrived: dict[int, list[tuple[int, Tensor]]] | None = None,
        exact_ok: bool = True,
    ) -> None:
        """Deliver ``deliveries[l]`` (source values ``[B, n]``) into layer ``l``; integrate; fire."""
        nonlocal out_at
        fsteps.add_(active.long())
        for l, layer in enumerate(layers):
            src = deliveries.get(l)
            late = arrived.get(l, []) if arrived else []
            has = (src.detach() != 0).any(1) if src is not None else None
            for _, xk in late:
                hk = (xk.detach() != 0).any(1)
                has = hk if has is None else has | hk
            go = settle[:, l] if settle is not None else None
            if has is None and go is None:
                continue
            touched = has if go is None else (go if has is None else has | go)
            if go is not None and not bool(touched.any()):  # (a delivery touches someone)
                continue
            first = touched & ~reached[:, l]
            if src is None:
                xin = torch.zeros((B, *layer.in_shape), device=dev, dtype=dt)
            else:
                xin = src.view(B, *layer.in_shape)
            if delay_ops[l] is not None:
                cur = _delayed_current(delay_ops[l], src, late, first, synops[:, l], acc[l])
                if src is not None:  # the delayed synapses' share travels: arrives k steps later
                    for i, (la, k) in enumerate(arrivals):
                        if la == l:
                            queues[i] = torch.cat(
                                [queues[i][: k - 1], (queues[i][k - 1] + src.flatten(1))[None],
                                 queues[i][k:]], 0)
            else:
                cur = _layer_current(layer, xin, first, pools[l], synops[:, l], sparse, wt_cache,
                                     exact and exact_ok)
            reached[:, l] |= first
            ev = cur.detach() != 0
            if sched.full_layer_evaluation:
                ev = ev | _bview(first, ev)
            else:
                ev = ev | (_bview(first, ev) & cand[l])
            if layer.neuron.reset == ZERO:
                cur = torch.where(fired[l], torch.zeros_like(cur), cur)
            acc[l] = acc[l] + cur
            can = ev & ~fired[l]
            mem, _ = layer.neuron.membrane(params[l], bases[l], acc[l])
            spk = layer.neuron.fire(params[l], mem)
            if sync is not None and src is not None:
                sync[l] = sync[l] + _received_count(layer, xin)
            if sync is not None:
                thr = _sync_threshold(sched, l, sync[l])
                can = can & (sync[l] > thr)
            spk_all = spk
            spk = spk * can
            new = spk.detach() > 0
            fired[l] = fired[l] | new
            # the record holds fired spikes here; a silent neuron gets one surrogate term per
            # step (at its end-of-step membrane, see finish), however often it was evaluated
            spikes[l] = spikes[l] + spk * new
            evaluated[l] = evaluated[l] | can
            if l < L - 1:  # output spikes have no targets: they never become pending
                g = l + off
                if silent is not None:
                    silent[g] = silent[g] + (spk_all * (can & ~new)).flatten(1)
                newf = new.flatten(1)
                s0, s1 = starts[g], starts[g] + sizes[g]
                if mode == "membrane":
                    memf = mem.detach().flatten(1)
                    prio[g] = torch.where(newf, memf, prio[g])
                    if keys is not None:
                        keys[:, s0:s1] = torch.where(newf, memf + noise[:, s0:s1], keys[:, s0:s1])
                elif mode == "random" and keys is not None:  # an already pending source keeps
                    fresh = newf & (pending[g].detach() == 0)  # its key
                    keys[:, s0:s1] = torch.where(
                        fresh, -(clock[:, None] + noise[:, s0:s1]), keys[:, s0:s1])
                # only fired spikes become pending (a silent neuron's zero output must not ride
                # along with a later spike of the same neuron: that would double its gradient)
                pending[g] = pending[g] + (spk * new).flatten(1)
            elif sched.stop_on_output is not None:
                hit = new.flatten(1).any(1) & (out_at < 0)
                out_at = torch.where(hit, fsteps, out_at)

    # 2. input
    if sched.prioritize_input:
        xin = drop(x.flatten(1), sched.input_dropout)
        frame = torch.zeros((B, L), device=dev, dtype=torch.bool)
        frame[:, 0] = True  # the whole frame arrives, even an all-zero one: layer 0 is reached
        # delayed input events due now are part of this step's input frame
        late0 = []
        for i, (la, k) in enumerate(arrivals):
            if la == 0:
                g = n_regular + i
                late0.append((k, drop(pending[g], sched.input_dropout)))
                pending[g] = torch.zeros_like(pending[g])
        forward_step({0: xin}, frame, torch.ones(B, device=dev, dtype=torch.bool), False, {0: late0},
                     exact_ok=False)
    else:
        pending[0] = pending[0] + x.flatten(1)

    # 3. forward steps
    no_source = torch.zeros((B, 0), device=dev, dtype=torch.bool)  # (single-layer networks)
    while True:
        pmask = torch.cat([p.detach() != 0 for p in pending] + [no_source], 1)
        has_pending = pmask.any(1)
        if any_cand:
            unreached_cand = torch.stack([cand_any[l] & ~reached[:, l] for l in range(L)], 1)
            active = ~stopped & (has_pending | unreached_cand.any(1))
        else:  # (common case: no neuron can fire without input, nothing to settle)
            active = ~stopped & has_pending
        if sched.max_forward_steps is not None:
            active &= fsteps < sched.max_forward_steps
        if sched.stop_on_output is not None:
            active &= ~((out_at >= 0) & (fsteps >= out_at + sched.stop_on_output))
        if not bool(active.any()):
            break
        pmask &= active[:, None]
        n_pend = pmask.sum(1)
        partial = not (F is None or F >= int(n_pend.max()))
        if not partial:
            sel = pmask
        else:  # the F highest keys; ties: lower source index first (as the native kernel)
            ranked = keys.masked_fill(~pmask, float("-inf"))
            idx = torch.sort(ranked, dim=1, descending=True, stable=True).indices[:, :F]
            sel = torch.zeros_like(pmask).scatter_(1, idx, True) & pmask
        if mode == "random" and keys is not None:  # the race clock moves to the last key taken
            kmin = keys.masked_fill(~sel, float("inf")).amin(1)
            clock = torch.where(sel.any(1), -kmin, clock)
        deliveries: dict[int, Tensor] = {}
        late: dict[int, list[tuple[int, Tensor]]] = {}
        for g in range(len(pending)):
            s = sel[:, starts[g] : starts[g] + sizes[g]]
            if not bool(s.any()):
                continue
            d, pending[g] = _take(pending[g], s)
            is_in = off and g == 0
            d = drop(d, sched.input_dropout if is_in else sched.spike_dropout)
            if silent is not None and not is_in and g < n_regular:
                carry, silent[g] = _take(silent[g], s.any(1, keepdim=True))
                d = d + carry
            if g >= n_regular:  # a delayed arrival group (layer, k)
                la, k = arrivals[g - n_regular]
                late.setdefault(la, []).append((k, d))
            else:
                deliveries[g - off + 1 if not is_in else 0] = d
        # settle: samples with nothing pending reach their lowest unreached candidate layer
        settle = None
        lone = active & ~has_pending
        if any_cand and bool(lone.any()):
            first_l = torch.argmax(unreached_cand.long(), 1)
            settle = torch.zeros((B, L), device=dev, dtype=torch.bool)
            settle[torch.arange(B, device=dev), first_l] = True
            settle &= lone[:, None]
            if silent is not None:  # the settled layer's silent inputs travel with the reach
                for l in range(1, L):
                    m = settle[:, l : l + 1]
                    if bool(m.any()):
                        g = l - 1 + off
                        carry, silent[g] = _take(silent[g], m)
                        deliveries[l] = deliveries[l] + carry if l in deliveries else carry
        forward_step(deliveries, settle, active, partial, late)
        if sched.stop_on_output is not None:
            stopped |= (out_at >= 0) & (fsteps >= out_at + sched.stop_on_output)

    # 4. finish
    new_states, counts = _finish(ctx, bases, acc, fired, evaluated, spikes, reached, zero_cur,
                                 silent, off)
    mems = tuple(s.mem for s in new_states) if ctx.record.membranes else None
    out = StepOutput(tuple(spikes), mems, counts, synops, fsteps)
    new_state = AsyncState(
        tuple(new_states), tuple(pending), tuple(prio), gen, zero_cur, tuple(queues)
    )
    return new_state, out


def _finish(ctx: SimContext, bases, acc, fired, evaluated, spikes, reached, zero_cur, silent,
            off) -> tuple[list, Tensor]:
    """End of a time step: unreached layers get their bias, the neuron kernels turn the step's
    current and spikes into the new states (snnTorch's reset formulas). Updates ``acc``,
    ``spikes`` and ``silent`` in place; returns the new states and the spike counts ``[B, L]``.
    ``evaluated`` ``None`` (the native kernel's inference): no surrogate-gradient terms to add."""
    layers, params = ctx.graph.layers, ctx.params
    L, B, dt = len(layers), ctx.batch, ctx.dtype
    new_states, counts = [], torch.zeros((B, L), device=ctx.device, dtype=dt)
    for l, layer in enumerate(layers):
        missing = ~reached[:, l]
        if bool(missing.any()):
            acc[l] = acc[l] + _bview(missing, acc[l]).to(dt) * zero_cur[l]
        mem, syn = layer.neuron.membrane(params[l], bases[l], acc[l])
        quiet_set = evaluated[l] & ~fired[l] if evaluated is not None else None
        if quiet_set is not None and bool(quiet_set.any()):  # value 0: only the surrogate gradient, as in LayerSync
            spikes[l] = spikes[l] + layer.neuron.fire(params[l], mem) * quiet_set
        if silent is not None and bool(missing.any()):
            # unreached layers are evaluated too (they cannot fire: no candidates), so that the
            # surrogate gradient flows as in LayerSync; zero outputs pass on as carriers
            if l > 0:
                src = silent[l - 1 + off].view(B, *layer.in_shape)
                extra = _apply_chain(layer, src, False, {}, None) * _bview(missing, acc[l]).to(dt)
                acc[l] = acc[l] + extra
                mem, syn = layer.neuron.membrane(params[l], bases[l], acc[l])
            quiet = layer.neuron.fire(params[l], mem) * _bview(missing, mem).to(dt)
            spikes[l] = spikes[l] + quiet
            if l < L - 1:
                g = l + off
                silent[g] = silent[g] + quiet.flatten(1)
        new_states.append(layer.neuron.finish(params[l], bases[l], mem, syn, spikes[l]))
        counts[:, l] = spikes[l].detach().flatten(1).sum(1)
    return new_states, counts


def _sync_threshold(sched, l: int, like: Tensor):
    st = sched.sync_threshold
    if isinstance(st, (list, tuple)):
        return st[l].detach().to(like.dtype)
    return float(st)


def zero_currents(ctx: SimContext) -> list[Tensor]:
    """Each layer's current for an all-zero input, ``[1, *shape]`` (the bias; differentiable)."""
    out = []
    for layer in ctx.graph.layers:
        z = torch.zeros((1, *layer.in_shape), device=ctx.device, dtype=ctx.dtype)
        out.append(layer.forward_current(z) if layer.has_bias
                   else torch.zeros((1, *layer.shape), device=ctx.device, dtype=ctx.dtype))
    return out


def _heaviside_forward(neuron) -> bool:
    """Whether the neuron's ``spike_grad`` is a plain Heaviside step forward (``x > 0`` → 1)."""
    fn = neuron.module.spike_grad
    hit = neuron.__dict__.get("_heaviside")
    if hit is None or hit[0] is not fn:
        probe = torch.tensor([-1.0, -1e-30, 0.0, 1e-30, 1.0, 3.0])
        with torch.no_grad():
            try:
                out = neuron.spike_fn(probe)
                ok = bool(torch.equal(out, torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])))
            except Exception:  # noqa: BLE001 - anything unusual: use the torch path
                ok = False
        hit = neuron.__dict__["_heaviside"] = (fn, ok)
    return hit[1]


def _needs_grad(ctx: SimContext, x: Tensor) -> bool:
    """Whether this simulation records gradients (decided once per simulation)."""
    if "needs_grad" not in ctx.cache:
        ctx.cache["needs_grad"] = torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in ctx.graph.model.parameters())
        )
    return ctx.cache["needs_grad"]


def _exact_inference(sched, ctx: SimContext, state, x: Tensor) -> bool:
    """Inference on the CPU with partial groups: every delivery after the input frame gathers
    weight columns in source order (the arithmetic the native kernel reproduces bit for bit)."""
    if "exact" not in ctx.cache:
        F = sched.forward_group_size
        n_regular = len(state.pending) - len(arrival_groups(ctx.graph))
        ctx.cache["exact"] = (
            not _needs_grad(ctx, x) and ctx.device.type == "cpu" and F is not None
            and F < sum(p.shape[1] for p in state.pending[:n_regular])
        )
    return ctx.cache["exact"]


def _native_for(sched, ctx: SimContext, state, x: Tensor):
    """The native kernel if it runs this simulation's time steps (decided once per simulation:
    see docs/async.md, "The native kernel"), else ``None``."""
    key = "native_lib"
    if key in ctx.cache:
        return ctx.cache[key]
    from .. import native
    from ..neurons import LeakyNeuron

    graph = ctx.graph
    ok = (
        native.enabled() and _exact_inference(sched, ctx, state, x)
        and ctx.dtype == torch.float32 and not arrival_groups(graph)
        and sched.sync_threshold is None
        and not (graph.model.training and (sched.spike_dropout > 0 or sched.input_dropout > 0))
    )
    for layer in graph.layers if ok else ():
        lin = lone_linear(layer)
        if (lin is None or lin.stateful or type(layer.neuron) is not LeakyNeuron
                or lin.module.weight.dtype != torch.float32 or not _heaviside_forward(layer.neuron)):
            ok = False
            break
    ctx.cache[key] = native.library() if ok else None
    return ctx.cache[key]


def _native_plan(sched, ctx: SimContext, state) -> dict:
    """What stays fixed for the kernel during one simulation (offsets, weights, thresholds)."""
    plan = ctx.cache.get("native_plan")
    if plan is not None:
        return plan
    import ctypes

    from ..neurons import SUBTRACT

    layers, params = ctx.graph.layers, ctx.params
    L, B = len(layers), ctx.batch
    off = 0 if sched.prioritize_input else 1
    lay_off, grp_off = [0], [0]
    for layer in layers:
        lay_off.append(lay_off[-1] + layer.neuron.numel)
    for p in state.pending:
        grp_off.append(grp_off[-1] + p.shape[1])
    G = len(state.pending)
    grp_tgt = [g + 1 - off for g in range(G)]  # the layer each group feeds
    lins = [lone_linear(layer) for layer in layers]
    wts = [transposed_weight(op, ctx.cache) for op in lins]
    biases = [None if op.module.bias is None else op.module.bias.detach().contiguous()
              for op in lins]
    fan = torch.cat([lins[grp_tgt[g]].fanout((grp_off[g + 1] - grp_off[g],), torch.float32)
                     .reshape(-1) for g in range(G)] + [torch.zeros(0)]).contiguous()
    thr = torch.cat([torch.broadcast_to(params[l].threshold.detach(), layer.shape).reshape(-1)
                     for l, layer in enumerate(layers)]).to(torch.float32).contiguous()

    def i64(v):
        return (ctypes.c_int64 * len(v))(*v)

    def vp(ts):
        return (ctypes.c_void_p * len(ts))(*[None if t is None else t.data_ptr() for t in ts])

    def u8(v):
        return (ctypes.c_uint8 * len(v))(*[int(b) for b in v])

    subs = [layer.neuron.reset == SUBTRACT for layer in layers]
    plan = dict(
        keep=(wts, biases, fan, thr), N=lay_off[-1], S=grp_off[-1], lay_off=lay_off,
        grp_off=grp_off, subs=subs, shapes=[(B, *layer.shape) for layer in layers],
        args=(i64(lay_off), i64(grp_off),
              i64([grp_tgt.index(l) if l in grp_tgt else -1 for l in range(L)]),
              i64([l + off if l < L - 1 else -1 for l in range(L)]), vp(wts), vp(biases),
              u8(subs), u8([layer.neuron.reset == ZERO for layer in layers]), fan.data_ptr(),
              thr.data_ptr()),
        mode={"random": 0, "membrane": 1, "index": 2}[sched.key_mode],
        limits=(sched.forward_group_size,
                -1 if sched.max_forward_steps is None else sched.max_forward_steps,
                -1 if sched.stop_on_output is None else sched.stop_on_output,
                int(bool(sched.full_layer_evaluation))),
    )
    ctx.cache["native_plan"] = plan
    return plan


def _native_time_step(lib, sched, ctx: SimContext, state, x: Tensor):
    """One time step with the forward steps in the native kernel: the same leak, candidates,
    keys, input frame and finish as :func:`run_time_step` (and the same values, bit for bit)."""
    from .asynchronous import AsyncState

    layers, params = ctx.graph.layers, ctx.params
    L, B, dev, dt = len(layers), ctx.batch, ctx.device, ctx.dtype
    plan = _native_plan(sched, ctx, state)
    gen, zero_cur = state.generator, state.zero_current
    off = 0 if sched.prioritize_input else 1
    pending, prio = list(state.pending), list(state.priority)
    sizes = [p.shape[1] for p in pending]
    keys, noise, clock = _initial_keys(sched, prio, sizes, off, gen, B, dev, dt)

    bases, cand = _leak(ctx, state)

    def flat(ts):
        return torch.cat([t.reshape(B, -1) for t in ts], 1).contiguous()

    N, S, shapes = plan["N"], plan["S"], plan["shapes"]
    dec = flat([bases[l].decayed.expand(shapes[l]) for l in range(L)])
    sub = flat([(bases[l].reset * params[l].threshold).expand(shapes[l]) if plan["subs"][l]
                else torch.zeros(shapes[l], dtype=dt) for l in range(L)])
    cand_f = flat(cand)
    acc_f = torch.zeros((B, N), dtype=dt)
    spk_f = torch.zeros((B, N), dtype=dt)
    fired_f = torch.zeros((B, N), dtype=torch.bool)
    ev_f = torch.zeros((B, N), dtype=torch.bool)
    reached = torch.zeros((B, L), dtype=torch.bool)
    synops = torch.zeros((B, L), dtype=dt)
    fsteps = torch.zeros(B, dtype=torch.long)
    out_at = torch.full((B,), -1, dtype=torch.long)
    frame = None
    if sched.prioritize_input:  # the input frame's current: the same module call as LayerSync
        xin = x.flatten(1).view(B, *layers[0].in_shape)
        first = torch.ones(B, dtype=torch.bool)
        frame = _layer_current(layers[0], xin, first, {}, synops[:, 0]).reshape(B, -1).contiguous()
    else:
        pending[0] = pending[0] + x.flatten(1)
    pend_f = flat(pending) if pending else torch.zeros((B, 0), dtype=dt)
    membrane = sched.key_mode == "membrane"
    prio_f = flat(prio) if (membrane and prio) else None
    noise_f = noise if noise is not None else torch.zeros((B, S), dtype=dt)

    def ptr(t):
        return None if t is None else t.data_ptr()

    rc = lib.sa_async_steps(
        B, L, N, S, *plan["args"], ptr(cand_f), ptr(frame), ptr(dec), ptr(sub),
        ptr(acc_f), ptr(fired_f), ptr(ev_f), ptr(spk_f), ptr(pend_f), ptr(keys), ptr(prio_f),
        ptr(noise_f), ptr(clock), plan["mode"], ptr(reached), ptr(synops), ptr(fsteps),
        ptr(out_at), *plan["limits"],
    )
    if rc != 0:
        raise MemoryError("snntorch_async native kernel: could not allocate its work buffers")

    lay_off, grp_off = plan["lay_off"], plan["grp_off"]

    def per_layer(t):
        return [t[:, lay_off[l]: lay_off[l + 1]].reshape(shapes[l]) for l in range(L)]

    spikes = per_layer(spk_f)
    new_states, counts = _finish(ctx, bases, per_layer(acc_f), None, None, spikes, reached,
                                 zero_cur, None, off)
    pending = [pend_f[:, grp_off[g]: grp_off[g + 1]] for g in range(len(pending))]
    if prio_f is not None:
        prio = [prio_f[:, grp_off[g]: grp_off[g + 1]] for g in range(len(prio))]
    mems = tuple(s.mem for s in new_states) if ctx.record.membranes else None
    out = StepOutput(tuple(spikes), mems, counts, synops, fsteps)
    new_state = AsyncState(
        tuple(new_states), tuple(pending), tuple(prio), gen, zero_cur, tuple(state.queues)
    )
    return new_state, out
