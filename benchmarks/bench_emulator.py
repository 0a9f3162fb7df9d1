"""Fixed-point emulator vs. real Lava (fixed_pt), side by side on the same quantized network.

A 784-256-256-10 Leaky network (zero reset, random weights scaled so every layer spikes) is
converted and quantized (8-bit, per-layer exponents). Inputs: batch 64, T = 100 steps of random
spikes (rate 10 %). The emulator runs the whole batch at once (``lava_bridge.emulate``, int64
tensors); Lava (``Loihi2SimCfg(select_tag="fixed_pt")``, via ``lava_bridge.run_spec``) runs one
sample at a time, so only ``--lava-samples`` samples are run and Lava's per-sample time is
extrapolated to the batch (said in the output). Both run T + L steps (the input padded with L
zeros, so the last input reaches the output). Prints the per-sample speed ratio (target ≥ 1000×),
Lava's time per step, and whether the spikes of the Lava-run samples are identical.

Run: ``python benchmarks/bench_emulator.py`` (needs Lava for the Lava side: Python 3.10 with the
``[lava]`` extra; without it only the emulator is timed). ``--device cuda`` times the emulator on
a GPU (the spike comparison is unchanged).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import snntorch as snn
import torch
from torch import nn

from lava_bridge import convert, emulate
from lava_bridge import quantize


def make_spec(sizes=(784, 256, 256, 10), seed=0):
    torch.manual_seed(seed)
    kw = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)
    mods = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1])
        with torch.no_grad():
            lin.weight.normal_(0.0, 2.0 / sizes[i] ** 0.5)
            lin.bias.zero_()
        mods += [lin, snn.Leaky(beta=0.9, output=i == len(sizes) - 2, **kw)]
    q = quantize(convert(nn.Sequential(*mods), (sizes[0],)))
    return q.spec, q.report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--lava-samples", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: robust on a shared machine; OpenMP threads "
        "stall when the cores are busy)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec, report = make_spec()
    L = spec.num_layers
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(args.steps, args.batch, spec.input_size, generator=g) < 0.1).float()
    padded = torch.cat([x, torch.zeros(L, *x.shape[1:])]).to(args.device)
    print(
        f"network 784-256-256-10 fixed point (weight_exp {[l.weight_exp for l in spec.layers]}), "
        f"batch {args.batch}, T = {args.steps} (+{L} steps of pipeline), emulator on {args.device} "
        f"({args.threads} CPU thread{'s' if args.threads > 1 else ''})"
    )

    emulate(spec, padded[:5, :2])  # warm-up
    times = []
    for _ in range(args.repeats):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = emulate(spec, padded)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    t_emu = statistics.median(times)
    emu_sample = t_emu / args.batch
    counts = [int(s.sum()) for s in res.layer_spikes]
    print(
        f"emulator: {t_emu * 1e3:.1f} ms for the batch (median of {args.repeats}) = "
        f"{emu_sample * 1e3:.3f} ms per sample; spikes per layer {counts}"
    )

    try:
        from lava_bridge import lava_available, run_spec
    except ImportError:
        lava_available = lambda: False  # noqa: E731
    if not lava_available() or args.lava_samples < 1:
        print(
            "Lava not run (not available here: needs Python 3.10 + the [lava] extra; or "
            "--lava-samples 0): emulator timed only."
        )
        return
    lava_times, identical = [], True
    for b in range(args.lava_samples):
        t0 = time.perf_counter()
        out = run_spec(spec, x[:, b].numpy(), num_steps=args.steps + L, record_layers=True)
        lava_times.append(time.perf_counter() - t0)
        for i in range(L):
            ours = res.layer_spikes[i][:, b].cpu().numpy()
            identical &= bool(
                np.array_equal(ours, np.asarray(out.layer_spikes[i]).astype(ours.dtype))
            )
    lava_sample = statistics.median(lava_times)
    steps = args.steps + L
    print(
        f"Lava fixed_pt: {lava_sample:.2f} s per sample (median of {args.lava_samples} samples, "
        f"one at a time; build + run + stop) = {lava_sample / steps * 1e3:.2f} ms per step; "
        f"batch of {args.batch} extrapolated: {lava_sample * args.batch:.1f} s"
    )
    print(
        f"speed ratio per sample (Lava / emulator): {lava_sample / emu_sample:,.0f}x "
        "(target >= 1000x)"
    )
    print(
        f"spikes identical on the {args.lava_samples} Lava-run samples (every layer, every step): "
        f"{identical}"
    )


if __name__ == "__main__":
    main()
