"""An N-MNIST pipeline with tonic: events → frames → time-major batches → async training.

Reads N-MNIST through ``tonic.datasets.NMNIST`` from ``--root`` (place ``train.zip`` and
``test.zip`` under ``ROOT/NMNIST/``; nothing is downloaded unless ``--download``). When the
files are absent (or with ``--synthetic``) it says so and uses synthetic event streams in tonic's
format instead, so the pipeline runs offline.

    python examples/04_tonic_nmnist.py [--tiny] [--synthetic] [--root data] [--download]
"""

import argparse

import torch

import snntorch_async as sa
from snntorch_async.data import make_loader
from snntorch_async.metrics import evaluate
from snntorch_async.data.tonic import (
    DatasetNotFoundError,
    EventFrames,
    SyntheticEvents,
    load_tonic,
)
from snntorch_async.training import TrainConfig, fit
from snntorch_async.app.zoo import build_zoo_model

SENSOR = (34, 34, 2)  # N-MNIST: x, y, polarity


def datasets(args, T: int, n: int | None):
    if not args.synthetic:
        try:
            train = load_tonic(
                "nmnist", args.root, train=True, n_time_bins=T, download=args.download
            )
            test = load_tonic(
                "nmnist", args.root, train=False, n_time_bins=T, download=args.download
            )
            print(f"N-MNIST from {args.root}: {len(train)} train / {len(test)} test recordings")
        except DatasetNotFoundError as exc:
            print(f"N-MNIST not found ({exc})\n-> using synthetic N-MNIST-like events instead.")
            args.synthetic = True
    if args.synthetic:
        size = n or 2000
        train = EventFrames(
            SyntheticEvents(size, SENSOR, seed=0), SENSOR, n_time_bins=T, binary=True
        )
        test = EventFrames(
            SyntheticEvents(size // 4, SENSOR, seed=1), SENSOR, n_time_bins=T, binary=True
        )
        print(f"synthetic events: {len(train)} train / {len(test)} test recordings")
    if n is not None:
        train = torch.utils.data.Subset(train, range(min(n, len(train))))
        test = torch.utils.data.Subset(test, range(min(n, len(test))))
    return train, test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (for the test suite)")
    parser.add_argument("--synthetic", action="store_true", help="synthetic events, no files")
    parser.add_argument("--root", default="data", help="folder with NMNIST/train.zip, test.zip")
    parser.add_argument("--download", action="store_true", help="let tonic download N-MNIST")
    args = parser.parse_args()
    T, n, epochs, hidden = (5, 64, 1, 16) if args.tiny else (20, None, 3, 128)

    train, test = datasets(args, T, n)
    x, y = next(iter(make_loader(train, batch_size=8)))
    print(
        f"one batch: inputs {tuple(x.shape)} (time-major [T, B, p, y, x]), targets {tuple(y.shape)}"
    )

    torch.manual_seed(0)
    model = build_zoo_model("nmnist_mlp", hidden=hidden)
    scheduler = sa.RandomAsync(forward_group_size=32, seed=0)
    history = fit(
        model,
        make_loader(train, batch_size=32, shuffle=True, seed=0),
        scheduler=scheduler,
        config=TrainConfig(epochs=epochs, lr=5e-3, seed=0),
    )
    print("training loss per epoch:", [round(v, 4) for v in history.loss])
    m = evaluate(model, make_loader(test, batch_size=64), scheduler=scheduler).summary()
    print(f"test accuracy {m['accuracy']:.3f}, spike density {m['spike_density']:.4f}")


if __name__ == "__main__":
    main()
