"""Execution schedulers: one frozen dataclass per execution mode."""

from .base import Record, Scheduler, SimContext, StepOutput
from .layersync import LayerSync

__all__ = ["Record", "Scheduler", "SimContext", "StepOutput", "LayerSync"]
