"""QAT on the offline digits: accuracy of a float model vs. the same model in Loihi fixed point.

For each quantization setting, trains (once, shared) a float 64-h-10 Leaky network (zero reset,
``reset_delay=False``) with snntorch-async's ``fit`` under ``LayerSync``, then:

* *without QAT*: ``quantize(convert(model))`` and run it with the bit-exact emulator
  (:func:`lava_bridge.emulate`, = Lava ``fixed_pt``), vs. the float model;
* *with QAT*: fine-tune a copy inside ``lava_bridge.qat(...)`` (fake-quantized weights,
  thresholds, decays; straight-through gradients), then compare the QAT model in float (its
  fake-quantized self, LayerSync) with the same model in fixed point (emulator).

The emulator's output lags by L steps (one per layer: Loihi's pipeline), so every input is
padded with L zero steps and the emulator's spikes from step L on are counted. Prints one line
per setting; accuracy in percent on the fixed test split (25 %, split_seed 0).

Run: ``python benchmarks/qat_digits.py`` (about 30 s on one CPU thread); ``--quick`` for a
smaller run.
"""

from __future__ import annotations

import argparse
import copy
import time

import snntorch as snn
import torch
from torch import nn

import snntorch_async as sa
from lava_bridge import convert, emulate
from lava_bridge import qat
from lava_bridge import QuantizeSettings, quantize
from snntorch_async.data import RateEncoding, load_digits_spikes, make_loader
from snntorch_async.training import TrainConfig, fit


def make_model(hidden: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    kw = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)
    return nn.Sequential(
        nn.Linear(64, hidden),
        snn.Leaky(beta=0.9, **kw),
        nn.Linear(hidden, 10),
        snn.Leaky(beta=0.9, output=True, **kw),
    )


def float_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """LayerSync (= snnTorch) spike-count accuracy in percent."""
    with torch.no_grad():
        counts = sa.simulate(model, x).spikes.sum(0)
    return 100.0 * float((counts.argmax(1) == y).float().mean())


def fixed_accuracy(spec, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Emulator (Lava fixed_pt) accuracy in percent, and its output counts ``[B, C]``."""
    lag = spec.num_layers
    padded = torch.cat([x, x.new_zeros((lag, *x.shape[1:]))])
    counts = emulate(spec, padded).spikes[lag:].sum(0)
    return 100.0 * float((counts.argmax(1) == y).float().mean()), counts


def stack(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = next(iter(make_loader(dataset, batch_size=len(dataset))))
    return x, y


def run(
    *,
    hidden: int = 64,
    num_steps: int = 25,
    epochs: int = 15,
    qat_epochs: int = 5,
    lr: float = 5e-3,
    seed: int = 0,
    settings: dict[str, QuantizeSettings] | None = None,
    log=print,
) -> list[dict]:
    """Run the experiment; returns one dict of accuracies per setting."""
    settings = settings or {
        "8-bit weights (default)": QuantizeSettings(),
        "SLAYER grid (scale 64)": QuantizeSettings.slayer(),
        "3-bit weights": QuantizeSettings(num_weight_bits=3),
        "2-bit weights": QuantizeSettings(num_weight_bits=2),
    }
    digits = load_digits_spikes(encoding=RateEncoding(gain=1.0), num_steps=num_steps, seed=seed)
    train = make_loader(digits.train, batch_size=64, shuffle=True, seed=seed)
    x_test, y_test = stack(digits.test)
    model = make_model(hidden, seed)
    t0 = time.perf_counter()
    fit(
        model,
        train,
        scheduler=sa.LayerSync(),
        config=TrainConfig(epochs=epochs, lr=lr, seed=seed),
        progress=False,
    )
    log(f"float training: {epochs} epochs in {time.perf_counter() - t0:.1f} s")
    float_acc = float_accuracy(model, x_test, y_test)
    rows = []
    for name, qs in settings.items():
        spec = quantize(convert(model, (64,)), qs).spec
        noqat_fixed, _ = fixed_accuracy(spec, x_test, y_test)
        tuned = copy.deepcopy(model)
        with qat(tuned, (64,), qs):
            fit(
                tuned,
                train,
                scheduler=sa.LayerSync(),
                config=TrainConfig(epochs=qat_epochs, lr=lr / 5, seed=seed + 1),
                progress=False,
            )
            qat_float = float_accuracy(tuned, x_test, y_test)
            qat_spec = quantize(convert(tuned, (64,)), qs).spec
        qat_fixed, _ = fixed_accuracy(qat_spec, x_test, y_test)
        rows.append(
            dict(
                setting=name,
                float=float_acc,
                fixed_no_qat=noqat_fixed,
                qat_float=qat_float,
                qat_fixed=qat_fixed,
            )
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller run (fewer epochs)")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    kw = dict(epochs=4, qat_epochs=2) if args.quick else {}
    rows = run(hidden=args.hidden, seed=args.seed, **kw)
    print(
        f"\ndigits 64-{args.hidden}-10, zero reset, test accuracy in % "
        "(fixed point = bit-exact emulator)"
    )
    print(
        f"{'setting':26s} {'float':>7s} {'fixed':>7s} {'loss':>6s} | "
        f"{'QAT float':>9s} {'QAT fixed':>9s} {'loss':>6s}"
    )
    for r in rows:
        print(
            f"{r['setting']:26s} {r['float']:7.2f} {r['fixed_no_qat']:7.2f} "
            f"{r['float'] - r['fixed_no_qat']:6.2f} | "
            f"{r['qat_float']:9.2f} {r['qat_fixed']:9.2f} {r['qat_float'] - r['qat_fixed']:6.2f}"
        )
    worst = max(r["qat_float"] - r["qat_fixed"] for r in rows)
    print(f"\nlargest QAT float -> fixed loss: {worst:.2f} points (target <= 1)")


if __name__ == "__main__":
    main()
