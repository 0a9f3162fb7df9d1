"""netx ``conv`` layers vs unrolled ``dense`` layers for an N-MNIST-sized net, side by side.

Net: 2×34×34 → Conv2d 12c5 → AvgPool 2 → Leaky → Conv2d 32c5 → AvgPool 2 → Leaky → Flatten →
Linear 10 → Leaky (biases, zero reset; random weights scaled so the layers spike). It is converted
with Lava's bias timing, quantized on netx's grid and written twice with ``export_netx``: as netx
``conv`` layers (each conv + pool folded into one strided convolution) and with
``conv_as_dense=True``. Prints the file sizes (and the spec ``.npz``, which always holds the dense
matrices), and, when lava-dl is installed, Lava's time per step running each file with lava-dl's
reader (``Loihi2SimCfg(select_tag="fixed_pt")``, one sample, after a 1-step warm-up that compiles),
the ratio dense/conv, and whether both give the same spikes as ``emulate``; then the same for
``lava_bridge.build`` (Lava's ``Conv`` process vs ``conv_as_dense=True``), in fixed point and in
float (float compared with ``Pipelined``).

Before Lava, the emulator's own convolutional path (``emulate``, conv layers accumulated through
their kernels) is compared with its dense path (``emulate(..., conv_as_dense=True)``, the unrolled
matrices) on a batch (``--emulate-batch``, default 16) of the same inputs: time (median of 3, one
CPU thread, no state recorded), the weight storage the emulator prepares, and the peak resident
memory that the first ``emulate`` call adds (sampled every 0.5 ms), each in a fresh process that
loads the spec first; and whether both
paths give identical spikes, ``u`` and ``v``.

Run: ``python benchmarks/bench_netx_conv.py [--steps 20] [--emulate-batch 16] [--no-lava]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import snntorch as snn
import torch
from torch import nn

from lava_bridge import QuantizeSettings, build, convert, emulate, export_netx, quantize, run
from snntorch_async import Pipelined, simulate


def model() -> nn.Sequential:
    torch.manual_seed(0)
    kw = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)
    m = nn.Sequential(
        nn.Conv2d(2, 12, 5),
        nn.AvgPool2d(2),
        snn.Leaky(beta=0.9, threshold=0.5, **kw),
        nn.Conv2d(12, 32, 5),
        nn.AvgPool2d(2),
        snn.Leaky(beta=0.9, threshold=0.5, **kw),
        nn.Flatten(),
        nn.Linear(32 * 5 * 5, 10),
        snn.Leaky(beta=0.9, threshold=0.5, output=True, **kw),
    )
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.mul_(4.0 if name.endswith("weight") else 0.5)
    return m


def lava_time_per_step(path: Path, x: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(compile + first step seconds, seconds per further step, output spikes [T, 10])."""
    from lava.lib.dl.netx import hdf5
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer

    T = x.shape[0]
    net = hdf5.Network(net_config=str(path))
    data = x.transpose(3, 2, 1, 0) if len(net.inp.shape) == 3 else x.reshape(T, -1).T
    src = RingBuffer(data=np.ascontiguousarray(data).astype(np.int32))
    sink = Sink(shape=net.out.shape, buffer=T)
    src.s_out.connect(net.inp)
    net.out.connect(sink.a_in)
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    try:
        t0 = time.perf_counter()
        net.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
        t1 = time.perf_counter()
        net.run(condition=RunSteps(num_steps=T - 1), run_cfg=cfg)
        t2 = time.perf_counter()
        out = sink.data.get().T
    finally:
        net.stop()
    return t1 - t0, (t2 - t1) / (T - 1), out


