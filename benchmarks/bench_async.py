"""Asynchronous execution against LayerSync, measured side by side in one run.

Network: 784-256-256-10 ``snn.Leaky`` (zero reset), T = 100, batch 64, Bernoulli inputs at rate
0.1 and 0.3, CPU. The default ``nn.Linear`` initialisation barely spikes on such inputs, so the
weights are scaled (``--gain``, default 4) to give the hidden layers real activity; the spike
rates are printed with the timings.

Targets: asynchronous inference within 3x of LayerSync at F = 64 and within 15x at
F = 1; an asynchronous training step (F = 64) within 5x of a LayerSync training step with peak
autograd memory within 2x. Also printed: how time grows with F (1, 8, 64, all) and with T.

Inference runs through the native forward-step kernel (``snntorch_async.native``) when it is
available; the same runs through the torch code (kernel off) are printed beside them.

Times are medians of interleaved repeats (the machine is noisy: only the ratios measured in the
same run mean something). Memory is the bytes of tensors saved for backward (counted with
``torch.autograd.graph.saved_tensors_hooks``), which is what grows with T and F.

Run: ``python benchmarks/bench_async.py [--quick]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import snntorch as snn
import torch
from torch import nn

import snntorch_async as sa
from snntorch_async import native


def build(gain: float, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    kw = dict(beta=0.9, init_hidden=True, reset_mechanism="zero", reset_delay=False)
    net = nn.Sequential(
        nn.Linear(784, 256),
        snn.Leaky(**kw),
        nn.Linear(256, 256),
        snn.Leaky(**kw),
        nn.Linear(256, 10),
        snn.Leaky(output=True, **kw),
    )
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.mul_(gain)
    return net


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median time of each function, run in turn ``repeats`` times (after one warm-up each)."""
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            times[k] += timed(f, 1)
    return {k: statistics.median(v) for k, v in times.items()}


def saved_bytes(fn) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def without_kernel(net, x, sched):
    with native.use_native(False):
        return sa.simulate(net, x, scheduler=sched)


def train_step(net, x, y, sched):
    net.zero_grad()
    spk = sa.simulate(net, x, scheduler=sched).spikes
    loss = nn.functional.cross_entropy(spk.sum(0), y)
    loss.backward()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="T=20, fewer repeats (smoke run)")
    ap.add_argument("--gain", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    T, B = (20, 16) if args.quick else (100, 64)
    reps = 1 if args.quick else args.repeats
    torch.manual_seed(0)
    net = build(args.gain)
    kernel = native.available()
    print(
        f"784-256-256-10 Leaky, T={T}, batch {B}, CPU threads={torch.get_num_threads()}, "
        f"gain={args.gain}, native kernel {'on' if kernel else 'unavailable'} (inference)"
    )
    async64 = sa.RandomAsync(forward_group_size=64, seed=0)
    for rate in (0.1, 0.3):
        x = (torch.rand(T, B, 784) < rate).float()
        with torch.no_grad():
            r = sa.simulate(net, x)
            rates = (r.spike_counts.sum((0, 1)) / (T * B * torch.tensor(r.neurons))).tolist()
            fns = {
                "LayerSync": lambda: sa.simulate(net, x),
                "F=64": lambda: sa.simulate(net, x, scheduler=async64),
                "F=1": lambda: sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=1)),
            }
            if kernel:  # the same runs through the torch code (kernel off)
                fns["F=64 torch"] = lambda: without_kernel(net, x, async64)
                fns["F=1 torch"] = lambda: without_kernel(
                    net, x, sa.RandomAsync(forward_group_size=1)
                )
            t = interleaved(fns, reps)
            fs = {
                F: float(
                    sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=F))
                    .forward_steps.float()
                    .mean()
                )
                for F in (64, 1)
            }
        print(f"\ninput rate {rate}: spike rate per layer {[round(v, 3) for v in rates]}")
        print(
            f"  inference  LayerSync {t['LayerSync']:.3f} s | RandomAsync F=64 {t['F=64']:.3f} s "
            f"({t['F=64'] / t['LayerSync']:.2f}x, target <= 3x, {fs[64]:.1f} forward steps/step) "
            f"| F=1 {t['F=1']:.3f} s ({t['F=1'] / t['LayerSync']:.2f}x, target <= 15x, "
            f"{fs[1]:.1f} forward steps/step)"
        )
        if kernel:
            print(
                f"  (torch code, native kernel off: F=64 {t['F=64 torch'] / t['LayerSync']:.2f}x, "
                f"F=1 {t['F=1 torch'] / t['LayerSync']:.2f}x)"
            )
        y = torch.randint(0, 10, (B,))
        tt = interleaved(
            {
                "sync": lambda: train_step(net, x, y, sa.LayerSync()),
                "async": lambda: train_step(net, x, y, async64),
            },
            reps,
        )
        mem_s = saved_bytes(lambda: train_step(net, x, y, sa.LayerSync()))
        mem_a = saved_bytes(lambda: train_step(net, x, y, async64))
        print(
            f"  training step  LayerSync {tt['sync']:.3f} s | RandomAsync F=64 {tt['async']:.3f} s "
            f"({tt['async'] / tt['sync']:.2f}x, target <= 5x); saved-for-backward memory "
            f"{mem_s / 2**20:.1f} MiB vs {mem_a / 2**20:.1f} MiB ({mem_a / mem_s:.2f}x, target <= 2x)"
        )

    print("\ntime against F (input rate 0.3, inference):")
    x = (torch.rand(T, B, 784) < 0.3).float()
    with torch.no_grad():
        fns = {"sync": lambda: sa.simulate(net, x)}
        for F in (1, 8, 64, None):
            fns[F] = lambda F=F: sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=F))
        t = interleaved(fns, reps)
    for k, v in t.items():
        name = "LayerSync" if k == "sync" else f"F={'all' if k is None else k}"
        print(f"  {name:>10}: {v:.3f} s ({v / t['sync']:.2f}x LayerSync)")

    print("\ntime against T (input rate 0.3, F=64, inference):")
    for TT in (10, 20, 40) if args.quick else (25, 50, 100, 200):
        x = (torch.rand(TT, B, 784) < 0.3).float()
        with torch.no_grad():
            t = interleaved(
                {
                    "sync": lambda: sa.simulate(net, x),
                    "async": lambda: sa.simulate(net, x, scheduler=async64),
                },
                reps,
            )
        print(
            f"  T={TT:>4}: LayerSync {t['sync']:.3f} s, F=64 {t['async']:.3f} s "
            f"({t['async'] / t['sync']:.2f}x)"
        )


if __name__ == "__main__":
    main()
