"""Seeded random snnTorch models and snnTorch's own time loop with recordings (test helpers).

``random_model(seed)`` draws a small ``nn.Sequential`` of supported modules (Linear or Conv2d
front ends, pooling, dropout, identity, nested ``nn.Sequential``) and snnTorch neurons with random
settings (Leaky/Synaptic, reset rule, reset_delay, scalar or per-neuron beta/alpha/threshold,
learnable or not, surrogate), with weights scaled so that every layer really spikes.

``snntorch_loop(model, x)`` runs the model the snnTorch way (one call per time step, hidden state
reset before and after) and records every neuron module's spikes and membrane through forward
hooks: it is the reference the engine is compared against.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

from snntorch_async.reference import reset_states

SURROGATES = {
    "atan": surrogate.atan,  # snnTorch's default
    "fast_sigmoid": lambda: surrogate.fast_sigmoid(slope=25),
    # (snnTorch's ``sigmoid`` surrogate overflows to NaN gradients far below threshold: not used.)
}


@dataclass(frozen=True)
class ModelCase:
    """A random model, its per-sample input shape and a readable description of its draws."""

    model: nn.Sequential
    input_shape: tuple[int, ...]
    description: str


def _per_neuron(g: random.Random, shape: tuple[int, ...], lo: float, hi: float) -> torch.Tensor:
    """A per-neuron tensor: full layer shape, or one value per channel ``[C, 1, 1]`` for conv."""
    if len(shape) == 3 and g.random() < 0.5:
        shape = (shape[0], 1, 1)
    gen = torch.Generator().manual_seed(g.randrange(2**31))
    return lo + (hi - lo) * torch.rand(shape, generator=gen)


def make_neuron(g: random.Random, shape: tuple[int, ...], *, output: bool, notes: list[str]):
    """Draw one snnTorch neuron module for a layer of per-sample ``shape``."""
    synaptic = g.random() < 0.4
    reset = g.choice(["subtract", "zero", "none"])
    reset_delay = g.random() < 0.5
    sur = g.choice(sorted(SURROGATES))
    # beta up to 1.1 exercises snnTorch's clamp(0, 1) (and its zero gradient past 1).
    beta = _per_neuron(g, shape, 0.3, 1.1) if g.random() < 0.5 else round(g.uniform(0.5, 0.95), 3)
    thr = _per_neuron(g, shape, 0.5, 1.5) if g.random() < 0.4 else round(g.uniform(0.6, 1.4), 3)
    kw = dict(
        beta=beta,
        threshold=thr,
        spike_grad=SURROGATES[sur](),
        init_hidden=True,
        reset_mechanism=reset,
        learn_beta=g.random() < 0.5,
        learn_threshold=g.random() < 0.5,
        output=output,
    )
    if synaptic:
        per = g.random() < 0.5
        alpha = _per_neuron(g, shape, 0.2, 0.9) if per else round(g.uniform(0.2, 0.9), 3)
        neuron = snn.Synaptic(alpha=alpha, learn_alpha=g.random() < 0.5, **kw)
    else:
        neuron = snn.Leaky(reset_delay=reset_delay, **kw)
        if not reset_delay:
            notes.append("no-delay")
    scal = lambda v: "vec" if torch.is_tensor(v) else "scalar"  # noqa: E731
    notes.append(
        f"{type(neuron).__name__}({reset},beta={scal(beta)},thr={scal(thr)},{sur}"
        f"{',learnβ' if kw['learn_beta'] else ''}{',learnθ' if kw['learn_threshold'] else ''})"
    )
    return neuron


def _scale_weights(m: nn.Module, g: random.Random, gain: float) -> None:
    """Scale a Linear/Conv2d so that a ~half-active binary input drives neurons near threshold."""
    w = m.weight
    fan_in = w[0].numel()
    gen = torch.Generator().manual_seed(g.randrange(2**31))
    with torch.no_grad():
        w.copy_(torch.randn(w.shape, generator=gen) * gain / math.sqrt(fan_in) + 0.6 / fan_in)
        if m.bias is not None:
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))


def _out_shape(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(module(torch.zeros((1, *shape))).shape[1:])


def random_model(seed: int, *, kind: str | None = None, gain: float = 2.5) -> ModelCase:
    """Draw a small random snnTorch model (see the module docstring). ``kind``: "mlp" or "conv"."""
    g = random.Random(seed)
    kind = kind or g.choice(["mlp", "conv"])
    notes: list[str] = [kind]
    blocks: list[list[nn.Module]] = []  # one list of modules per spiking layer
    weighted: list[nn.Module] = []  # the Linear/Conv2d feeding each spiking layer

    def extras() -> list[nn.Module]:
        r = g.random()
        if r < 0.15:
            notes.append("Dropout")
            return [nn.Dropout(p=0.3)]
        if r < 0.3:
            notes.append("Identity")
            return [nn.Identity()]
        return []

    if kind == "mlp":
        in_shape = (g.randint(5, 16),)
        shape = in_shape
        n_layers = g.randint(1, 3)
    else:
        in_shape = (g.randint(1, 3), g.randint(6, 9), g.randint(6, 9))
        shape = in_shape
        n_layers = g.randint(2, 3)
    for i in range(n_layers):
        last = i == n_layers - 1
        mods: list[nn.Module] = []
        if kind == "conv" and len(shape) == 3 and not last:
            if i > 0 and g.random() < 0.5:
                pool = g.choice([nn.AvgPool2d(2), nn.MaxPool2d(2)])
                if min(shape[1:]) >= 4:
                    notes.append(type(pool).__name__)
                    mods.append(pool)
                    shape = _out_shape(pool, shape)
            k = g.choice([k for k in (1, 2, 3) if k <= min(shape[1:])])
            stride, pad = g.choice([1, 2]), g.choice([0, 1]) if k > 1 else 0
            conv = nn.Conv2d(
                shape[0], g.randint(2, 4), k, stride=stride, padding=pad, bias=g.random() < 0.6
            )
            has_bias = "bias" if conv.bias is not None else "nobias"
            notes.append(f"Conv2d(k{k},s{stride},p{pad},{has_bias})")
            _scale_weights(conv, g, gain)
            weighted.append(conv)
            mods.append(conv)
            shape = _out_shape(conv, shape)
            if g.random() < 0.3 and min(shape[1:]) >= 2:
                pool = g.choice([nn.AvgPool2d(2), nn.MaxPool2d(2)])
                notes.append(type(pool).__name__)
                mods.append(pool)
                shape = _out_shape(pool, shape)
        else:
            if len(shape) > 1:
                mods.append(nn.Flatten())
                shape = (math.prod(shape),)
            mods += extras()
            out = g.randint(3, 10) if last else g.randint(6, 20)
            lin = nn.Linear(shape[0], out, bias=g.random() < 0.6)
            notes.append(f"Linear({'bias' if lin.bias is not None else 'nobias'})")
            _scale_weights(lin, g, gain)
            weighted.append(lin)
            mods.append(lin)
            shape = (out,)
        mods.append(make_neuron(g, shape, output=last and g.random() < 0.7, notes=notes))
        blocks.append(mods)

    # Nest some layers (or a whole tail) in inner nn.Sequential containers.
    top: list[nn.Module] = []
    for mods in blocks:
        if g.random() < 0.3:
            notes.append("nested")
            top.append(nn.Sequential(*mods))
        else:
            top.extend(mods)
    if len(top) > 3 and g.random() < 0.3:
        notes.append("nested-tail")
        top = top[:2] + [nn.Sequential(*top[2:])]
    model = nn.Sequential(*top).eval()
    _calibrate(model, weighted, random_inputs(seed, 12, 3, in_shape))
    return ModelCase(model, in_shape, " ".join(notes))


def _calibrate(model: nn.Module, weighted: list[nn.Module], x: torch.Tensor) -> None:
    """Rescale weights layer by layer until every layer fires 3-85 % of the time on ``x``."""
    for i, w in enumerate(weighted):
        for _ in range(12):
            with torch.no_grad():
                rate = float(snntorch_loop(model, x).layer_spikes[i].mean())
            if 0.03 <= rate <= 0.85:
                break
            with torch.no_grad():
                if rate < 0.03:
                    w.weight.add_(0.5 / math.sqrt(w.weight[0].numel()))
                else:
                    w.weight.mul_(0.7)


def mlp(
    sizes,
    *,
    reset="zero",
    reset_delay=False,
    neuron=snn.Leaky,
    thr=0.5,
    seed=0,
    bias=True,
    gain=3.0,
    per_neuron_thr=False,
) -> nn.Sequential:
    """A seeded fully connected snnTorch model (``nn.Linear`` + neuron per layer, weights scaled
    by ``gain`` so that every layer spikes; ``per_neuron_thr`` draws thresholds in [0.3, 1.3))."""
    torch.manual_seed(seed)
    mods = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        t = 0.3 + torch.rand(b) if per_neuron_thr else thr
        kw = dict(beta=0.85, threshold=t, init_hidden=True, reset_mechanism=reset)
        if neuron is snn.Synaptic:
            kw["alpha"] = 0.6
        else:
            kw["reset_delay"] = reset_delay
        lin = nn.Linear(a, b, bias=bias)
        with torch.no_grad():
            lin.weight.mul_(gain)
        mods += [lin, neuron(output=i == len(sizes) - 2, **kw)]
    return nn.Sequential(*mods)


def random_inputs(
    seed: int,
    steps: int,
    batch: int,
    shape: tuple[int, ...],
    *,
    p: float = 0.5,
    real: bool = False,
    device="cpu",
    dtype=torch.float32,
) -> torch.Tensor:
    """Bernoulli(p) spike inputs ``[T, B, *shape]`` (scaled by U(0, 2) if ``real``)."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand((steps, batch, *shape), generator=gen) < p).float()
    if real:
        x = x * 2 * torch.rand(x.shape, generator=gen)
    return x.to(device=device, dtype=dtype)


