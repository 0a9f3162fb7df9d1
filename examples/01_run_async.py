"""Run an existing snnTorch model asynchronously, in three lines.

The model below is the snnTorch tutorial's fully-connected network (tutorial 5 style:
``nn.Linear`` + ``snn.Leaky(init_hidden=True)`` layers in an ``nn.Sequential``). Nothing about it
changes: ``AsyncNetwork`` reads its modules and runs it without layer synchronization.

    python examples/01_run_async.py [--tiny]
"""

import argparse

import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

import snntorch_async as sa
from snntorch_async.reference import run_snntorch


def tutorial_model(num_inputs: int, num_hidden: int, num_outputs: int) -> nn.Sequential:
    spike_grad = surrogate.fast_sigmoid(slope=25)
    beta = 0.95
    return nn.Sequential(
        nn.Linear(num_inputs, num_hidden),
        snn.Leaky(beta=beta, spike_grad=spike_grad, init_hidden=True),
        nn.Linear(num_hidden, num_outputs),
        snn.Leaky(beta=beta, spike_grad=spike_grad, init_hidden=True, output=True),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (for the test suite)")
    args = parser.parse_args()
    n_in, n_hid, T, B = (64, 32, 10, 4) if args.tiny else (784, 1000, 25, 128)

    torch.manual_seed(0)
    model = tutorial_model(n_in, n_hid, 10)
    inputs = (torch.rand(T, B, n_in) < 0.2).float()  # spikes, time-major [T, B, features]

    # The three lines: wrap the model, pick a scheduler, call it.
    net = sa.AsyncNetwork(model, scheduler=sa.RandomAsync(forward_group_size=16, seed=0))
    spikes = net(inputs)  # [T, B, 10], like the model's own output record
    print(f"asynchronous output spikes: {tuple(spikes.shape)}, {int(spikes.sum())} spikes")

    # For comparison: snnTorch's own loop and the layer-synchronous scheduler agree exactly.
    sync = sa.simulate(model, inputs, scheduler=sa.LayerSync())
    same = torch.equal(sync.spikes, run_snntorch(model, inputs))
    print(f"LayerSync equals snnTorch's loop: {same}; {int(sync.spikes.sum())} spikes")
    res = net.run(inputs)
    print(
        "forward steps per time step (async, mean): "
        f"{res.forward_steps.float().mean():.1f}; spikes per layer: "
        f"{res.spike_counts.sum((0, 1)).tolist()}"
    )


if __name__ == "__main__":
    main()
