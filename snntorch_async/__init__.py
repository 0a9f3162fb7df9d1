"""snntorch-async: run and train snnTorch models without layer synchronization.

Quick start::

    import snntorch_async as sa
    result = sa.simulate(model, inputs)                                   # LayerSync = snnTorch
    result = sa.simulate(model, inputs, scheduler=sa.RandomAsync(forward_group_size=8))
    net = sa.AsyncNetwork(model, scheduler=sa.MomentumAsync(forward_group_size=8))  # nn.Module
"""

import sys
import types
from importlib import import_module


#: Public name -> the submodule defining it. Imported on first use (PEP 562), so that importing
#: the package (e.g. for ``snntorch-async --help``) does not import torch.
_EXPORTS = {
    "CheckpointError": "checkpoint",
    "load_checkpoint": "checkpoint",
    "CurrentEncoding": "data",
    "LatencyEncoding": "data",
    "RateEncoding": "data",
    "load_digits_spikes": "data",
    "make_loader": "data",
    "DelayedLinear": "delays",
    "ConfigError": "errors",
    "InputError": "errors",
    "ModelStructureError": "errors",
    "SnnTorchAsyncError": "errors",
    "UnsupportedModuleError": "errors",
    "WriteError": "errors",
    "BiasTiming": "bias_timing",
    "RecurrentTiming": "recurrent",
    "Layer": "graph",
    "NetworkGraph": "graph",
    "read_model": "graph",
    "Metrics": "metrics",
    "evaluate": "metrics",
    "sample_metrics": "metrics",
    "AsyncScheduler": "schedulers",
    "GradientRule": "engine.gradients",
    "EventGradients": "engine.gradients",
    "LayerCarriers": "engine.gradients",
    "QueuedCarriers": "engine.gradients",
    "LayerOrderedAsync": "schedulers",
    "LayerSync": "schedulers",
    "MomentumAsync": "schedulers",
    "Pipelined": "schedulers",
    "RandomAsync": "schedulers",
    "Record": "schedulers",
    "Scheduler": "schedulers",
    "AsyncNetwork": "simulate",
    "SimulationResult": "simulate",
    "simulate": "simulate",
    "History": "training",
    "TrainConfig": "training",
    "TrainingError": "training",
    "TrainingInterrupted": "training",
    "fit": "training",
    "train_step": "training",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("snntorch-async")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0.0.0+unknown"


def __getattr__(name: str):
    if name == "__version__":  # read from the installed metadata on first use (it takes ~50 ms)
        globals()["__version__"] = _version()
        return globals()["__version__"]
    if name == "native":  # the native kernel's switch: snntorch_async.native.use_native(...)
        value = globals()["native"] = import_module(".engine.native", __name__)
        return value
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'snntorch_async' has no attribute {name!r}")
    import_module(".delays", __name__)  # registers DelayedLinear with the model reader
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """This package's module type, for one name: ``simulate`` is both a submodule and the public
    function. The import system binds a submodule onto its package when it is first imported
    (by whichever module imports it first), which would hide the function; a data descriptor
    keeps ``snntorch_async.simulate`` the function, as an eager ``from .simulate import
    simulate`` did."""

    @property
    def simulate(self):
        import_module(".delays", __name__)
        return import_module(".simulate", __name__).simulate

    @simulate.setter
    def simulate(self, value) -> None:  # the import system binding the submodule: kept aside
        pass


sys.modules[__name__].__class__ = _Package


__all__ = [
    # running
    "simulate",
    "AsyncNetwork",
    "SimulationResult",
    "Record",
    "read_model",
    "NetworkGraph",
    "Layer",
    "BiasTiming",
    "RecurrentTiming",
    "DelayedLinear",
    # schedulers
    "Scheduler",
    "LayerSync",
    "Pipelined",
    "AsyncScheduler",
    "RandomAsync",
    "MomentumAsync",
    "LayerOrderedAsync",
    "GradientRule",
    "EventGradients",
    "LayerCarriers",
    "QueuedCarriers",
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
    "WriteError",
    "__version__",
]
