"""Gradient rules of unlayered backprop side by side: per-layer gradient norms and cosine with
LayerSync's gradient, on identical weights and one identical batch.

Network: 64-64-64-10 zero-reset ``snn.Leaky`` in the paper reference's neuron regime (β = e⁻¹⁰,
i.e. τ_m = 1000 with dt = 10000; threshold 0.3; bias-free xavier-uniform Linear), rate-coded
digits (T = 20), ``ce_rate_loss``. Rules: ``EventGradients`` (only delivered spikes carry
gradient), ``LayerCarriers`` (``silent_gradients=True``) and ``QueuedCarriers`` (the reference
implementation's rule), each under ``RandomAsync`` and ``MomentumAsync`` at ``F`` (default 8)
and at ``F = all``. The spikes are the same under every rule (printed: spike count).

Run: ``python benchmarks/bench_gradient_rules.py [--F 8] [--batch 64] [--seed 0]``
"""

from __future__ import annotations

import argparse
import math

import snntorch as snn
import torch
from snntorch import functional as SF
from torch import nn

import snntorch_async as sa
from snntorch_async.data import RateEncoding, load_digits_spikes, make_loader


def reference_regime_model(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    mods: list[nn.Module] = []
    sizes = (64, 64, 64, 10)
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b, bias=False)
        nn.init.xavier_uniform_(lin.weight)
        mods += [
            lin,
            snn.Leaky(
                beta=math.exp(-10),
                threshold=0.3,
                init_hidden=True,
                reset_mechanism="zero",
                reset_delay=False,
                output=i == len(sizes) - 2,
            ),
        ]
    return nn.Sequential(*mods)


def gradients(net, x, y, sched) -> tuple[list[torch.Tensor], float]:
    net.zero_grad()
    spk = sa.simulate(net, x, scheduler=sched).spikes
    SF.ce_rate_loss()(spk, y).backward()
    return [m.weight.grad.clone() for m in net if isinstance(m, nn.Linear)], float(
        spk.detach().sum()
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--F", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load_digits_spikes(encoding=RateEncoding(), num_steps=20, seed=args.seed)
    x, y = next(iter(make_loader(data.train, batch_size=args.batch, shuffle=True, seed=args.seed)))
    net = reference_regime_model(args.seed)
    ref, n_ref = gradients(net, x, y, sa.LayerSync())
    rules = {
        "EventGradients": sa.EventGradients(),
        "LayerCarriers": sa.LayerCarriers(),
        "QueuedCarriers": sa.QueuedCarriers(),
    }
    print(
        f"64-64-64-10 Leaky, beta=e^-10, threshold 0.3, bias-free xavier; digits T=20, batch "
        f"{args.batch}, seed {args.seed}"
    )
    print("gradient norm per layer (W1, W2, W3) and cosine with LayerSync's gradient per layer")
    print(f"  {'LayerSync':<40} {[round(float(g.norm()), 4) for g in ref]}  spikes {n_ref:.0f}")
    for sched_cls in (sa.RandomAsync, sa.MomentumAsync):
        for F in (args.F, None):
            for name, rule in rules.items():
                sched = sched_cls(forward_group_size=F, seed=1, gradient_rule=rule)
                g, n = gradients(net, x, y, sched)
                norms = [round(float(a.norm()), 4) for a in g]
                cos = [
                    round(float(nn.functional.cosine_similarity(a.flatten(), b.flatten(), 0)), 3)
                    for a, b in zip(g, ref)
                ]
                label = f"{sched_cls.__name__} F={'all' if F is None else F} {name}"
                print(f"  {label:<40} {norms}  cos {cos}  spikes {n:.0f}")


if __name__ == "__main__":
    main()
