"""Data-parallel throughput: training samples per second with 1 vs 2 processes (one thread each).

Both runs go through the same launcher (``torch.distributed.run``'s API, via
``snntorch_async.training.distributed.launch``): 1 process trains alone, 2 processes train
data-parallel on gloo (DDP, ``DistributedSampler``), each with the same per-process batch. The
model is ``zoo.digits_mlp2`` on the rate-coded digits (T=20); one epoch under ``LayerSync`` and
one under ``RandomAsync(F=8)``. Printed side by side, measured in the same run. The ratio is
bounded by the cores the machine has free (2 processes need 2 idle cores).

Run: ``python benchmarks/bench_distributed.py [--batch 32] [--max-batches 20]``
"""

from __future__ import annotations

import argparse
import time


def worker(sched_name: str, batch: int, max_batches: int) -> tuple[int, float]:
    """One rank: train one epoch; return (samples this rank trained on, seconds)."""
    import torch

    import snntorch_async as sa
    from snntorch_async.app import zoo
    from snntorch_async.data import RateEncoding, load_digits_spikes, make_loader

    torch.set_num_threads(1)
    data = load_digits_spikes(encoding=RateEncoding(), num_steps=20, seed=0)
    loader = make_loader(data.train, batch_size=batch, shuffle=True, seed=0)
    sched = sa.LayerSync() if sched_name == "LayerSync" else sa.RandomAsync(forward_group_size=8)
    torch.manual_seed(0)
    model = zoo.digits_mlp2(hidden=64)
    cfg = sa.TrainConfig(epochs=1, lr=2e-3, seed=0, max_batches=max_batches)
    t0 = time.perf_counter()
    h = sa.fit(model, loader, scheduler=sched, config=cfg, progress=False)
    dt = time.perf_counter() - t0
    return len(h.step_loss) * batch, dt


def main() -> None:
    from snntorch_async.training.distributed import launch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32, help="batch size per process")
    ap.add_argument("--max-batches", type=int, default=20, help="optimizer steps per run")
    args = ap.parse_args()
    print(f"{'scheduler':18s} {'1 process':>14s} {'2 processes':>14s} {'ratio':>7s}")
    for name in ("LayerSync", "RandomAsync F=8"):
        rate = {}
        for n in (1, 2):
            out = launch(worker, name, args.batch, args.max_batches, nproc=n)
            samples = sum(s for s, _ in out.values())
            rate[n] = samples / max(t for _, t in out.values())
        print(
            f"{name:18s} {rate[1]:10.1f} s/s {rate[2]:10.1f} s/s {rate[2] / rate[1]:6.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
