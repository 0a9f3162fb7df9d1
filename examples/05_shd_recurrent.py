"""A recurrent SHD model (snn.RLeaky) trained without layer synchronization.

Reads the Spiking Heidelberg Digits through ``tonic.datasets.SHD`` from ``--root`` (place
``shd_train.h5.zip`` and ``shd_test.h5.zip`` under ``ROOT/SHD/``; nothing is downloaded unless
``--download``). When the files are absent (or with ``--synthetic``) it says so and uses synthetic
700-channel audio event streams in tonic's format instead, so the example runs offline.

The zoo model ``shd_rmlp`` (700 → RLeaky hidden layer with an all-to-all recurrence → 20 Leaky) is
trained under ``RandomAsync``; a recurrent spike of step ``t`` reaches its layer at step ``t + 1``
(``RecurrentTiming.NEXT_STEP``, snnTorch's recurrence). The script checks the anchor (the
asynchronous engine with all pending spikes per forward step equals LayerSync), then evaluates the
trained model under LayerSync, RandomAsync and the ``IMMEDIATE`` recurrent timing.

    python examples/05_shd_recurrent.py [--tiny] [--synthetic] [--root data] [--download]
"""

import argparse

import torch

import snntorch_async as sa
from snntorch_async.app.zoo import build_zoo_model
from snntorch_async.data import make_loader
from snntorch_async.data.tonic import (
    DatasetNotFoundError,
    EventFrames,
    SyntheticEvents,
    load_tonic,
)
from snntorch_async.metrics import evaluate
from snntorch_async.training import TrainConfig, fit

SENSOR = (700, 1, 1)  # SHD: 700 cochlea channels (x), no y, one polarity


def datasets(args, T: int, n: int | None):
    if not args.synthetic:
        try:
            train = load_tonic("shd", args.root, train=True, n_time_bins=T, download=args.download)
            test = load_tonic("shd", args.root, train=False, n_time_bins=T, download=args.download)
            print(f"SHD from {args.root}: {len(train)} train / {len(test)} test recordings")
        except DatasetNotFoundError as exc:
            print(f"SHD not found ({exc})\n-> using synthetic SHD-like events instead.")
            args.synthetic = True
    if args.synthetic:
        size = n or 2000

        def events(k, seed):
            return SyntheticEvents(k, SENSOR, num_classes=20, events_per_sample=600, seed=seed)

        train = EventFrames(events(size, 0), SENSOR, n_time_bins=T, binary=True)
        test = EventFrames(events(max(size // 4, 20), 1), SENSOR, n_time_bins=T, binary=True)
        print(f"synthetic events: {len(train)} train / {len(test)} test recordings")
    if n is not None:
        train = torch.utils.data.Subset(train, range(min(n, len(train))))
        test = torch.utils.data.Subset(test, range(min(n, len(test))))
    return train, test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (for the test suite)")
    parser.add_argument("--synthetic", action="store_true", help="synthetic events, no files")
    parser.add_argument("--root", default="data", help="folder with SHD/shd_train.h5.zip, ...")
    parser.add_argument("--download", action="store_true", help="let tonic download SHD")
    args = parser.parse_args()
    T, n, epochs, hidden, F = (8, 80, 2, 24, 8) if args.tiny else (50, None, 5, 128, 32)

    train, test = datasets(args, T, n)
    x, y = next(iter(make_loader(train, batch_size=8)))
    print(f"one batch: inputs {tuple(x.shape)} (time-major [T, B, p, x]), targets {tuple(y.shape)}")

    torch.manual_seed(0)
    model = build_zoo_model("shd_rmlp", hidden=hidden)
    with torch.no_grad():  # the anchor: all pending spikes per forward step = LayerSync
        ref = sa.simulate(model, x).spikes
        full = sa.simulate(model, x, scheduler=sa.RandomAsync(seed=0)).spikes
    print(f"RandomAsync(F=all) equals LayerSync on the recurrent model: {torch.equal(ref, full)}")

    scheduler = sa.RandomAsync(forward_group_size=F, seed=0)
    history = fit(
        model,
        make_loader(train, batch_size=16, shuffle=True, seed=0),
        scheduler=scheduler,
        config=TrainConfig(epochs=epochs, lr=5e-3, seed=0),
        progress=False,
    )
    print("training loss per epoch:", [round(v, 4) for v in history.loss])
    loader = make_loader(test, batch_size=32)
    for name, sched in [
        ("LayerSync", sa.LayerSync()),
        (f"RandomAsync F={F}", scheduler),
        (
            f"RandomAsync F={F} immediate",
            sa.RandomAsync(forward_group_size=F, seed=0, recurrent_timing="immediate"),
        ),
    ]:
        m = evaluate(model, loader, scheduler=sched).summary()
        print(
            f"executed {name}: test accuracy {m['accuracy']:.3f}, "
            f"spike density {m['spike_density']:.4f}"
        )


if __name__ == "__main__":
    main()
