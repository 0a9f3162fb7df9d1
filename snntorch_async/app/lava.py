"""The demo's Lava stage: export a trained model, emulate it in fixed point, verify on Lava.

``lava_bridge`` is imported here, inside the functions, so the rest of the application (and the
core package) works without it.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

__all__ = ["lava_check"]


def lava_check(model: nn.Module, inputs: Tensor, *, echo: Callable[[str], None]) -> list[str]:
    """Export ``model`` to Lava, run the fixed-point emulator, and verify against real Lava.

    Stages: ``lava_bridge.convert`` (float spec) → ``quantize`` (Loihi fixed point) → ``emulate``
    (bit-exact torch emulator), compared with our ``Pipelined`` engine (Lava's timing, float) to
    measure the quantization's effect; then, when Lava is installed, ``verify`` runs Lava in
    float (against ``Pipelined``) and in fixed point (against the emulator).

    Args:
        model: A trained model that exports to Lava (zero reset, ``reset_delay=False``).
        inputs: ``[T, B, *features]`` test samples.
        echo: Where progress messages go.

    Returns:
        Lines for the report: what was done and the agreement, or why Lava itself was not run
        and how to enable it.
    """
    import lava_bridge as lb

    from ..schedulers import Pipelined
    from ..simulate import simulate

    spec = lb.convert(model, input_shape=tuple(inputs.shape[2:]))
    lines = [f"converted to a NetworkSpec ({len(spec.layers)} layers, zero reset)"]
    fixed = lb.quantize(spec).spec
    emu = lb.emulate(fixed, inputs).spikes
    with torch.no_grad():
        piped = simulate(model, inputs, scheduler=Pipelined()).spikes
    agree = float((emu == piped).to(torch.float64).mean())
    lines.append(
        f"quantized to Loihi fixed point; emulator vs float Pipelined engine: {100 * agree:.2f}% "
        f"of output spike slots agree ({int(emu.sum())} vs {int(piped.sum())} output spikes "
        f"on {inputs.shape[1]} samples x {inputs.shape[0]} steps)"
    )
    if not lb.lava_available():
        lines.append(
            "Lava is not installed, so the exported network was not run on Lava. Enable it with "
            "Python 3.10: pip install 'snntorch-async[lava]' (or run `make demo`, which sets this "
            "up)."
        )
        return lines
    for what, source, kw in (("float", model, {}), ("fixed point", fixed, {"fixed_point": True})):
        echo(f"running {inputs.shape[1]} sample(s) on Lava ({what}) ...")
        r = lb.verify(source, inputs, **kw)
        lines.append(
            f"Lava ({what}) vs {r.engine}: {r.mismatches} mismatching spikes out of "
            f"{r.compared} compared" + (" (spike for spike)" if r.mismatches == 0 else "")
        )
    return lines
