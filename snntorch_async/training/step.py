"""One optimisation step through a scheduler (:func:`train_step`) and the checks run before and
after the first one."""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import Tensor, nn

from ..data.loading import unpack_batch
from ..errors import InputError
from ..metrics import is_binary, sample_metrics
from ..schedulers import AsyncScheduler
from ..schedulers.base import Scheduler
from ..simulate import get_graph
from .config import StepStats, TrainingError
from .distributed import simulator

__all__ = ["train_step"]


def _batch(batch, device) -> tuple[Tensor, Tensor]:
    x, y = unpack_batch(batch, targets=True)
    return x.to(device), y.to(device)


def _check_targets(y: Tensor, num_classes: int) -> None:
    """Refuse targets that are not class indices ``0 .. num_classes - 1``."""
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise InputError(
            f"The targets must be integer class indices [B]; got dtype {y.dtype} (values "
            f"{y[:4].tolist()}...). Fix: pass labels as torch.long, e.g. targets.long(), not "
            "one-hot or probabilities."
        )
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise InputError(
            f"The targets must lie in 0 .. {num_classes - 1} (the model has {num_classes} output "
            f"neurons); got values from {lo} to {hi}. Fix: relabel the classes, or give the "
            "output layer one neuron per class."
        )


def train_step(
    model: nn.Module,
    batch,
    *,
    scheduler: Scheduler,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    grad_clip: float | None = None,
    truncate_steps: int | None = None,
) -> StepStats:
    """One optimisation step: simulate under ``scheduler``, back-propagate, update.

    Args:
        model: The user's snnTorch ``nn.Sequential``, or its data-parallel wrapper from
            :func:`snntorch_async.training.distributed.wrap`.
        batch: ``(inputs [T, B, *features], targets [B])``.
        scheduler: Execution mode to train through.
        optimizer: Optimizer over ``model.parameters()``.
        loss_fn: ``(spk_rec [T, B, C], targets) -> scalar``.
        grad_clip: Max gradient norm, or ``None``.
        truncate_steps: Back-propagate in chunks of this many time steps (see
            :class:`TrainConfig`); the loss reported is ``Σ_chunks (len_c / T) · loss(chunk)``,
            which equals the full loss for losses that average over time (``ce_rate_loss``).

    Returns:
        :class:`StepStats` of the batch (loss, correct predictions, spike density).
    """
    p = next(model.parameters(), None)
    x, y = _batch(batch, p.device if p is not None else "cpu")
    T = x.shape[0]
    k = T if truncate_steps is None else int(truncate_steps)
    run = simulator(model)
    optimizer.zero_grad(set_to_none=True)
    state, results, total = None, [], 0.0
    for s in range(0, T, k):
        res = run(x[s : s + k], scheduler=scheduler, initial_state=state)
        if s == 0:
            _check_targets(y, res.spikes.shape[-1])
        loss = loss_fn(res.spikes, y)
        if not torch.is_tensor(loss) or loss.numel() != 1:
            raise TrainingError(f"The loss must return a scalar tensor; got {loss!r}.")
        if (
            not loss.requires_grad
            and isinstance(scheduler, AsyncScheduler)
            and not bool(res.spikes.detach().any())
        ):
            raise TrainingError(_silent_network(scheduler))
        if not loss.requires_grad:
            raise TrainingError(
                "The loss does not depend on any parameter (no gradient): the output spikes carry "
                "no autograd graph. Usually a neuron has surrogate_disable=True or a spike_grad "
                "without a gradient. Fix: give every neuron a surrogate, e.g. "
                "spike_grad=snntorch.surrogate.fast_sigmoid()."
            )
        w = res.spikes.shape[0] / T
        (loss * w if w != 1 else loss).backward()
        total += float(loss.detach()) * w
        state = res.final_state if s + k < T else None  # simulate detaches it (Scheduler.carry)
        results.append(dataclasses.replace(res, spikes=res.spikes.detach(), final_state=None))
    if (  # (the native training path records a graph even then: its gradient is all zeros)
        isinstance(scheduler, AsyncScheduler)
        and not any(bool(r.spikes.any()) for r in results)
        and all(q.grad is None or not bool(q.grad.any()) for q in model.parameters())
    ):
        optimizer.zero_grad(set_to_none=True)
        raise TrainingError(_silent_network(scheduler))
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    res = (
        results[0]
        if len(results) == 1
        else dataclasses.replace(
            results[0],
            **{
                f: torch.cat([getattr(r, f) for r in results])
                for f in ("spikes", "spike_counts", "synops", "forward_steps")
            },
        )
    )
    m = sample_metrics(res, y, binary_inputs=is_binary(x))
    return StepStats(total, int(m.correct.sum()), int(y.shape[0]), float(m.density.mean()))


# --------------------------------------------------------------------------------------------
# Checks.
# --------------------------------------------------------------------------------------------
def _silent_network(scheduler) -> str:
    return (
        f"No spike reached the output layer in this batch under {type(scheduler).__name__}"
        ", so the loss has no gradient: asynchronous gradients travel only along "
        "delivered events (and the zeros queued behind them), and a network that stays "
        "silent on the data delivers none. Fix: lower the thresholds or scale up the "
        "initial weights so that every layer fires on the data, or train first with "
        "LayerSync (or gradient_rule=sa.LayerCarriers(), which evaluates every layer)."
    )


def _check_surrogates(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Raise if a neuron's ``spike_grad`` passes no gradient (checked before training)."""
    bad = []
    for layer in get_graph(model, input_shape).layers:
        probe = torch.linspace(-1.0, 1.0, 41, requires_grad=True)
        with torch.enable_grad():
            out = layer.neuron.spike_fn(probe)
            g = None
            if torch.is_tensor(out) and out.requires_grad:
                (g,) = torch.autograd.grad(out.sum(), probe, allow_unused=True)
        if g is None or not bool((g != 0).any()) or not bool(torch.isfinite(g).all()):
            m = layer.neuron.module
            how = (
                "surrogate_disable=True"
                if getattr(m, "surrogate_disable", False)
                else (
                    f"spike_grad={getattr(m.spike_grad, '__name__', type(m.spike_grad).__name__)}"
                )
            )
            bad.append(f"'{layer.path}' ({type(m).__name__}, {how})")
    if bad:
        raise TrainingError(
            f"The firing function of neuron(s) {', '.join(bad)} passes no (finite, non-zero) "
            "gradient near the threshold, so backpropagation cannot train the weights before "
            "them. Fix: construct them with a surrogate gradient, e.g. "
            "snn.Leaky(..., spike_grad=snntorch.surrogate.fast_sigmoid()) and "
            "surrogate_disable=False."
        )


def _check_gradients(model: nn.Module) -> None:
    """After the first backward pass: raise if no parameter received a non-zero gradient."""
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    if not any(g is not None and bool((g != 0).any()) for g in grads):
        raise TrainingError(
            f"After the first backward pass all {len(grads)} trainable parameters have a zero or "
            "missing gradient, so training cannot progress. Likely causes: a surrogate that is "
            "zero away from the threshold with a silent network, or a loss that ignores the "
            "output spikes. Fix: use a surrogate with wide support (snntorch.surrogate."
            "fast_sigmoid()), lower the thresholds or scale the inputs up."
        )