def build_time_per_step(
    spec, x: np.ndarray, conv_as_dense: bool
) -> tuple[float, float, np.ndarray]:
    """``lava_bridge.build`` + ``run``: (compile + first step s, s per further step, output spikes)."""
    T = x.shape[0]
    net = build(spec, x, num_steps=T, conv_as_dense=conv_as_dense)
    with run(net) as r:
        t0 = time.perf_counter()
        r.run(1)
        t1 = time.perf_counter()
        r.run(T - 1)
        t2 = time.perf_counter()
        out = r.spikes()
    return t1 - t0, (t2 - t1) / (T - 1), out


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _emulate_child(spec_path: str, steps: int, batch: int, conv_as_dense: bool):
    """In a fresh process: (peak RSS added by the first emulate in MB, s per run, prepared MB)."""
    torch.set_num_threads(1)
    from lava_bridge import load
    from lava_bridge.emulator import _prepare

    spec = load(spec_path)
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(steps, batch, *spec.input_shape, generator=g) < 0.15).float()
    # peak resident memory during the first run, sampled every 0.5 ms, above what it was before
    before, peak, running = _rss_mb(), [0.0], [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    times = []
    for k in range(3):
        t0 = time.perf_counter()
        emulate(spec, x, conv_as_dense=conv_as_dense)
        times.append(time.perf_counter() - t0)
        if k == 0:
            running[0] = False
            sampler.join()
    r = emulate(spec, x, record_state=True, conv_as_dense=conv_as_dense)  # for the comparison
    cpu = torch.device("cpu")
    prepared = [_prepare(l, i, cpu, conv_as_dense) for i, l in enumerate(spec.layers)]
    weights = sum(
        p.w_stack.nelement() * p.w_stack.element_size()
        + (0 if p.conv is None else p.conv.kernel.nelement() * p.conv.kernel.element_size())
        for p in prepared
    )
    return peak[0] - before, statistics.median(times), weights / 1e6, r


def emulator_conv_vs_dense(fixed, spec_path: Path, steps: int, batch: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    res = {}
    for k, dense in (("conv", False), ("dense", True)):
        with ctx.Pool(1) as pool:
            res[k] = pool.apply(_emulate_child, (str(spec_path), steps, batch, dense))
    for k, (rss, sec, w, _) in res.items():
        print(
            f"emulate ({k:5s} path): {1e3 * sec:.0f} ms for batch {batch} x {steps} steps (median "
            f"of 3, 1 thread), prepared weights {w:.2f} MB, peak memory added {rss:.0f} MB"
        )
    a, b = res["conv"][3], res["dense"][3]
    same = all(
        torch.equal(p, q) for p, q in zip(a.layer_spikes + a.u + a.v, b.layer_spikes + b.u + b.v)
    )
    print(
        f"emulate dense/conv: time {res['dense'][1] / res['conv'][1]:.1f}x, prepared weights "
        f"{res['dense'][2] / res['conv'][2]:.0f}x; spikes, u, v identical: {same}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--emulate-batch", type=int, default=16)
    ap.add_argument("--no-lava", action="store_true", help="stop after the emulator comparison")
    args = ap.parse_args()
    spec = convert(model(), (2, 34, 34), bias_timing="lava")
    fixed = quantize(spec, QuantizeSettings(weight_exp=0)).spec
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(args.steps, 2, 34, 34, generator=g) < 0.15).numpy().astype(np.int64)
    ours = emulate(fixed, torch.tensor(x)[:, None]).spikes[:, 0].numpy()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        files = {
            "conv": export_netx(fixed, d / "conv.net"),
            "dense": export_netx(fixed, d / "dense.net", conv_as_dense=True),
        }
        spec_path = fixed.save(d / "spec.npz")
        print(
            f"N-MNIST-sized net, {fixed.num_layers} layers, "
            f"{sum(l.out_size for l in fixed.layers)} neurons, emulate: {int(ours.sum())} output spikes"
        )
        print(f"spec .npz (dense matrices, fixed point): {os.path.getsize(spec_path) / 1e6:.2f} MB")
        for k, p in files.items():
            print(f"netx {k:5s}: {os.path.getsize(p) / 1e6:.3f} MB")
        print(
            f"file size ratio dense/conv: {os.path.getsize(files['dense']) / os.path.getsize(files['conv']):.0f}x"
        )
        emulator_conv_vs_dense(fixed, spec_path, args.steps, args.emulate_batch)
        if args.no_lava:
            return 0
        try:
            import lava.lib.dl.netx  # noqa: F401
        except ImportError:
            print("lava-dl is not installed: Lava's time per step not measured (run `make venv`).")
            return 0
        per = {}
        for k, p in files.items():
            first, step, out = lava_time_per_step(p, x)
            per[k] = step
            same = bool((out == ours).all())
            print(
                f"Lava ({k:5s}): compile+first step {first:.2f} s, {1e3 * step:.1f} ms per step "
                f"({args.steps} steps, one sample); spikes == emulate: {same}"
            )
        print(f"Lava time per step ratio dense/conv: {per['dense'] / per['conv']:.2f}x")
    m = model()
    with torch.no_grad():
        piped = (
            simulate(
                m,
                torch.tensor(x, dtype=torch.float32)[:, None],
                scheduler=Pipelined(float64=True, bias_timing="lava"),
            )
            .spikes[:, 0]
            .numpy()
        )
    for what, s, ref in (("fixed point", fixed, ours), ("float", spec, piped)):
        per = {}
        for k, dense in (("Conv", False), ("Dense", True)):
            first, step, out = build_time_per_step(s, x, dense)
            per[k] = step
            print(
                f"build ({what}, {k:5s}): compile+first step {first:.2f} s, {1e3 * step:.1f} ms per "
                f"step; spikes == {'emulate' if s.fixed_point else 'Pipelined'}: {bool((out == ref).all())}"
            )
        print(f"build ({what}) time per step ratio Dense/Conv: {per['Dense'] / per['Conv']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
