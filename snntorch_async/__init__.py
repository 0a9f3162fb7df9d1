"""snntorch-async: run and train snnTorch models without layer synchronization.

Quick start::

    import snntorch_async as sa
    result = sa.simulate(model, inputs)                                   # LayerSync = snnTorch
    result = sa.simulate(model, inputs, scheduler=sa.RandomAsync(forward_group_size=8))
    net = sa.AsyncNetwork(model, scheduler=sa.MomentumAsync(forward_group_size=8))  # nn.Module
"""

from importlib.metadata import PackageNotFoundError, version

from . import delays  # registers DelayedLinear with the model reader
from .engine import native  # the native kernel's switch: snntorch_async.native.use_native(...)
from .checkpoint import CheckpointError, load_checkpoint
from .data import CurrentEncoding, LatencyEncoding, RateEncoding, load_digits_spikes, make_loader
from .delays import DelayedLinear
from .errors import (
    ConfigError,
    InputError,
    ModelStructureError,
    SnnTorchAsyncError,
    UnsupportedModuleError,
)
from .graph import Layer, NetworkGraph, read_model
from .metrics import Metrics, evaluate, sample_metrics
from .schedulers import (
    AsyncScheduler,
    LayerOrderedAsync,
    LayerSync,
    MomentumAsync,
    Pipelined,
    RandomAsync,
    Record,
    Scheduler,
)
from .simulate import AsyncNetwork, SimulationResult, simulate
from .training import History, TrainConfig, TrainingError, TrainingInterrupted, fit, train_step

try:
    __version__ = version("snntorch-async")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = [
    # running
    "simulate",
    "AsyncNetwork",
    "SimulationResult",
    "Record",
    "read_model",
    "NetworkGraph",
    "Layer",
    "DelayedLinear",
    # schedulers
    "Scheduler",
    "LayerSync",
    "Pipelined",
    "AsyncScheduler",
    "RandomAsync",
    "MomentumAsync",
    "LayerOrderedAsync",
    # training and metrics
    "fit",
    "train_step",
    "TrainConfig",
    "History",
    "TrainingInterrupted",
    "TrainingError",
    "load_checkpoint",
    "CheckpointError",
    "evaluate",
    "sample_metrics",
    "Metrics",
    # data
    "load_digits_spikes",
    "make_loader",
    "RateEncoding",
    "LatencyEncoding",
    "CurrentEncoding",
    # errors
    "SnnTorchAsyncError",
    "ConfigError",
    "InputError",
    "ModelStructureError",
    "UnsupportedModuleError",
    "__version__",
]
