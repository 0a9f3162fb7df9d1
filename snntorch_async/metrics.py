"""Metrics from the engine's own counters, in NeuroBench's definitions.

Everything here is computed from a :class:`~snntorch_async.simulate.SimulationResult` (spike
counts ``[T, B, L]``, synaptic operations ``[T, B, L]``, forward steps ``[T, B]``, the output
spikes ``[T, B, C]``), per sample, and averaged by :class:`Metrics`:

* **accuracy**: the predicted class is the arg-max of the output spike counts; ties (including
  "no output spike at all") go to the lowest class index, as ``torch.argmax`` and NeuroBench's
  ``choose_max_count`` do. The fraction of tied samples is reported as ``tie_fraction``.
* **spike density** = spikes / (neurons × T) over all spiking layers (output layer included);
  **activation sparsity** = 1 − density (NeuroBench ``ActivationSparsity``: zero activations over
  all activations of every spiking layer).
* **synaptic operations** (NeuroBench ``SynapticOperations``): effective ops = for every delivered
  spike, its number of non-zero outgoing synapses; counted as accumulates (ACs) when the layer's
  inputs are binary (every value in {−1, 0, 1}) and as multiply-accumulates (MACs) otherwise.
  Hidden layers receive spikes, so only the first layer can count MACs: the network input
  decides (per batch). The dense count is ``T × Σ_layers dense_synops`` (every synapse, every
  step). Biases are not synaptic operations.
* **latency to decision**: the prediction after time step ``t`` is the arg-max of the output
  counts accumulated up to ``t``. The decision step is the first step, at or after the first
  output spike, from which that prediction no longer changes; reported as a number of time
  steps (1-based: a decision in the first step has latency 1) and as the number of forward steps
  (delivery rounds) the engine spent up to and including that step. The same two numbers are
  reported for the first output spike. Samples whose output never spikes have ``nan`` latency.
  The forward-step latency has time-step resolution (the engine counts forward steps per time
  step), so it is an upper bound on the forward step inside that time step.
* **output lag** (``Pipelined``): the output record lags the input by ``output_lag`` steps; the
  one helper :func:`aligned_output` drops those leading steps, so latencies are measured from the
  input that caused the spikes and are comparable across schedulers.

``evaluate(model, data, scheduler=...)`` runs a DataLoader and returns :class:`Metrics`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Iterable, NamedTuple

import torch
from torch import Tensor, nn

from .data.loading import unpack_batch
from .errors import InputError
from .schedulers.base import Scheduler
from .schedulers.layersync import LayerSync
from .simulate import SimulationResult, simulate

__all__ = [
    "SampleMetrics",
    "Metrics",
    "aligned_output",
    "drop_lag",
    "predict",
    "is_binary",
    "spike_density",
    "sample_metrics",
    "evaluate",
]

log = logging.getLogger(__name__)


class SampleMetrics(NamedTuple):
    """Per-sample metrics of one batch; every field is a tensor ``[B]`` (float64 or int64).

    Attributes:
        prediction: Predicted class (arg-max of output counts, ties → lowest index).
        target: True class (``-1`` when no targets were given).
        correct: 1.0 if ``prediction == target`` (``nan`` without targets).
        tie: 1.0 if the maximal output count is shared by several classes (or is 0).
        spikes: Total spikes of all layers.
        layer_spikes: Spikes per layer ``[B, L]`` (the one field that is not ``[B]``).
        density: ``spikes / (neurons × T)``.
        synops_ac: Effective synaptic operations counted as accumulates.
        synops_mac: Effective synaptic operations counted as multiply-accumulates.
        dense_synops: Synaptic operations of a dense evaluation (``T × Σ dense_synops``).
        forward_steps: Forward steps used over the whole sample.
        decision_step: Latency to decision in time steps (``nan`` if the output never spiked).
        decision_forward_steps: Forward steps up to and including the decision step.
        first_spike_step: Time steps until the first output spike (``nan`` if none).
        first_spike_forward_steps: Forward steps up to and including that step.
    """

    prediction: Tensor
    target: Tensor
    correct: Tensor
    tie: Tensor
    spikes: Tensor
    layer_spikes: Tensor
    density: Tensor
    synops_ac: Tensor
    synops_mac: Tensor
    dense_synops: Tensor
    forward_steps: Tensor
    decision_step: Tensor
    decision_forward_steps: Tensor
    first_spike_step: Tensor
    first_spike_forward_steps: Tensor


# -------------------------------------------------------------------------------------------
# Small helpers.
# -------------------------------------------------------------------------------------------
def drop_lag(record, lag: int):
    """The output-lag alignment, the one definition: ``aligned[t] = record[t + lag]``.

    Args:
        record: A record on a lagging scheduler's time axis ``[S, ...]`` (tensor or numpy array).
        lag: The output lag (``SimulationResult.output_lag``, ``NetworkSpec.output_lag()``).

    Returns:
        ``record[lag:]`` ``[S - lag, ...]``: step ``t`` answers input step ``t``.

    Raises:
        InputError: ``lag`` is not in ``0..S``.
    """
    lag = int(lag)
    if lag < 0 or lag > record.shape[0]:
        raise InputError(
            f"The output lag must be in 0..{record.shape[0]} (the record's steps); got {lag}. Fix: "
            "pass the scheduler's output_lag and a record at least that long."
        )
    return record[lag:]


def aligned_output(result: SimulationResult) -> tuple[Tensor, Tensor]:
    """The output record aligned with the input (with :func:`drop_lag`).

    Returns:
        ``(spikes [T - lag, B, C], cum_forward_steps [T - lag, B])``: the output spikes caused by
        input steps ``0 .. T-lag-1`` and, for each of them, the forward steps the engine had
        spent by the end of the time step in which those spikes appeared (a lagging scheduler
        spends the first ``lag`` steps filling its pipeline; they are counted).
    """
    lag = int(result.output_lag)
    T = result.spikes.shape[0]
    if lag >= T:
        raise InputError(
            f"The output lags the input by {lag} time steps under {result.scheduler!r} but the "
            f"simulation has only T = {T} steps, so no output is aligned with any input. Fix: "
            f"simulate at least {lag + 1} steps (pad the inputs with {lag} zero steps)."
        )
    cum = result.forward_steps.detach().to(torch.float64).cumsum(0)
    return drop_lag(result.spikes.detach(), lag), drop_lag(cum, lag)


def predict(spikes: Tensor) -> Tensor:
    """Predicted class per sample: arg-max of output counts ``spikes [T, B, C]`` → ``[B]``.

    Ties (and samples with no output spike) go to the lowest class index.
    """
    return spikes.detach().sum(0).argmax(-1)


def is_binary(inputs: Tensor) -> bool:
    """``True`` if every input value is in {-1, 0, 1} (NeuroBench's test for spiking inputs)."""
    x = inputs.detach()
    return bool(((x == 0) | (x == 1) | (x == -1)).all())


def spike_density(result: SimulationResult) -> Tensor:
    """Spikes / (neurons × T) per sample, over all layers ``[B]`` (float64)."""
    T = result.spike_counts.shape[0]
    spikes = result.spike_counts.detach().to(torch.float64).sum((0, 2))
    return spikes / (sum(result.neurons) * T)


def _first_index(mask: Tensor) -> Tensor:
    """For a monotone (False…False True…True) mask ``[T, B]``: index of the first True (T if none)."""
    return (~mask).sum(0)


def _latencies(spikes: Tensor, cum_fw: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    T = spikes.shape[0]
    counts = spikes.to(torch.float64).cumsum(0)  # [T, B, C]
    preds = counts.argmax(-1)  # [T, B]
    final = preds[-1]
    first = _first_index(counts.sum(-1) > 0)  # [B], T when no spike
    steps = torch.arange(1, T + 1, device=spikes.device).unsqueeze(1)  # [T, 1]
    last_change = ((preds != final) * steps).amax(0)  # first index from which preds == final
    decision = torch.maximum(last_change, first)
    none = first >= T

    def at(idx: Tensor) -> tuple[Tensor, Tensor]:
        safe = idx.clamp(max=T - 1)
        fw = cum_fw.gather(0, safe.unsqueeze(0))[0]
        step = (safe + 1).to(torch.float64)
        nan = torch.full_like(step, math.nan)
        return torch.where(none, nan, step), torch.where(none, nan, fw)

    d_step, d_fw = at(decision)
    f_step, f_fw = at(first)
    return d_step, d_fw, f_step, f_fw


def sample_metrics(
    result: SimulationResult, targets: Tensor | None = None, *, binary_inputs: bool = True
) -> SampleMetrics:
    """Per-sample metrics of one simulated batch.

    Args:
        result: What :func:`~snntorch_async.simulate` returned for the batch.
        targets: Class labels ``[B]`` (optional; accuracy is ``nan`` without them).
        binary_inputs: Whether the network input was binary (see :func:`is_binary`); decides
            whether the first layer's synaptic operations are ACs or MACs.

    Returns:
        :class:`SampleMetrics` with tensors ``[B]`` on the CPU.
    """
    spikes, cum_fw = aligned_output(result)
    B = spikes.shape[1]
    if targets is not None and tuple(targets.shape) != (B,):
        raise InputError(
            f"targets must be class indices of shape [B] = [{B}]; got shape "
            f"{list(targets.shape)}. Fix: pass integer labels, one per sample (not one-hot)."
        )
    pred = predict(spikes)
    total = spikes.sum(0)
    top = total.max(-1).values
    tie = ((total == top.unsqueeze(-1)).sum(-1) > 1).to(torch.float64)
    if targets is not None:
        target = targets.detach().long().to(pred.device)
        correct = (pred == target).to(torch.float64)
    else:
        target = torch.full_like(pred, -1)
        correct = torch.full((B,), math.nan, dtype=torch.float64, device=pred.device)
    T = result.spike_counts.shape[0]
    syn = result.synops.detach().to(torch.float64).sum(0)  # [B, L]
    first_layer, rest = syn[:, 0], syn[:, 1:].sum(1)
    ac = first_layer + rest if binary_inputs else rest
    mac = torch.zeros_like(first_layer) if binary_inputs else first_layer
    dense = torch.full((B,), float(T * sum(result.dense_synops)), dtype=torch.float64)
    d_step, d_fw, f_step, f_fw = _latencies(spikes, cum_fw)
    fields = SampleMetrics(
        prediction=pred,
        target=target,
        correct=correct,
        tie=tie,
        spikes=result.spike_counts.detach().to(torch.float64).sum((0, 2)),
        layer_spikes=result.spike_counts.detach().to(torch.float64).sum(0),
        density=spike_density(result),
        synops_ac=ac,
        synops_mac=mac,
        dense_synops=dense,
        forward_steps=result.forward_steps.detach().to(torch.float64).sum(0),
        decision_step=d_step,
        decision_forward_steps=d_fw,
        first_spike_step=f_step,
        first_spike_forward_steps=f_fw,
    )
    return SampleMetrics(*(f.cpu() for f in fields))


# -------------------------------------------------------------------------------------------
# Aggregation.
# -------------------------------------------------------------------------------------------
def _mean(x: Tensor) -> float:
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else math.nan


def _std(x: Tensor) -> float:
    x = x[~torch.isnan(x)]
    return float(x.std(unbiased=False)) if x.numel() else math.nan


@dataclass(frozen=True, eq=False)
class Metrics:
    """Metrics over a data set: per-sample values and their averages.

    Attributes:
        samples: :class:`SampleMetrics` with tensors ``[N]`` (every sample evaluated).
        neurons: Neurons per layer.
        num_steps: Time steps T per sample.
        output_lag: Output lag of the scheduler (already removed from the latencies).
        scheduler: Repr of the scheduler that ran.
    """

    samples: SampleMetrics
    neurons: tuple[int, ...]
    num_steps: int
    output_lag: int
    scheduler: str

    @classmethod
    def from_batches(
        cls, batches: Iterable[SampleMetrics], *, neurons, num_steps, output_lag, scheduler
    ) -> "Metrics":
        batches = list(batches)
        if not batches:
            raise InputError("No batches were evaluated; expected a non-empty data set.")
        cat = SampleMetrics(*(torch.cat(parts) for parts in zip(*batches)))
        return cls(cat, tuple(neurons), int(num_steps), int(output_lag), str(scheduler))

    @property
    def num_samples(self) -> int:
        return int(self.samples.prediction.shape[0])

    @property
    def accuracy(self) -> float:
        return _mean(self.samples.correct)

    @property
    def spike_density(self) -> float:
        return _mean(self.samples.density)

    @property
    def activation_sparsity(self) -> float:
        return 1.0 - self.spike_density

    @property
    def spikes_per_layer(self) -> tuple[float, ...]:
        """Mean spikes per sample in each layer."""
        return tuple(float(v) for v in self.samples.layer_spikes.mean(0))

    def summary(self) -> dict[str, float]:
        """Averages per sample (``nan``-latencies of undecided samples are left out).

        Keys: ``accuracy``, ``spike_density``, ``activation_sparsity``, ``spikes``,
        ``synops_ac``, ``synops_mac``, ``synops_effective``, ``synops_dense``,
        ``forward_steps``, ``decision_step`` (+ ``_std``), ``decision_forward_steps``,
        ``first_spike_step``, ``first_spike_forward_steps``, ``decided_fraction``,
        ``tie_fraction``, ``samples``.
        """
        s = self.samples
        return {
            "accuracy": self.accuracy,
            "spike_density": self.spike_density,
            "activation_sparsity": self.activation_sparsity,
            "spikes": _mean(s.spikes),
            "synops_ac": _mean(s.synops_ac),
            "synops_mac": _mean(s.synops_mac),
            "synops_effective": _mean(s.synops_ac + s.synops_mac),
            "synops_dense": _mean(s.dense_synops),
            "forward_steps": _mean(s.forward_steps),
            "decision_step": _mean(s.decision_step),
            "decision_step_std": _std(s.decision_step),
            "decision_forward_steps": _mean(s.decision_forward_steps),
            "first_spike_step": _mean(s.first_spike_step),
            "first_spike_forward_steps": _mean(s.first_spike_forward_steps),
            "decided_fraction": float((~torch.isnan(s.decision_step)).to(torch.float64).mean()),
            "tie_fraction": _mean(s.tie),
            "samples": float(self.num_samples),
        }

    def table(self) -> str:
        """The summary as a two-column text table."""
        rows = self.summary()
        width = max(len(k) for k in rows)
        lines = [f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 12}"]
        for k, v in rows.items():
            lines.append(f"{k:<{width}}  {v:.6g}")
        return "\n".join(lines)


def evaluate(
    model: nn.Module,
    data: Iterable,
    *,
    scheduler: Scheduler = LayerSync(),
    max_batches: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> Metrics:
    """Run ``model`` over ``data`` under ``scheduler`` (no gradients) and collect metrics.

    Args:
        model: The user's snnTorch ``nn.Sequential`` (evaluated in ``eval()`` mode; its
            training flag is restored afterwards).
        data: Iterable of ``(inputs [T, B, *features], targets [B])`` (e.g. from
            :func:`snntorch_async.data.make_loader`).
        scheduler: Execution mode (``LayerSync()``, an asynchronous scheduler, ``Pipelined()``).
        max_batches: Stop after this many batches (quick looks).
        device: Move each batch there (default: the model's device).
        progress: Show a tqdm progress bar (on stderr).

    Returns:
        :class:`Metrics` over all evaluated samples.

    Raises:
        InputError: ``data`` is not an iterable of batches, holds no batch, or a batch is not
            ``(inputs [T, B, *features], targets [B])``.
    """
    from tqdm.auto import tqdm

    if not isinstance(model, nn.Module):
        raise InputError(
            f"evaluate() takes the model first; got {type(model).__name__}. Fix: "
            "evaluate(model, data, scheduler=...)."
        )
    if torch.is_tensor(data) or not isinstance(data, Iterable):
        raise InputError(
            f"evaluate() expects data as an iterable of batches (inputs [T, B, *features], "
            f"targets [B]); got {type(data).__name__}. Fix: pass a DataLoader from "
            "snntorch_async.data.make_loader, or a list such as [(inputs, targets)]."
        )
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    batches, info = [], None
    try:
        with torch.no_grad():
            total = len(data) if hasattr(data, "__len__") else None
            if max_batches is not None:
                total = max_batches if total is None else min(total, max_batches)
            for i, batch in enumerate(tqdm(data, total=total, disable=not progress, desc="eval")):
                if max_batches is not None and i >= max_batches:
                    break
                x, y = unpack_batch(batch, targets=False)
                x = x.to(device)
                res = simulate(model, x, scheduler=scheduler)
                batches.append(sample_metrics(res, y, binary_inputs=is_binary(x)))
                info = (res.neurons, x.shape[0], res.output_lag)
    finally:
        model.train(was_training)
    if info is None:
        raise InputError("evaluate() got no batches; expected a non-empty data set.")
    m = Metrics.from_batches(
        batches, neurons=info[0], num_steps=info[1], output_lag=info[2], scheduler=repr(scheduler)
    )
    log.info("evaluate(%s): %s", scheduler, {k: round(v, 4) for k, v in m.summary().items()})
    return m
