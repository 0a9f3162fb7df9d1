"""Export an snnTorch model to Lava (Loihi) and verify it spike for spike.

Steps: convert the model to a plain-data ``NetworkSpec`` (zero reset, ``reset_delay=False``),
save it, quantize it to Loihi's fixed point, run the bit-exact emulator, and, when Lava is
installed (Python 3.10, ``pip install 'snntorch-async[lava]'``), run the network on Lava and
count the mismatching spikes. Also writes lava-dl netx HDF5 and NIR files.

    python examples/03_export_lava.py [--tiny] [--out DIR]

Without ``--out`` the files go to a new temporary folder (printed), never into the repository.
"""

import argparse
import importlib.util
import tempfile
from pathlib import Path

import snntorch as snn
import torch
from torch import nn

import lava_bridge
import snntorch_async as sa


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (for the test suite)")
    parser.add_argument(
        "--out",
        default=None,
        help="folder for the exported files (default: a new temporary folder)",
    )
    args = parser.parse_args()
    n_in, n_hid, T, B = (16, 12, 8, 2) if args.tiny else (64, 64, 25, 8)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="snntorch-async-export-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"writing the exported files to {out}")

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(n_in, n_hid),
        snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="zero", reset_delay=False),
        nn.Linear(n_hid, 10),
        snn.Leaky(
            beta=0.9, init_hidden=True, reset_mechanism="zero", reset_delay=False, output=True
        ),
    )
    with torch.no_grad():  # stronger weights so that the small demo network spikes
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.mul_(3.0)
    inputs = (torch.rand(T, B, n_in) < 0.3).float()

    spec = lava_bridge.convert(model, input_shape=(n_in,))
    spec.save(out / "net.npz")
    print(f"saved {out / 'net.npz'} ({len(spec.layers)} layers)")

    # Lava timing: one time step per synaptic hop. Pipelined() runs our engine that way.
    piped = sa.simulate(model, inputs, scheduler=sa.Pipelined())
    print(
        f"Pipelined (Lava timing): output lags the input by {piped.output_lag} steps, "
        f"{int(piped.spikes.sum())} output spikes"
    )

    fixed = lava_bridge.quantize(spec).spec
    emulated = lava_bridge.emulate(fixed, inputs)
    print(f"fixed-point emulator: {int(emulated.spikes.sum())} output spikes (all steps)")
    # netx gives a layer's bias to Lava's LIF (into v from step 0): convert with that timing;
    # export_netx puts the network on netx's grid (weight exponent 0) itself
    lava_bridge.export_netx(
        lava_bridge.convert(model, input_shape=(n_in,), bias_timing=sa.BiasTiming.LAVA),
        out / "net.h5",
    )
    lava_bridge.export_nir(spec, out / "net.nir")
    print(f"wrote {out / 'net.h5'} (lava-dl netx) and {out / 'net.nir'} (NIR)")

    if importlib.util.find_spec("lava") is None:
        print(
            "Lava is not installed here, so the network was not run on Lava. Enable it with "
            "Python 3.10: pip install 'snntorch-async[lava]' (or `make test`)."
        )
        return
    result = lava_bridge.verify(model, inputs[:, :1])
    print(f"Lava vs our engine: {result.mismatches} mismatching spikes")


if __name__ == "__main__":
    main()
