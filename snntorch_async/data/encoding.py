"""Spike encodings: settings as frozen dataclasses, implementations in a dispatch table.

:func:`encode` turns real-valued samples ``[N, *features]`` into ``[N, T, *features]`` with one of
:class:`RateEncoding` (Bernoulli), :class:`LatencyEncoding` (one spike, earlier for brighter) or
:class:`CurrentEncoding` (the intensity itself at every step), dispatched through
:data:`ENCODERS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..errors import ConfigError

__all__ = ["RateEncoding", "LatencyEncoding", "CurrentEncoding", "ENCODERS", "encode"]


@dataclass(frozen=True, kw_only=True)
class RateEncoding:
    """Bernoulli rate code: at every time step a feature spikes with probability ``gain · x``.

    ``x`` is the intensity scaled to [0, 1]; the probability is clipped to [0, 1]. Spikes are 0/1,
    so the first layer's synaptic operations count as accumulates (ACs).

    Attributes:
        gain: Spike probability per time step of a feature of intensity 1 (0 < gain ≤ 1 keeps
            the rate proportional to the intensity).
    """

    gain: float = 1.0

    def __post_init__(self) -> None:
        if not (self.gain > 0):
            raise ConfigError(
                f"RateEncoding(gain={self.gain}): expected gain > 0 (spike probability per step "
                "of a feature of intensity 1). Fix: e.g. RateEncoding(gain=1.0)."
            )


@dataclass(frozen=True, kw_only=True)
class LatencyEncoding:
    """Time-to-first-spike code: each feature spikes once, brighter features earlier.

    A feature of intensity ``x`` (in [0, 1]) spikes once, at step
    ``t = round((1 - x) · (T - 1))`` (``x = 1`` at step 0, ``x → threshold`` near the end);
    features with ``x ≤ threshold`` never spike. Deterministic (the seed is not used).

    Attributes:
        threshold: Intensities at or below it produce no spike.
    """

    threshold: float = 0.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.threshold < 1.0):
            raise ConfigError(
                f"LatencyEncoding(threshold={self.threshold}): expected 0 <= threshold < 1 "
                "(intensities are scaled to [0, 1]). Fix: e.g. LatencyEncoding(threshold=0.1)."
            )


@dataclass(frozen=True, kw_only=True)
class CurrentEncoding:
    """No spike code: the intensity ``x`` in [0, 1] is presented as a real-valued input at every
    time step (``x_t = x``). The first layer's synaptic operations then count as
    multiply-accumulates (MACs) in :mod:`snntorch_async.metrics`."""


def _rate(enc: RateEncoding, x: Tensor, T: int, g: torch.Generator) -> Tensor:
    p = (x * enc.gain).clamp(0.0, 1.0)
    u = torch.rand((x.shape[0], T, *x.shape[1:]), generator=g, dtype=torch.float32)
    return (u < p.unsqueeze(1)).to(torch.uint8)


def _latency(enc: LatencyEncoding, x: Tensor, T: int, g: torch.Generator) -> Tensor:
    t_spike = torch.round((1.0 - x) * (T - 1)).long()
    steps = torch.arange(T).view(1, T, *([1] * (x.dim() - 1)))
    out = (steps == t_spike.unsqueeze(1)) & (x > enc.threshold).unsqueeze(1)
    return out.to(torch.uint8)


def _current(enc: CurrentEncoding, x: Tensor, T: int, g: torch.Generator) -> Tensor:
    return x.unsqueeze(1).expand(x.shape[0], T, *x.shape[1:]).to(torch.float32).contiguous()


#: Encoding settings type -> function ``(settings, x [N, *f] in [0, 1], T, generator) -> [N, T, *f]``.
ENCODERS: dict[type, Callable[..., Tensor]] = {
    RateEncoding: _rate,
    LatencyEncoding: _latency,
    CurrentEncoding: _current,
}

Encoding = RateEncoding | LatencyEncoding | CurrentEncoding


def encode(x: Tensor, *, encoding, num_steps: int, seed: int = 0) -> Tensor:
    """Encode intensities ``x`` ``[N, *features]`` (in [0, 1]) into ``[N, T, *features]``.

    Spike codes return ``torch.uint8`` 0/1 (compact; :class:`SpikeDataset` converts to float);
    :class:`CurrentEncoding` returns float32. The same ``seed`` gives the same spikes.
    """
    fn = ENCODERS.get(type(encoding))
    if fn is None:
        names = ", ".join(t.__name__ for t in ENCODERS)
        raise ConfigError(
            f"encoding must be one of {names} (frozen settings objects); got "
            f"{type(encoding).__name__}. Fix: e.g. encoding=RateEncoding(gain=1.0)."
        )
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ConfigError(
            f"num_steps must be a positive int (time steps per sample); got {num_steps!r}. "
            "Fix: e.g. num_steps=25."
        )
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ConfigError(
            f"encode() expected intensities in [0, 1]; got values in [{float(x.min())}, "
            f"{float(x.max())}]. Fix: scale the data, e.g. x / x.max()."
        )
    g = torch.Generator().manual_seed(int(seed))
    return fn(encoding, x, num_steps, g)
