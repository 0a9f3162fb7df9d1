"""snnTorch's own time loop over a user's model: the reference every scheduler is measured against."""

from __future__ import annotations

import snntorch as snn
import torch
from torch import Tensor, nn

__all__ = ["reset_states", "run_snntorch"]


def reset_states(model: nn.Module) -> None:
    """Zero the hidden state of the snnTorch neurons *of this model only*.

    ``snntorch.utils.reset`` resets every live neuron of a class, also in unrelated networks
    (snnTorch issue #438); this touches only ``model``'s own modules. The state is re-created at
    the first call with the right shape.
    """
    for m in model.modules():
        if isinstance(m, snn.SpikingNeuron):
            recurrent = isinstance(m, (snn.RLeaky, snn.RSynaptic))  # they keep spk[t-1]
            for name in ("mem", "syn") + (("spk",) if recurrent else ()):
                if hasattr(m, name):
                    setattr(m, name, torch.zeros(0, device=getattr(m, name).device))


def run_snntorch(model: nn.Module, inputs: Tensor) -> Tensor:
    """Run ``model`` the snnTorch way: reset, then call it once per time step.

    Args:
        model: An ``nn.Sequential`` whose neurons use ``init_hidden=True``.
        inputs: ``[T, B, *features]``.

    Returns:
        Output spikes ``[T, B, C]`` (flattened per sample).
    """
    reset_states(model)
    out = []
    for t in range(inputs.shape[0]):
        o = model(inputs[t])
        spk = o[0] if isinstance(o, tuple) else o
        out.append(spk.flatten(1))
    reset_states(model)
    return torch.stack(out)
