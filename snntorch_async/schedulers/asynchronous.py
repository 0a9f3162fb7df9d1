"""Asynchronous (unlayered) execution: spikes travel as soon as neurons cross threshold.

Implements the rules of Koopman et al. (arXiv 2408.05098) as written down in the project's
``docs/async.md``. Within one time step, the pending spikes of the whole network are delivered in
*forward steps* of at most ``F`` spikes per sample; after each forward step every neuron that
received current checks its threshold and may fire at once, its spike joining the pending set.
A scheduling strategy (random, momentum, layer order) decides which pending spikes go first.

Everything is vectorised over the batch (each sample has its own pending set, its own stop rules)
and over neurons; the only Python loops are over forward steps and layers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..engine import (
    AsyncState,
    IndexOrder,
    MembranePriority,
    Ordering,
    RandomRace,
    build_plan,
    run_time_step,
    zero_currents,
)
from ..engine.gradients import GradientRule, LayerCarriers
from ..errors import ConfigError, UnsupportedModuleError
from ..graph import NetworkGraph, broadcasts_to
from ..ops import MaxPoolOp
from ..recurrent import RecurrentTiming
from .base import Scheduler, SimContext, detach_tree, step_seed

__all__ = ["AsyncScheduler", "RandomAsync", "MomentumAsync", "LayerOrderedAsync", "AsyncState"]


@dataclass(frozen=True, kw_only=True, eq=False)
class AsyncScheduler(Scheduler):
    """Common settings of the asynchronous schedulers.

    Attributes:
        forward_group_size: ``F``, pending spikes delivered per forward step, counted over the
            whole network, per sample. ``None`` delivers all pending spikes at once.
        prioritize_input: Deliver each time step's whole input frame in a first forward step
            (the paper's setting). With ``False`` input events join the pending set like spikes
            and get the highest priority under momentum scheduling.
        max_forward_steps: Upper bound on forward steps per time step and sample (``None``: no
            bound). Spikes still pending when a step is cut short carry over to the next step.
        stop_on_output: Decision mode: once an output neuron fired in a time step, allow this many
            more forward steps, then end the step for that sample (``None``: off). Pending spikes
            carry over.
        sync_threshold: Partial synchronisation: a neuron fires only if, besides ``mem > thr``, it
            received more than this many synaptic events in the current step. A float for every
            neuron, or one tensor per layer broadcastable to the layer's shape (may be a trainable
            ``nn.Parameter``; used through a straight-through comparison). ``None``: off.
        spike_dropout: Probability of dropping a delivered network spike, in training mode only.
        input_dropout: Probability of dropping a delivered input event, in training mode only.
        seed: Seed of the scheduler's own generator (same seed ⇒ identical spikes).
        full_layer_evaluation: At the first delivery into a layer in a time step, evaluate every
            neuron of the layer (``True``: the leak and the bias happened to all of them; with
            ``F`` ≥ all neurons this gives LayerSync's spikes *and* gradients), or only the
            neurons that received non-zero current plus those already above threshold
            (``False``: the paper's reference rule; same spikes, fewer surrogate gradients).
        silent_gradients: Shorthand for ``gradient_rule=LayerCarriers()``: the zero outputs of
            evaluated, silent neurons travel with their layer's next delivery as gradient
            carriers (value 0, so spikes are unchanged); with ``F`` ≥ all neurons the gradients
            then equal LayerSync's.
        gradient_rule: Where silent neurons' surrogate gradients go (spikes are the same under
            every rule): :class:`~snntorch_async.EventGradients` (only delivered spikes),
            :class:`~snntorch_async.LayerCarriers`, or :class:`~snntorch_async.QueuedCarriers`
            (the paper's reference implementation). ``None``: ``LayerCarriers`` if
            ``silent_gradients`` else the default rule (``engine.gradients.DEFAULT_RULE``, see
            ``docs/async.md``).
        recurrent_timing: When a recurrent layer's (``snn.RLeaky``/``snn.RSynaptic``) spikes
            reach the layer again (:class:`~snntorch_async.RecurrentTiming`, or its token):
            ``NEXT_STEP`` (default; snnTorch's ``V(spk[t-1])``, with the layer's first delivery of
            the next step: keeps the anchor) or ``IMMEDIATE`` (lateral events of the same step,
            delivered by the ordering like any pending spike).
    """

    forward_group_size: int | None = None
    prioritize_input: bool = True
    max_forward_steps: int | None = None
    stop_on_output: int | None = None
    sync_threshold: float | Sequence[Tensor] | None = None
    spike_dropout: float = 0.0
    input_dropout: float = 0.0
    seed: int = 0
    full_layer_evaluation: bool = True
    silent_gradients: bool = False
    gradient_rule: GradientRule | None = None
    recurrent_timing: RecurrentTiming = RecurrentTiming.NEXT_STEP

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "recurrent_timing",
            RecurrentTiming.coerce(
                self.recurrent_timing, f"{type(self).__name__}(recurrent_timing=...)"
            ),
        )
        rule = self.gradient_rule
        if rule is not None and not isinstance(rule, GradientRule):
            raise ConfigError(
                f"{type(self).__name__}: gradient_rule must be a gradient rule object; got "
                f"{rule!r}. Fix: e.g. gradient_rule=sa.QueuedCarriers() (or EventGradients(), "
                "LayerCarriers())."
            )
        if self.silent_gradients and rule is not None and not isinstance(rule, LayerCarriers):
            raise ConfigError(
                f"{type(self).__name__}: silent_gradients=True means gradient_rule="
                f"LayerCarriers(), but gradient_rule={rule!r} was given too. Fix: drop "
                "silent_gradients and keep the gradient_rule."
            )
        F = self.forward_group_size
        if F is not None and (isinstance(F, bool) or not isinstance(F, int) or F < 1):
            raise ConfigError(
                f"{type(self).__name__}: forward_group_size must be an integer >= 1 (spikes "
                f"delivered per forward step) or None for all pending at once; got {F!r}."
            )
        for name in ("max_forward_steps", "stop_on_output"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ConfigError(
                    f"{type(self).__name__}: {name} must be a non-negative integer or None; "
                    f"got {v!r}."
                )
        if self.max_forward_steps == 0:
            raise ConfigError(
                f"{type(self).__name__}: max_forward_steps=0 would deliver nothing; use >= 1 or None."
            )
        for name in ("spike_dropout", "input_dropout"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= float(v) < 1.0:
                raise ConfigError(
                    f"{type(self).__name__}: {name} must be a probability in [0, 1); got {v!r}."
                )
        if not isinstance(self.seed, int):
            raise ConfigError(f"{type(self).__name__}: seed must be an int; got {self.seed!r}.")
        st = self.sync_threshold
        if isinstance(st, (int, float)) and not (isinstance(st, bool) or st >= 0):
            raise ConfigError(
                f"{type(self).__name__}: sync_threshold must be >= 0 (a neuron fires only after "
                f"more than this many synaptic events in the step); got {st!r}. Fix: e.g. "
                "sync_threshold=2, or None to turn partial synchronisation off."
            )
        if st is not None and not isinstance(st, (int, float)):
            if not isinstance(st, (list, tuple)) or not all(torch.is_tensor(s) for s in st):
                raise ConfigError(
                    f"{type(self).__name__}: sync_threshold must be None, a number, or a sequence "
                    f"with one tensor per layer; got {type(st).__name__}."
                )

    # -- ordering ---------------------------------------------------------------------------
    def ordering(self) -> Ordering:
        """How pending spikes are ordered (an :class:`~snntorch_async.engine.Ordering`; a new
        ordering is a subclass overriding this method, with no edit of the engine)."""
        return RandomRace()

    # -- protocol --------------------------------------------------------------------------
    def check(self, graph: NetworkGraph) -> None:
        for layer in graph.layers:
            seen_weight = False
            for op in layer.ops:
                if op.stateful and layer.lone_linear is not op:
                    raise UnsupportedModuleError(
                        f"{type(self).__name__} does not support the stateful module at "
                        f"'{op.path}' ({type(op.module).__name__}) in this position: a delay "
                        "layer must be the only weighted module of its spiking layer (only "
                        "nn.Flatten / nn.Identity may stand before it). Fix: give the delays "
                        "their own layer, e.g. DelayedLinear(...) followed by a neuron."
                    )
                if op.weighted:
                    seen_weight = True
                elif isinstance(op, MaxPoolOp) and seen_weight:
                    raise UnsupportedModuleError(
                        f"{type(self).__name__} cannot run nn.MaxPool2d at '{op.path}': it pools "
                        "synaptic currents (it comes after a weighted layer and before the neuron "
                        f"'{layer.path}'), and a max of partial currents is not the max of the "
                        "total, so it has no event-driven meaning. Fix: pool spikes instead (put "
                        "the pooling right after the previous neuron), or use nn.AvgPool2d."
                    )
        st = self.sync_threshold
        if isinstance(st, (list, tuple)):
            if len(st) != graph.num_layers:
                raise ConfigError(
                    f"{type(self).__name__}: sync_threshold has {len(st)} tensors but the model "
                    f"has {graph.num_layers} spiking layers; give one per layer."
                )
            for layer, s in zip(graph.layers, st):
                if not broadcasts_to(tuple(s.shape), layer.shape):
                    raise ConfigError(
                        f"{type(self).__name__}: sync_threshold for layer '{layer.path}' has shape "
                        f"{list(s.shape)}; expected a shape broadcastable to {list(layer.shape)}."
                    )

    def init(self, ctx: SimContext, inputs: Tensor) -> AsyncState:
        B, dev, dt = ctx.batch, ctx.device, ctx.dtype
        plan = build_plan(self, ctx, inputs)
        gen = torch.Generator(device=dev)
        gen.manual_seed(self.seed)
        return AsyncState(
            neurons=tuple(layer.neuron.init_state(B, dev, dt) for layer in ctx.graph.layers),
            pending=plan.layout.zeros(B, dev, dt),
            priority=plan.layout.zeros(B, dev, dt),
            generator=gen,
            zero_current=zero_currents(ctx),
            queues=tuple(
                torch.zeros((g.delay, B, g.size), device=dev, dtype=dt)
                for g in plan.layout.arrivals
            ),
            plan=plan,
        )

    def step(self, ctx: SimContext, state: AsyncState, x: Tensor, t: int):
        return run_time_step(state.plan, ctx, state, x)

    def reseeded(self, step: int, rank: int = 0) -> "AsyncScheduler":
        """A copy seeded with :func:`~snntorch_async.schedulers.base.step_seed` (seed, step, rank)."""
        return dataclasses.replace(self, seed=step_seed(self.seed, step, rank))

    def carry(self, ctx: SimContext, state: AsyncState, inputs: Tensor) -> AsyncState:
        """Detach a carried state, rebuild the bias currents (they derive from parameters) and
        make the new simulation's plan."""
        return detach_tree(state._replace(plan=None))._replace(
            zero_current=zero_currents(ctx), plan=build_plan(self, ctx, inputs)
        )

    def backend(self, state: AsyncState) -> str:
        return state.plan.backend.name


@dataclass(frozen=True, kw_only=True, eq=False)
class RandomAsync(AsyncScheduler):
    """Pending spikes are delivered in a uniformly random order (per sample, seeded)."""

    def ordering(self) -> Ordering:
        return RandomRace()


@dataclass(frozen=True, kw_only=True, eq=False)
class MomentumAsync(AsyncScheduler):
    """Spikes of the neurons with the highest pre-spike membrane go first.

    Ties are broken by a seeded random jitter of size ``jitter``. Input events (when not
    prioritised) have no membrane and always go before neuron spikes.

    Attributes:
        jitter: Size of the uniform random tie-breaking jitter (the reference uses 1e-6).
    """

    jitter: float = 1e-6

    def ordering(self) -> Ordering:
        return MembranePriority(jitter=self.jitter)

    def __post_init__(self) -> None:
        super().__post_init__()
        j = self.jitter
        if isinstance(j, bool) or not isinstance(j, (int, float)) or not 0 <= j < float("inf"):
            raise ConfigError(
                f"MomentumAsync: jitter must be a finite number >= 0 (the size of the random "
                f"tie-breaking noise); got {j!r}. Fix: e.g. jitter=1e-6 (the default)."
            )


@dataclass(frozen=True, kw_only=True, eq=False)
class LayerOrderedAsync(AsyncScheduler):
    """Pending spikes in layer order (inputs, then layer 0, 1, ...), then by neuron index.

    Deterministic; with ``prioritize_input=True`` and ``F`` at least the number of neurons it
    reproduces :class:`~snntorch_async.LayerSync` spike for spike (the anchor test).
    """

    def ordering(self) -> Ordering:
        return IndexOrder()
