"""Gradient rules of unlayered backprop: how surrogate gradients travel between layers.

In asynchronous execution a spike is an event: it is delivered when the ordering picks it. A
neuron that was evaluated and stayed silent sends no event, so whether (and where) its surrogate
gradient reaches the layer above is a *choice*, not a consequence of the forward pass. The spikes
are the same under every rule; only the gradients differ. Three rules, one small frozen object
each (``AsyncScheduler(gradient_rule=...)``):

:class:`EventGradients`
    Only delivered spikes carry gradient. A silent neuron passes nothing on; its surrogate term
    only enters its own spike record (once per time step, at its end-of-step membrane).

:class:`LayerCarriers`
    The zero outputs ``s = Θ(U - θ) = 0`` of evaluated silent neurons travel with their *layer's*
    next delivery, as value-0 carriers whose gradient is ``∂s/∂U = σ'(U - θ)``. With ``F`` at
    least the number of neurons the gradients equal LayerSync's (``silent_gradients=True``).

:class:`QueuedCarriers`
    The rule of the paper's reference implementation (asynctorch). Every evaluation of a neuron
    adds its output ``s`` (0 with its surrogate gradient, or 1 when it fires) to the neuron's own
    entry of the pending queue. A silent neuron's zeros stay queued, across time steps, until
    they leave either *with the neuron's next spike* (one delivery of value ``1 + Σ 0``) or as
    *filler*: when a forward step selects fewer than ``F`` real spikes, queued zeros fill the
    free slots (by the ordering's keys). A delivered zero adds ``W · 0`` to the current of the
    layer above: it changes no spike and evaluates no neuron, but its gradient reaches the
    membranes it would have touched. Output neurons add one surrogate term to the spike record
    per evaluation (``output_per_evaluation``), not one per time step.

Recurrent layers (``RecurrentTiming.NEXT_STEP``): the recurrence delivers the whole previous
step's record of a layer at once, every step, so under ``LayerCarriers`` and ``QueuedCarriers``
the silent neurons' zero outputs ride along with it (``recurrent_carriers``; at ``F ≥ N`` the
recurrent gradients are LayerSync's); under ``EventGradients`` only fired spikes feed the
recurrence with gradient. Under ``IMMEDIATE`` only delivered lateral spikes carry gradient.

Not reproduced from the reference (documented in ``docs/async.md``): its undetached reset
(snnTorch detaches the reset; with ``β ≈ 0`` the reset membrane decays away before it matters) and
output spikes occupying forward-group slots (that changes the spikes, not only the gradients).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GradientRule", "EventGradients", "LayerCarriers", "QueuedCarriers"]


class GradientRule:
    """Base class of the gradient rules (see the module docstring)."""

    #: Silent outputs ride with their layer's next delivery (``SilentCarriers``).
    layer_carriers = False
    #: Silent outputs queue per neuron and leave as filler or with the next spike.
    queued = False
    #: Output neurons add a surrogate term per evaluation (else one per time step).
    output_per_evaluation = False
    #: Silent neurons' zero outputs feed the next step's recurrence (else only fired spikes).
    recurrent_carriers = False


@dataclass(frozen=True)
class EventGradients(GradientRule):
    """Only delivered spikes carry gradient (silent neurons pass no surrogate gradient on)."""


@dataclass(frozen=True)
class LayerCarriers(GradientRule):
    """Silent neurons' zero outputs travel with their layer's next delivery (at ``F ≥ N``:
    LayerSync's gradients). Same as ``silent_gradients=True``."""

    layer_carriers = True
    recurrent_carriers = True


@dataclass(frozen=True)
class QueuedCarriers(GradientRule):
    """The reference implementation's rule: zero outputs queue per neuron and leave as filler
    in free forward-group slots or with the neuron's next spike.

    Attributes:
        output_per_evaluation: Output neurons add one surrogate term to the spike record per
            evaluation (the reference), instead of one per time step at the end-of-step membrane.
    """

    output_per_evaluation: bool = True
    queued = True
    recurrent_carriers = True


#: The rule used when a scheduler names none (see ``docs/async.md``, "Gradients").
DEFAULT_RULE: GradientRule = QueuedCarriers()


def resolve_gradient_rule(sched) -> GradientRule:
    """The gradient rule of an asynchronous scheduler: its ``gradient_rule``, or
    :class:`LayerCarriers` for ``silent_gradients=True``, or :data:`DEFAULT_RULE`."""
    rule = sched.gradient_rule
    if rule is None:
        return LayerCarriers() if sched.silent_gradients else DEFAULT_RULE
    return rule