@dataclass
class Recording:
    """snnTorch's loop, recorded: outputs ``[T, B, C]``; per neuron module ``[T, B, *shape]``."""

    spikes: torch.Tensor
    layer_spikes: list[torch.Tensor]
    membranes: list[torch.Tensor]


def snntorch_loop(model: nn.Module, x: torch.Tensor) -> Recording:
    """Run ``model`` once per time step (snnTorch's loop), recording each neuron module."""
    neurons = [m for m in model.modules() if isinstance(m, snn.SpikingNeuron)]
    spk = {id(m): [] for m in neurons}
    mem = {id(m): [] for m in neurons}

    def hook(module, _inputs, out):
        spk[id(module)].append(out[0] if isinstance(out, tuple) else out)
        mem[id(module)].append(module.mem)

    handles = [m.register_forward_hook(hook) for m in neurons]
    reset_states(model)
    try:
        outs = []
        for t in range(x.shape[0]):
            o = model(x[t])
            outs.append((o[0] if isinstance(o, tuple) else o).flatten(1))
    finally:
        for h in handles:
            h.remove()
        reset_states(model)
    return Recording(
        spikes=torch.stack(outs),
        layer_spikes=[torch.stack(spk[id(m)]) for m in neurons],
        membranes=[torch.stack(mem[id(m)]) for m in neurons],
    )


def assert_gradients_match_finite_differences(loss, params, eps: float = 1e-6, tol: float = 1e-5):
    """Autograd's gradient of ``loss()`` (a scalar tensor) w.r.t. every entry of ``params``
    equals the central finite difference ``(loss(θ + eps) - loss(θ - eps)) / 2 eps`` within
    ``tol`` relative (absolute below 1). The perturbed losses are computed with gradients
    recorded, as the differentiated one (some engine paths exist only then)."""
    params = list(params)
    for p in params:
        p.grad = None
    loss().backward()
    for p in params:
        flat, g = p.data.view(-1), p.grad.view(-1)
        for i in range(flat.numel()):
            old = float(flat[i])
            with torch.no_grad():
                flat[i] = old + eps
            up = float(loss().detach())
            with torch.no_grad():
                flat[i] = old - eps
            down = float(loss().detach())
            with torch.no_grad():
                flat[i] = old
            assert abs((up - down) / (2 * eps) - float(g[i])) < tol * max(1.0, abs(float(g[i])))
