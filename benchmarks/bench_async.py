"""Asynchronous execution against LayerSync, measured side by side in one run.

Network: 784-256-256-10 ``snn.Leaky`` (zero reset), T = 100, batch 64, Bernoulli inputs at rate
0.1 and 0.3, CPU. The default ``nn.Linear`` initialisation barely spikes on such inputs, so the
weights are scaled (``--gain``, default 4) to give the hidden layers real activity; the spike
rates are printed with the timings.

Targets: asynchronous inference within 3x of LayerSync at F = 64 and within 15x at
F = 1; an asynchronous training step (F = 64) within 5x of a LayerSync training step with peak
autograd memory within 2x. Also printed: how time grows with F (1, 8, 64, all) and with T.

Inference and training run through the native kernel (``snntorch_async.native``; training:
``engine/native_grad.py``) when it is available; the same runs through the torch code (kernel
off) are printed beside them.

Training table (``--only training``; issue "fast unlayered backprop"): the issue's setup,
784-256-256-10 Leaky (zero reset), batch 32, Bernoulli 0.2 inputs, weights x4: a training step
(forward + backward) at F = 1, 8, 64, all against a LayerSync training step measured in the same
run with the same thread count, T = 25 and 100, 1 and 2 threads. Targets: F = 64 <= 2x, F = 8
<= 3x, F = 1 <= 10x; saved-for-backward memory at F = 8 <= 2x LayerSync's; 2 threads >= 1.6x
faster than 1 at F = 8 (training step and inference).

Times are medians of interleaved repeats (the machine is noisy: only the ratios measured in the
same run mean something). Memory is the bytes of tensors saved for backward (counted with
``torch.autograd.graph.saved_tensors_hooks``), which is what grows with T and F.

Run: ``python benchmarks/bench_async.py [--quick] [--only training|inference]``
"""

from __future__ import annotations

import argparse
import os
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
        if torch.cuda.is_available():  # (CUDA work is asynchronous: wait for it)
            torch.cuda.synchronize()
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


def training_table(args) -> None:
    """The training-step table of the module docstring."""
    B = 8 if args.quick else 32
    steps = (10,) if args.quick else (25, 100)
    threads = [1, 2] if (os.cpu_count() or 1) >= 2 else [1]
    reps = 1 if args.quick else args.repeats
    torch.manual_seed(0)
    dev = torch.device(args.device)
    net = build(args.gain).to(dev)
    old = torch.get_num_threads()
    print(
        f"\ntraining step on {dev}, 784-256-256-10 Leaky, batch {B}, input rate 0.2, gain "
        f"{args.gain}; kernel threads: {native.threading()}"
    )
    print("  targets: F=64 <= 2x, F=8 <= 3x, F=1 <= 10x LayerSync (same run, same threads)")
    print(
        f"  {'T':>4} {'threads':>7} {'LayerSync':>10}"
        + "".join(f"{n:>16}" for n in ("F=1", "F=8", "F=64", "F=all"))
    )
    at8 = {}
    try:
        for T in steps:
            x = (torch.rand(T, B, 784) < 0.2).float().to(dev)
            y = torch.randint(0, 10, (B,)).to(dev)
            for n in threads:
                torch.set_num_threads(n)
                fns = {"sync": lambda: train_step(net, x, y, sa.LayerSync())}
                for F in (1, 8, 64, None):
                    fns[F] = lambda F=F: train_step(
                        net, x, y, sa.RandomAsync(forward_group_size=F, seed=0)
                    )
                t = interleaved(fns, reps)
                cells = "".join(
                    f"{t[F] * 1e3:9.0f} ms {t[F] / t['sync']:4.1f}x" for F in (1, 8, 64, None)
                )
                print(f"  {T:>4} {n:>7} {t['sync'] * 1e3:7.0f} ms{cells}")
                if T == steps[0]:
                    at8[n] = t[8]
        T = steps[0]
        x = (torch.rand(T, B, 784) < 0.2).float().to(dev)
        y = torch.randint(0, 10, (B,)).to(dev)
        torch.set_num_threads(1)
        f8 = sa.RandomAsync(forward_group_size=8, seed=0)
        fns = {"sync": lambda: train_step(net, x, y, sa.LayerSync())}
        for F in (1, 8, 64):
            sched = sa.RandomAsync(forward_group_size=F, seed=0)
            fns[F] = lambda s=sched: train_step(net, x, y, s)
            fns[f"{F} torch"] = lambda s=sched: without_kernel_train(net, x, y, s)
        ref = interleaved(fns, 1)
        print(
            f"  T={T}, 1 thread, through the torch code (kernel off) vs native, x LayerSync: "
            + ", ".join(
                f"F={F} {ref[f'{F} torch'] / ref['sync']:.1f}x vs {ref[F] / ref['sync']:.1f}x "
                f"({ref[f'{F} torch'] / ref[F]:.1f}x faster)"
                for F in (1, 8, 64)
            )
        )
        mem_s = saved_bytes(lambda: train_step(net, x, y, sa.LayerSync()))
        mem_a = saved_bytes(lambda: train_step(net, x, y, f8))
        net.zero_grad()
        r = sa.simulate(net, x, scheduler=f8)
        nn.functional.cross_entropy(r.spikes.sum(0), y).backward()
        backend = r.final_state.plan.backend
        tape = backend.tape_bytes() if hasattr(backend, "tape_bytes") else 0
        print(
            f"  saved-for-backward memory, T={T}, F=8: LayerSync {mem_s / 2**20:.1f} MiB, "
            f"RandomAsync {mem_a / 2**20:.1f} MiB ({mem_a / mem_s:.2f}x, target <= 2x); plus the "
            f"backward tape, one time step at a time: {tape / 2**20:.1f} MiB "
            f"(with it {(mem_a + tape) / mem_s:.2f}x)"
        )
        if len(threads) > 1:
            with torch.no_grad():
                inf = {}
                for n in threads:
                    torch.set_num_threads(n)
                    inf[n] = interleaved({"f8": lambda: sa.simulate(net, x, scheduler=f8)}, reps)[
                        "f8"
                    ]
            print(
                f"  2 threads vs 1 at F=8, T={T}: training step {at8[1] / at8[2]:.2f}x faster, "
                f"inference {inf[1] / inf[2]:.2f}x faster (target >= 1.6x)"
            )
    finally:
        torch.set_num_threads(old)


def without_kernel_train(net, x, y, sched):
    with native.use_native(False):
        train_step(net, x, y, sched)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="T=20, fewer repeats (smoke run)")
    ap.add_argument("--gain", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--only", choices=("training", "inference"), help="run one part (default: both)"
    )
    ap.add_argument(
        "--device",
        default="cpu",
        help="training table on this device (cuda: the torch code; the kernel is CPU-only)",
    )
    args = ap.parse_args()
    if args.only != "inference":
        training_table(args)
    if args.only == "training":
        return
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
