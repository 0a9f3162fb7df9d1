"""The pending set of the asynchronous engine: what waits to be delivered, by source.

Sources come in four named parts: the network input (only when inputs are not prioritised:
its events then wait like spikes), one part per hidden layer (the output layer's spikes have no
targets), one part per delayed arrival group ``(layer, k)`` (spikes that reach a delay layer
through its delay-``k`` synapses, see :mod:`snntorch_async.delays`), and, under
``RecurrentTiming.IMMEDIATE`` only, one *lateral* part per recurrent layer (its spikes on their
way back into the layer through its recurrent weights). Under the default
``RecurrentTiming.NEXT_STEP`` a recurrent layer's spikes wait for the next step in the layer's
own state (``RLeakyState.spk``) and arrive with its first delivery there. :class:`SourceLayout`
describes each part once (its target layer, its place in the network-wide key array);
:class:`PendingSet` holds the values. Selection and the native kernel see one flat array
(:meth:`PendingSet.flat`), the rest of the engine sees named groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterator, NamedTuple, Sequence

import torch
from torch import Tensor

__all__ = ["SourceGroup", "SourceLayout", "PendingSet"]


class SourceGroup(NamedTuple):
    """One group of sources of the pending set.

    Attributes:
        index: Position of the group in :meth:`PendingSet.flat` order.
        start: First column of the group in the network-wide ``[B, S]`` key array.
        size: Number of sources.
        target: The layer its events are delivered into.
        source_layer: The layer whose spikes it holds (``None``: network input or a delayed
            arrival group).
        delay: ``0``, or ``k > 0`` for a delayed arrival group (delivered through the delay-``k``
            synapses of ``target`` only).
        arrival: Index of the delayed arrival group (its delay queue), ``None`` otherwise.
        lateral: A recurrent layer's spikes back into itself (``target == source_layer``),
            delivered through its recurrent weights (``RecurrentTiming.IMMEDIATE``).
    """

    index: int
    start: int
    size: int
    target: int
    source_layer: int | None
    delay: int = 0
    arrival: int | None = None
    lateral: bool = False

    @property
    def is_input(self) -> bool:
        return self.source_layer is None and self.arrival is None

    @property
    def columns(self) -> slice:
        return slice(self.start, self.start + self.size)


@dataclass(frozen=True, eq=False)
class SourceLayout:
    """Where each pending source lives (built once per simulation, part of the plan).

    Attributes:
        input: The input group (``None`` when inputs are prioritised: delivered as a frame).
        hidden: Per hidden layer (every layer but the output layer) the group of its spikes.
        arrivals: Per delayed arrival group ``(layer, k)`` its group.
        laterals: Per recurrent layer its lateral group (``RecurrentTiming.IMMEDIATE`` only).
    """

    input: SourceGroup | None
    hidden: tuple[SourceGroup, ...]
    arrivals: tuple[SourceGroup, ...]
    laterals: tuple[SourceGroup, ...] = ()

    @staticmethod
    def build(
        input_size: int | None,
        layer_sizes: Sequence[int],
        arrivals: Sequence[tuple[int, int, int]],
        laterals: Sequence[int] = (),
    ) -> "SourceLayout":
        """``input_size`` (``None``: prioritised input), the layers' sizes, per delayed
        arrival group ``(layer, k, in_size)``, and the recurrent layers with a lateral group."""
        groups: list[SourceGroup] = []

        def add(size, target, source_layer, delay=0, arrival=None, lateral=False):
            start = groups[-1].start + groups[-1].size if groups else 0
            g = SourceGroup(
                len(groups), start, int(size), target, source_layer, delay, arrival, lateral
            )
            groups.append(g)
            return g

        inp = add(input_size, 0, None) if input_size is not None else None
        hidden = tuple(add(n, l + 1, l) for l, n in enumerate(layer_sizes[:-1]))
        late = tuple(add(n, l, None, k, i) for i, (l, k, n) in enumerate(arrivals))
        lat = tuple(add(layer_sizes[l], l, l, lateral=True) for l in laterals)
        return SourceLayout(inp, hidden, late, lat)

    @cached_property
    def groups(self) -> tuple[SourceGroup, ...]:
        """Every group in flat order: input, hidden layers, delayed arrivals, laterals."""
        return (
            ((self.input,) if self.input is not None else ())
            + self.hidden
            + self.arrivals
            + self.laterals
        )

    def lateral(self, layer: int) -> SourceGroup | None:
        """The lateral group of recurrent ``layer`` (``None``: none)."""
        for g in self.laterals:
            if g.target == layer:
                return g
        return None

    @cached_property
    def total(self) -> int:
        """Number of sources ``S`` (columns of the flat arrays)."""
        return sum(g.size for g in self.groups)

    @cached_property
    def regular_total(self) -> int:
        """Input events and hidden-layer spikes (not delayed arrivals or laterals)."""
        return self.total - sum(g.size for g in self.arrivals + self.laterals)

    def feeding(self, layer: int) -> SourceGroup | None:
        """The (non-delayed) group whose events are delivered into ``layer``."""
        for g in ((self.input,) if self.input is not None else ()) + self.hidden:
            if g.target == layer:
                return g
        return None

    def zeros(self, batch: int, device, dtype) -> "PendingSet":
        return PendingSet.from_flat(
            self, [torch.zeros((batch, g.size), device=device, dtype=dtype) for g in self.groups]
        )


@dataclass(frozen=True, eq=False)
class PendingSet:
    """Pending values per source group, ``[B, n]`` each (spike counts for neurons, input values
    for input events; differentiable). Iterating yields the groups in flat order.

    Attributes:
        input: The input events waiting (``None`` when inputs are prioritised).
        hidden: Per hidden layer its pending spikes.
        arrivals: Per delayed arrival group ``(layer, k)`` the events due at this step.
        laterals: Per lateral group (``RecurrentTiming.IMMEDIATE``) its pending spikes.
    """

    input: Tensor | None
    hidden: tuple[Tensor, ...]
    arrivals: tuple[Tensor, ...]
    laterals: tuple[Tensor, ...] = ()

    def flat(self) -> list[Tensor]:
        """The groups in :attr:`SourceLayout.groups` order."""
        return (
            ([self.input] if self.input is not None else [])
            + list(self.hidden)
            + list(self.arrivals)
            + list(self.laterals)
        )

    @staticmethod
    def from_flat(layout: SourceLayout, values: Sequence[Tensor]) -> "PendingSet":
        def at(g: SourceGroup) -> Tensor:
            return values[g.index]

        return PendingSet(
            input=None if layout.input is None else at(layout.input),
            hidden=tuple(at(g) for g in layout.hidden),
            arrivals=tuple(at(g) for g in layout.arrivals),
            laterals=tuple(at(g) for g in layout.laterals),
        )

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self.flat())

    def __len__(self) -> int:
        return len(self.flat())
