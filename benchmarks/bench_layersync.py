"""LayerSync (``simulate``) versus snnTorch's own time loop, side by side in one run.

784-256-256-10 ``snn.Leaky`` network, T = 100, batch 64, CPU, Bernoulli(0.2) inputs. Both are
timed in interleaved repeats (so machine load hits both alike) and the median is reported, for
inference (``torch.no_grad``) and for one training step (forward + backward of a rate loss).
Target: LayerSync / snnTorch ≤ 1.2 for both. The spikes are checked equal before timing.

Usage::

    python benchmarks/bench_layersync.py [--repeats 7] [--threads 1] [--steps 100] [--batch 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import snntorch as snn
import snntorch.functional as SF
import torch
from torch import nn

import snntorch_async as sa
from snntorch_async.reference import run_snntorch

TARGET = 1.2


def build_model(seed: int = 0) -> nn.Sequential:
    """The benchmark network; weights ×3 so that every layer fires ~14 % of the time."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(784, 256),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(256, 256),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(256, 10),
        snn.Leaky(beta=0.9, init_hidden=True, output=True),
    )
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.mul_(3.0)
    return model


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    model = build_model()
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(args.steps, args.batch, 784, generator=gen) < 0.2).float()
    targets = torch.randint(0, 10, (args.batch,), generator=gen)
    loss_fn = SF.ce_rate_loss()

    with torch.no_grad():
        ours, ref = sa.simulate(model, x).spikes, run_snntorch(model, x)
    if not torch.equal(ours, ref):
        raise SystemExit("LayerSync and snnTorch disagree: not timing.")
    rate = float(ref.mean())

    def infer_ours():
        with torch.no_grad():
            sa.simulate(model, x)

    def infer_ref():
        with torch.no_grad():
            run_snntorch(model, x)

    def train_ours():
        model.zero_grad(set_to_none=True)
        loss_fn(sa.simulate(model, x).spikes, targets).backward()

    def train_ref():
        model.zero_grad(set_to_none=True)
        loss_fn(run_snntorch(model, x), targets).backward()

    print(
        f"784-256-256-10 Leaky, T={args.steps}, batch {args.batch}, CPU, "
        f"{torch.get_num_threads()} thread(s), torch {torch.__version__}, snntorch "
        f"{snn.__version__}, snntorch-async {sa.__version__}; output spike rate {rate:.3f}"
    )
    worst = 0.0
    for name, ours_fn, ref_fn in (
        ("inference", infer_ours, infer_ref),
        ("training step", train_ours, train_ref),
    ):
        ours_fn(), ref_fn()  # warm-up
        t_ours, t_ref = [], []
        for i in range(args.repeats):
            pair = ((ours_fn, t_ours), (ref_fn, t_ref))
            for fn, acc in pair if i % 2 == 0 else pair[::-1]:  # interleave, alternate order
                acc.append(_timed(fn))
        m_ours, m_ref = statistics.median(t_ours), statistics.median(t_ref)
        ratio = m_ours / m_ref
        worst = max(worst, ratio)
        print(
            f"{name:14s} LayerSync {m_ours * 1e3:8.1f} ms   snnTorch {m_ref * 1e3:8.1f} ms   "
            f"ratio {ratio:.3f}  (target <= {TARGET}: {'ok' if ratio <= TARGET else 'ABOVE'})"
        )
    print(f"worst ratio {worst:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
