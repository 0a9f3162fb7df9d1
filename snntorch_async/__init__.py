"""snntorch-async: run and train snnTorch models without layer synchronization.

Quick start::

    import snntorch_async as sa
    result = sa.simulate(model, inputs)                       # LayerSync, equals snnTorch
    net = sa.AsyncNetwork(model, scheduler=sa.LayerSync())    # drop-in nn.Module
"""

from importlib.metadata import PackageNotFoundError, version

from .errors import (
    ConfigError,
    InputError,
    ModelStructureError,
    SnnTorchAsyncError,
    UnsupportedModuleError,
)
from .graph import Layer, NetworkGraph, read_model
from .schedulers import LayerSync, Record, Scheduler
from .simulate import AsyncNetwork, SimulationResult, simulate
from . import delays  # registers DelayedLinear with the model reader
from .delays import DelayedLinear
from .schedulers.pipelined import Pipelined

try:
    __version__ = version("snntorch-async")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = [
    "AsyncNetwork",
    "DelayedLinear",
    "Pipelined",
    "ConfigError",
    "InputError",
    "Layer",
    "LayerSync",
    "ModelStructureError",
    "NetworkGraph",
    "Record",
    "Scheduler",
    "SimulationResult",
    "SnnTorchAsyncError",
    "UnsupportedModuleError",
    "read_model",
    "simulate",
    "__version__",
]
