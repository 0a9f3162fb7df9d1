"""Execution schedulers: one frozen keyword-only dataclass per execution mode."""

from .asynchronous import AsyncScheduler, LayerOrderedAsync, MomentumAsync, RandomAsync
from .base import Record, Scheduler, SimContext, StepOutput
from .layersync import LayerSync
from .pipelined import Pipelined

__all__ = [
    "Record",
    "Scheduler",
    "SimContext",
    "StepOutput",
    "LayerSync",
    "Pipelined",
    "AsyncScheduler",
    "RandomAsync",
    "MomentumAsync",
    "LayerOrderedAsync",
]
