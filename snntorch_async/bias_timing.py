"""When a layer's bias starts to flow, and where it enters the neuron: :class:`BiasTiming`.

A layer bias ``b`` (``nn.Linear(..., bias=True)``) is a constant per step. Under layer-synchronous
execution (:class:`~snntorch_async.LayerSync`, snnTorch) every layer sees it from step 0, together
with its input. Under Lava/Loihi's pipelined timing (:class:`~snntorch_async.Pipelined`) the first
input reaches layer ``l`` only at step ``l + 1``, so the two conventions in use differ::

    SYNAPTIC  I_l[s] += b · [s ≥ l + 1]     a synaptic current that starts with the wavefront,
                                            so Pipelined is LayerSync shifted by L steps exactly
    LAVA      v_l[s] += b   for every s ≥ 0 Lava's own LIF (``bias_mant``) and lava-dl's netx:
                                            added to the voltage, from the first step on

For a ``Leaky`` layer (``du = 1``: the current clears each step) "into v" and "into the current"
are the same; the timings differ in the first ``l + 1`` steps, and since the membrane remembers
those steps, spikes can differ long after. For a ``Synaptic`` layer ``LAVA`` also moves the bias
from the current ``u`` to the voltage ``v``.

This is the one definition of the choice; the Lava bridge records it per layer in its network
spec and every engine (``Pipelined``, ``lava_bridge.emulate``, ``build``, netx, NIR) honours it.
Its ``value`` is the token written into spec files.
"""

from __future__ import annotations

from .errors import Choice

__all__ = ["BiasTiming"]


class BiasTiming(Choice):
    """The bias timing of a layer (see the module docstring).

    Members:
        SYNAPTIC: Bias as a synaptic current from the step the first input arrives (``l + 1``);
            reproduces a LayerSync/snnTorch-trained model exactly.
        LAVA: Bias added to ``v`` from step 0 in every layer, as Lava's ``LIF(bias_mant=b)``
            and lava-dl's netx reader do; the timing to train with for hardware deployment.
    """

    SYNAPTIC = "synaptic"
    LAVA = "lava"

    @property
    def into_voltage(self) -> bool:
        """True if the bias is added to ``v`` (Lava's LIF bias), False if to the current ``u``."""
        return self is BiasTiming.LAVA

    def first_step(self, layer_index: int) -> int:
        """The first (pipelined) step at which layer ``layer_index``'s bias flows."""
        return 0 if self is BiasTiming.LAVA else int(layer_index) + 1

    @classmethod
    def setting(cls) -> str:
        return "bias_timing"

    @classmethod
    def fix(cls) -> str:
        return (
            "pass BiasTiming.LAVA to match Lava's LIF bias (netx), BiasTiming.SYNAPTIC to "
            "reproduce a LayerSync-trained model."
        )
