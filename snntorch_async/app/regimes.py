"""Neuron regimes: where the effect of unlayered backprop appears, and where it does not.

A :class:`Regime` is the neuron and training setting of an experiment (the LIF decay ``beta``,
the threshold, the Linear layers' bias and initialisation, the optimizer's weight decay). Two are
named, measured against the paper's reference implementation (docs/async.md, README "Measured
results"):

:data:`REFERENCE`
    The reference implementation's own regime (its N-MNIST example): ``beta = e^-10``
    (τ_m = 1000 with dt = 10000: the membrane forgets between steps), threshold 0.3, bias-free
    xavier-uniform Linear, Adam with weight decay 1e-5. Here the order of spikes within a step
    decides what fires, and unlayered backprop changes the model.

:data:`CONTRAST`
    ``beta = 0.9``, threshold 1.0, Linear with bias (torch's initialisation), no weight decay:
    the membrane integrates over many steps, so the order within a step hardly matters, and
    async- and sync-trained models behave alike (in the reference too).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

__all__ = ["Regime", "REFERENCE", "CONTRAST", "REGIMES", "adam"]


def adam(weight_decay: float = 0.0):
    """``TrainConfig``'s optimizer factory: Adam, with ``weight_decay`` when it is non-zero."""
    import torch

    if not weight_decay:
        return torch.optim.Adam
    return functools.partial(torch.optim.Adam, weight_decay=weight_decay)


@dataclass(frozen=True, kw_only=True)
class Regime:
    """One neuron and training regime.

    Attributes:
        name: Short name (``"reference"``, ``"contrast"``).
        beta: Membrane decay of every ``snn.Leaky``.
        threshold: Firing threshold.
        bias: Whether the Linear layers have a bias.
        init: Weight initialisation (``"default"`` or ``"xavier"``, see ``zoo.INITS``).
        lr: Adam's learning rate in the paper-claim experiments.
        weight_decay: Adam's weight decay.
        label: One line for reports.
    """

    name: str
    beta: float
    threshold: float
    bias: bool
    init: str
    lr: float
    weight_decay: float
    label: str

    def model_settings(self) -> dict:
        """Keyword arguments of the zoo MLPs (``zoo.digits_mlp``, ``digits_mlp2``,
        ``nmnist_mlp``, ``shd_mlp``)."""
        return {
            "beta": self.beta,
            "threshold": self.threshold,
            "bias": self.bias,
            "init": self.init,
        }

    def optimizer(self):
        """The optimizer factory of ``TrainConfig`` (Adam with this regime's weight decay)."""
        return adam(self.weight_decay)


REFERENCE = Regime(
    name="reference",
    beta=math.exp(-10),
    threshold=0.3,
    bias=False,
    init="xavier",
    lr=1e-3,
    weight_decay=1e-5,
    label="the paper reference's regime: beta = e^-10 (tau_m = 1000, dt = 10000), threshold 0.3, "
    "bias-free xavier-uniform Linear, Adam weight decay 1e-5",
)
CONTRAST = Regime(
    name="contrast",
    beta=0.9,
    threshold=1.0,
    bias=True,
    init="default",
    lr=2e-3,
    weight_decay=0.0,
    label="the contrast: beta = 0.9, threshold 1.0, Linear with bias (torch's initialisation)",
)
#: By name.
REGIMES = {r.name: r for r in (REFERENCE, CONTRAST)}
