"""Training through any scheduler: :func:`train_step` and :func:`fit`.

``fit(model, data, scheduler=LayerSync(), config=TrainConfig(...))`` trains the user's snnTorch
model with backpropagation through the chosen scheduler's dynamics: ``LayerSync()`` gives the
paper's layer-synchronously trained baseline, an asynchronous scheduler gives unlayered backprop
(gradients flow through every forward step, with the surrogate of each neuron's own
``spike_grad``). Switching between the two is the ``scheduler`` argument only.

Checkpoints (``TrainConfig.checkpoint_path``) are written atomically (temporary file, then
``os.replace``) and hold only tensors and primitive containers, so they load with
``torch.load(..., weights_only=True)``. They contain the model and optimizer state, every random
number generator (torch CPU/CUDA, Python ``random``, NumPy), the position (epoch, batch), the
history and a fingerprint of the architecture. The data order of epoch ``e`` is a function of
``(seed, e)`` (see :func:`_set_epoch`), so ``fit(..., resume=True)`` continues with exactly the
losses an uninterrupted run would have had.

Ctrl-C during ``fit`` finishes the current step, saves a checkpoint (when a path is configured)
and raises :class:`TrainingInterrupted` (a ``KeyboardInterrupt`` carrying the history); a second
Ctrl-C interrupts at once.

The loop lives in parts: :mod:`.config` (settings and records), :mod:`.step` (one optimisation
step), :mod:`.checkpointing` (loop position, checkpointer), :mod:`.fit` (the epochs) and
:mod:`.distributed` (data-parallel training under ``torchrun``).
"""

from ..checkpoint import CheckpointError, load_checkpoint
from .checkpointing import Checkpointer, LoopPosition
from .config import Distributed, History, StepStats, TrainConfig, TrainingError, TrainingInterrupted
from .fit import fit
from .step import train_step

__all__ = [
    "TrainConfig",
    "Distributed",
    "StepStats",
    "History",
    "train_step",
    "fit",
    "TrainingError",
    "CheckpointError",
    "TrainingInterrupted",
    "load_checkpoint",
    "LoopPosition",
    "Checkpointer",
]
