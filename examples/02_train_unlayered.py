"""Train an snnTorch model with unlayered backprop (through asynchronous execution).

The same ``fit`` trains with ``LayerSync()`` (the usual layer-synchronous BPTT) or with an
asynchronous scheduler (gradients flow through every forward step, across layers). Here: the
offline digits, one async-trained model, evaluated under both execution modes.

    python examples/02_train_unlayered.py [--tiny]
"""

import argparse

import snntorch as snn
import torch
from torch import nn

import snntorch_async as sa
from snntorch_async.data import load_digits_spikes, make_loader
from snntorch_async.metrics import evaluate
from snntorch_async.training import TrainConfig, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (for the test suite)")
    parser.add_argument("-F", "--forward-group-size", type=int, default=8)
    args = parser.parse_args()
    T, epochs, n = (6, 1, 128) if args.tiny else (20, 10, None)

    digits = load_digits_spikes(num_steps=T, seed=0)
    train, test = digits.train, digits.test
    if n is not None:
        train = torch.utils.data.Subset(train, range(n))
        test = torch.utils.data.Subset(test, range(n))
    train_loader = make_loader(train, batch_size=64, shuffle=True, seed=0)
    test_loader = make_loader(test, batch_size=256)

    torch.manual_seed(0)
    model = nn.Sequential(  # zero reset, no delay: also exports to Lava unchanged
        nn.Linear(64, 64),
        snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="zero", reset_delay=False),
        nn.Linear(64, 10),
        snn.Leaky(
            beta=0.9, init_hidden=True, reset_mechanism="zero", reset_delay=False, output=True
        ),
    )
    scheduler = sa.RandomAsync(forward_group_size=args.forward_group_size, seed=0)
    history = fit(
        model, train_loader, scheduler=scheduler, config=TrainConfig(epochs=epochs, lr=5e-3, seed=0)
    )
    print("training loss per epoch:", [round(v, 4) for v in history.loss])

    for name, sch in (
        ("LayerSync", sa.LayerSync()),
        (f"RandomAsync F={args.forward_group_size}", scheduler),
    ):
        m = evaluate(model, test_loader, scheduler=sch).summary()
        print(
            f"executed {name:16s} accuracy {m['accuracy']:.3f}  spike density "
            f"{m['spike_density']:.3f}  decision after {m['decision_forward_steps']:.1f} "
            "forward steps"
        )


if __name__ == "__main__":
    main()
