"""The one entry point that runs a network: :func:`simulate`, and the drop-in :class:`AsyncNetwork`."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .errors import ConfigError, InputError
from .graph import NetworkGraph, read_model
from .schedulers.base import Record, Scheduler, SimContext
from .schedulers.layersync import LayerSync

__all__ = ["simulate", "SimulationResult", "AsyncNetwork", "get_graph"]


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """What :func:`simulate` returns. Every field is always present (``None`` when not recorded).

    Attributes:
        spikes: Output spike record ``[T, B, C]`` (the last layer, flattened), differentiable;
            ``snntorch.functional`` losses and accuracies take it unchanged.
        layer_spikes: Every layer's spikes ``[T, B, *shape]``, if ``Record(layer_spikes=True)``.
        membranes: Every layer's membrane after each step ``[T, B, *shape]``, if
            ``Record(membranes=True)``.
        spike_counts: Spikes per layer ``[T, B, L]`` (the engine's counter).
        synops: Effective synaptic operations into each layer ``[T, B, L]``.
        dense_synops: Synaptic operations per layer and time step of a dense evaluation, ``(L,)``.
        forward_steps: Forward steps (delivery rounds) per time step and sample ``[T, B]``.
        neurons: Number of neurons per layer ``(L,)``.
        output_lag: Time steps by which the output lags the input under this scheduler.
        scheduler: The scheduler that produced the result.
        spike_forward_steps: Every layer's forward step of each spike ``[T, B, *shape]`` (int64,
            1-based within its time step; 0: did not fire), if ``Record(spike_forward_steps=True)``
            (``None`` otherwise). A spike at forward step ``k`` of step ``t`` came in the share
            ``k / forward_steps[t]`` of that step: the order of spikes within a step. Asynchronous
            schedulers: the forward step that fired it (the input frame is forward step 1 with
            ``prioritize_input``; their torch backend records it, so ``backend`` is ``"torch"``).
            ``LayerSync``: layer ``l`` fires in forward step ``l + 1`` of ``L`` (computed after the
            layers below it). ``Pipelined``: every layer updates at once from what the layer below
            sent one step earlier, so there is no order within a step: every spike is at 1.
        backend: What ran the time steps: ``"torch"``, or ``"native"`` when the asynchronous
            engine's C kernel ran the forward steps (decided once per simulation).
        final_state: The scheduler's state after the last step; pass it as
            ``simulate(..., initial_state=...)`` to continue (truncated BPTT in ``training``).
    """

    spikes: Tensor
    layer_spikes: tuple[Tensor, ...] | None
    membranes: tuple[Tensor, ...] | None
    spike_counts: Tensor
    synops: Tensor
    dense_synops: tuple[int, ...]
    forward_steps: Tensor
    neurons: tuple[int, ...]
    output_lag: int
    scheduler: Scheduler
    spike_forward_steps: tuple[Tensor, ...] | None = None
    backend: str = "torch"
    final_state: Any = None


_GRAPHS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _signature(model: nn.Module) -> tuple:
    return tuple((id(m), m.training) for m in model.modules())


def get_graph(model: nn.Module | NetworkGraph, input_shape: tuple[int, ...]) -> NetworkGraph:
    """The network graph of ``model`` for per-sample input shape ``input_shape`` (cached).

    The cache is keyed by the model object and its module structure, so replacing a module
    re-reads the model. A :class:`NetworkGraph` is returned as is if its input shape matches.
    """
    if isinstance(model, NetworkGraph):
        if tuple(model.input_shape) != tuple(input_shape):
            raise InputError(
                f"The network graph was read for per-sample features of shape "
                f"{list(model.input_shape)}, but the inputs have {list(input_shape)}. Fix: pass "
                "inputs of that shape, or pass the model itself so it is read for this shape."
            )
        return model
    if not isinstance(model, nn.Module):
        return read_model(model, input_shape)  # raises the "expected an nn.Module" error
    sig = _signature(model)
    try:
        per_model = _GRAPHS.setdefault(model, {})
    except TypeError:  # not weak-referenceable
        return read_model(model, input_shape)
    key = tuple(input_shape)
    hit = per_model.get(key)
    if hit is not None and hit[0] == sig:
        return hit[1]
    graph = read_model(model, input_shape)
    per_model[key] = (sig, graph)
    return graph


def _validate_inputs(inputs) -> None:
    if not torch.is_tensor(inputs):
        raise InputError(
            f"simulate() expected inputs as a torch.Tensor of shape [T, B, *features]; got "
            f"{type(inputs).__name__}. Fix: convert with torch.as_tensor(...)."
        )
    if inputs.dim() < 3:
        raise InputError(
            f"simulate() expected time-major inputs of shape [T, B, *features] (at least 3 "
            f"dimensions); got shape {list(inputs.shape)}. Fix: for a single time step use "
            "x.unsqueeze(0); for batch-first data [B, T, ...] use x.transpose(0, 1); for one "
            "sample use x.unsqueeze(1)."
        )
    if not inputs.is_floating_point():
        raise InputError(
            f"simulate() expected floating-point inputs (e.g. torch.float32); got {inputs.dtype}. "
            "Fix: inputs.float()."
        )
    T, B = inputs.shape[:2]
    if T == 0:
        raise InputError(
            f"simulate() got inputs with T = 0 time steps (shape {list(inputs.shape)}); expected "
            "T >= 1. Fix: check the encoder or the dataset's time binning."
        )
    if B == 0:
        raise InputError(
            f"simulate() got an empty batch (B = 0, shape {list(inputs.shape)}); expected B >= 1. "
            "Fix: skip empty batches (e.g. an empty split or a last partial batch of size 0)."
        )


def _mismatch(given: Any, ref: Any, where: str) -> str | None:
    """Where ``given`` differs in structure, type or tensor shape from ``ref`` (None: it fits)."""
    if torch.is_tensor(ref):
        if not torch.is_tensor(given):
            return f"{where}: expected a tensor, got {type(given).__name__}"
        return (
            None
            if given.shape == ref.shape
            else (f"{where}: expected shape {list(ref.shape)}, got {list(given.shape)}")
        )
    if isinstance(ref, (tuple, list)):
        if type(given) is not type(ref) or len(given) != len(ref):
            return (
                f"{where}: expected {type(ref).__name__} of {len(ref)}, got {type(given).__name__}"
            )
        names = getattr(ref, "_fields", None) or [f"[{i}]" for i in range(len(ref))]
        for name, g, r in zip(names, given, ref):
            sep = "" if str(name).startswith("[") else "."
            bad = _mismatch(g, r, f"{where}{sep}{name}")
            if bad:
                return bad
        return None
    return None  # anything else (None, numbers) is taken as is


def _check_initial_state(given: Any, ref: Any, scheduler: Scheduler, batch: int) -> None:
    bad = _mismatch(given, ref, "initial_state")
    if bad:
        raise InputError(
            f"initial_state does not fit this simulation ({bad}); expected the final_state of an "
            f"earlier simulate() of the same model under {type(scheduler).__name__} with batch "
            f"size {batch}. Fix: pass result.final_state from such a run, or None to start from "
            "zero state."
        )


def _check_finite(inputs: Tensor) -> None:
    # Fast path: any NaN/inf makes the sum non-finite (a reduction is ~50x cheaper on CPU than
    # an elementwise isfinite); only then count exactly (the sum may also just have overflowed).
    if bool(torch.isfinite(inputs.detach().sum())):
        return
    bad = int((~torch.isfinite(inputs)).sum())
    if bad:
        raise InputError(
            f"simulate() got {bad} NaN or infinite input values (shape {list(inputs.shape)}); "
            "expected finite values. Fix: clean the data, e.g. torch.nan_to_num(inputs)."
        )


def _check_device(model: nn.Module | NetworkGraph, inputs: Tensor) -> None:
    # Checked before the model is read (reading runs the modules on a probe).
    if isinstance(model, NetworkGraph):
        ref = model.parameter()
    elif isinstance(model, nn.Module):
        ref = next(model.parameters(), None)
        if ref is None:
            ref = next((b for b in model.buffers() if b.is_floating_point()), None)
    else:
        ref = None
    if ref is None:
        return
    if ref.device != inputs.device:
        raise InputError(
            f"The inputs are on {inputs.device} but the model's parameters are on {ref.device}. "
            f"Fix: inputs.to('{ref.device}') or model.to('{inputs.device}')."
        )
    if ref.dtype != inputs.dtype:
        raise InputError(
            f"The inputs have dtype {inputs.dtype} but the model's parameters have {ref.dtype}. "
            f"Fix: inputs.to({ref.dtype}) or model.to({inputs.dtype})."
        )


def simulate(
    model: nn.Module | NetworkGraph,
    inputs: Tensor,
    *,
    scheduler: Scheduler = LayerSync(),
    record: Record = Record(),
    initial_state: Any = None,
) -> SimulationResult:
    """Run a spiking network over time-major inputs under a scheduler.

    Args:
        model: The user's snnTorch model (an ``nn.Sequential`` of ``nn.Linear``/``nn.Conv2d``/
            ``nn.Flatten``/pooling and ``snn.Leaky``/``snn.Synaptic``) or a graph read from it.
        inputs: ``[T, B, *features]`` floating-point tensor on the model's device.
        scheduler: How each time step executes (``LayerSync()``, the asynchronous schedulers,
            ``Pipelined()``).
        record: Optional recordings (membranes, every layer's spikes, the forward step of each
            spike).
        initial_state: Continue from ``final_state`` of an earlier result (same model, batch
            size and scheduler) instead of the zero state, with its autograd history cut
            (``Scheduler.carry``: truncated BPTT); step indices restart at 0.

    Returns:
        A :class:`SimulationResult`; ``.spikes`` is the output spike record ``[T, B, C]``.

    Every call starts from zero state unless ``initial_state`` is given (snnTorch's hidden
    state is neither read nor changed).
    """
    if not isinstance(scheduler, Scheduler):
        raise InputError(
            f"scheduler must be a snntorch_async scheduler such as LayerSync(); got "
            f"{type(scheduler).__name__}. Fix: pass e.g. scheduler=snntorch_async.LayerSync()."
        )
    if not isinstance(record, Record):
        raise InputError(
            f"record must be a snntorch_async.Record; got {type(record).__name__}. Fix: pass "
            "e.g. record=snntorch_async.Record(membranes=True, layer_spikes=True)."
        )
    _validate_inputs(inputs)
    _check_device(model, inputs)
    _check_finite(inputs)
    graph = get_graph(model, tuple(inputs.shape[2:]))
    scheduler.check(graph)
    T, B = inputs.shape[:2]
    ctx = SimContext(
        graph=graph,
        params=tuple(layer.neuron.params() for layer in graph.layers),
        record=record,
        batch=B,
        steps=T,
        device=inputs.device,
        dtype=inputs.dtype,
    )
    if initial_state is None:
        state = scheduler.init(ctx, inputs)
    else:
        _check_initial_state(initial_state, scheduler.init(ctx, inputs), scheduler, B)
        state = scheduler.carry(ctx, initial_state, inputs)
    outs = []
    for t in range(T):
        state, out = scheduler.step(ctx, state, inputs[t], t)
        outs.append(out)
    L = graph.num_layers
    spikes = torch.stack([o.spikes[-1].flatten(1) for o in outs])
    layer_spikes = (
        tuple(torch.stack([o.spikes[i] for o in outs]) for i in range(L))
        if record.layer_spikes
        else None
    )
    membranes = (
        tuple(torch.stack([o.membranes[i] for o in outs]) for i in range(L))
        if record.membranes
        else None
    )
    fire_steps = None
    if record.spike_forward_steps:
        if any(o.spike_forward_steps is None for o in outs):
            raise ConfigError(
                f"{type(scheduler).__name__} does not record the forward step of each spike "
                "(its StepOutput.spike_forward_steps is None) but Record(spike_forward_steps=True) "
                "asked for it. Fix: record it in the scheduler's step, or leave the option off."
            )
        fire_steps = tuple(torch.stack([o.spike_forward_steps[i] for o in outs]) for i in range(L))
    return SimulationResult(
        spikes=spikes,
        layer_spikes=layer_spikes,
        membranes=membranes,
        spike_forward_steps=fire_steps,
        spike_counts=torch.stack([o.spike_counts for o in outs]),
        synops=torch.stack([o.synops for o in outs]),
        dense_synops=tuple(layer.dense_synops() for layer in graph.layers),
        forward_steps=torch.stack([o.forward_steps for o in outs]),
        neurons=tuple(layer.numel for layer in graph.layers),
        output_lag=scheduler.output_lag(graph),
        scheduler=scheduler,
        backend=scheduler.backend(state),
        final_state=state,
    )


class AsyncNetwork(nn.Module):
    """A drop-in replacement for the user's model in a training loop.

    ``AsyncNetwork(model, scheduler=RandomAsync(...))(x)`` returns the output spikes
    ``[T, B, C]`` of ``simulate(model, x, scheduler=...)``. The user's model is a submodule, so
    ``parameters()`` are the model's own (shared, not copied) and gradients reach them.

    Args:
        model: The user's snnTorch ``nn.Sequential``.
        scheduler: The execution mode (default ``LayerSync()``).
    """

    def __init__(self, model: nn.Module, *, scheduler: Scheduler = LayerSync()) -> None:
        super().__init__()
        self.model = model
        self.scheduler = scheduler

    def forward(self, inputs: Tensor) -> Tensor:
        """``inputs`` ``[T, B, *features]`` → output spikes ``[T, B, C]``."""
        return simulate(self.model, inputs, scheduler=self.scheduler).spikes

    def run(self, inputs: Tensor, *, record: Record = Record()) -> SimulationResult:
        """The full :class:`SimulationResult` (counters, recordings) under this scheduler."""
        return simulate(self.model, inputs, scheduler=self.scheduler, record=record)

    def extra_repr(self) -> str:
        return f"scheduler={self.scheduler!r}"
