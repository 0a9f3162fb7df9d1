"""Execution schedulers: one frozen dataclass per execution mode."""

from .base import Record, Scheduler, SimContext, StepOutput
from .layersync import LayerSync

__all__ = ["Record", "Scheduler", "SimContext", "StepOutput", "LayerSync"]
from .pipelined import Pipelined  # noqa: E402  (Lava/Loihi timing; lava_bridge part A)

__all__ += ["Pipelined"]
