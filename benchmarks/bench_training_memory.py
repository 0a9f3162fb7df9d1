"""Peak memory of one training step against T, F and truncated BPTT (CPU).

Two measures, side by side, for the 784-256-256-10 Leaky network (batch 32, Bernoulli inputs):

* ``graph MB``: bytes of the tensors autograd saves for the backward pass (unique storages,
  counted with ``torch.autograd.graph.saved_tensors_hooks``; for truncated BPTT the largest
  chunk). This is the part that grows with T and with the number of forward steps.
* ``peak RSS MB``: growth of the process's peak resident memory during the step, each
  configuration in a fresh subprocess (``resource.getrusage``; includes allocator slack).

Usage::

    python benchmarks/bench_training_memory.py            # full table (~3 min on 2 cores)
    python benchmarks/bench_training_memory.py --quick    # smaller, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def build(seed: int = 0):
    import snntorch as snn
    from torch import nn

    torch.manual_seed(seed)
    leaky = lambda **k: snn.Leaky(beta=0.9, threshold=0.25, init_hidden=True, **k)  # noqa: E731
    return nn.Sequential(
        nn.Linear(784, 256),
        leaky(),
        nn.Linear(256, 256),
        leaky(),
        nn.Linear(256, 10),
        leaky(output=True),
    )


def scheduler_for(F):
    from snntorch_async import LayerSync
    from snntorch_async.schedulers.asynchronous import RandomAsync

    if F == "sync":
        return LayerSync()
    return RandomAsync(forward_group_size=None if F == "inf" else int(F), seed=0)


def batch(T: int, B: int, rate: float = 0.2):
    g = torch.Generator().manual_seed(1)
    return (torch.rand(T, B, 784, generator=g) < rate).float(), torch.randint(
        0, 10, (B,), generator=g
    )


def graph_bytes(model, x, y, sched, k):
    """Largest per-chunk set of saved tensors (bytes) of one training step; also forward steps."""
    import snntorch.functional as SF

    from snntorch_async import simulate

    loss_fn, T = SF.ce_rate_loss(), x.shape[0]
    k = T if k is None else k
    state, peak, fsteps = None, 0, 0
    for s in range(0, T, k):
        seen: dict[int, int] = {}

        def pack(t):
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            res = simulate(model, x[s : s + k], scheduler=sched, initial_state=state)
            loss = loss_fn(res.spikes, y) * (res.spikes.shape[0] / T)
        peak = max(peak, sum(seen.values()))
        loss.backward()
        state = res.final_state
        fsteps += int(res.forward_steps.sum())
    model.zero_grad(set_to_none=True)
    return peak, fsteps / (T * x.shape[1])


def child(F, T, B, k) -> dict:
    """One configuration in this (fresh) process: RSS growth and time of one train_step."""
    import resource

    import snntorch.functional as SF

    from snntorch_async.training import train_step

    torch.set_num_threads(1)
    model, sched = build(), scheduler_for(F)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xw, yw = batch(2, B)
    train_step(
        model, (xw, yw), scheduler=sched, optimizer=opt, loss_fn=SF.ce_rate_loss()
    )  # warm-up
    x, y = batch(T, B)
    with open("/proc/self/statm") as f:
        rss0 = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    t0 = time.perf_counter()
    s = train_step(
        model, (x, y), scheduler=sched, optimizer=opt, loss_fn=SF.ce_rate_loss(), truncate_steps=k
    )
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    gb, fsteps = graph_bytes(build(), x, y, sched, k)
    return {
        "rss_mb": max(0, peak - rss0) / 2**20,
        "graph_mb": gb / 2**20,
        "time_s": dt,
        "density": s.spike_density,
        "fsteps": fsteps,
    }


def run(F, T, B, k) -> dict:
    code = (
        f"import sys, json; sys.path.insert(0, {HERE!r}); import bench_training_memory as b; "
        f"print(json.dumps(b.child({F!r}, {T}, {B}, {k!r})))"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    B = 16 if args.quick else 32
    rows = []
    Ts = (10, 20) if args.quick else (25, 50, 100)
    for T in Ts:
        for k in (None, 5 if args.quick else 10):
            rows.append(("LayerSync", "-", T, k, run("sync", T, B, k)))
    T = 10 if args.quick else 25
    Fs = ("inf", "64", "8") if args.quick else ("inf", "64", "16", "4")
    for F in Fs:
        for k in (None, 5):
            rows.append(("RandomAsync", "∞" if F == "inf" else F, T, k, run(F, T, B, k)))
    print(f"784-256-256-10 Leaky (thr 0.25), batch {B}, Bernoulli(0.2) inputs, CPU, 1 thread\n")
    hdr = (
        f"{'scheduler':<12} {'F':>4} {'T':>4} {'trunc k':>7} {'graph MB':>9} {'peak RSS MB':>11} "
        f"{'step s':>7} {'fwd steps/t':>11} {'density':>8}"
    )
    print(hdr)
    print("-" * len(hdr))
    for name, F, T, k, r in rows:
        print(
            f"{name:<12} {F:>4} {T:>4} {str(k or '-'):>7} {r['graph_mb']:>9.1f} {r['rss_mb']:>11.1f} "
            f"{r['time_s']:>7.2f} {r['fsteps']:>11.1f} {r['density']:>8.4f}"
        )


if __name__ == "__main__":
    main()
