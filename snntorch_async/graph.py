"""Read a user's snnTorch model into a plain network graph.

The reader walks an ``nn.Sequential`` (nested ones too) and groups its modules into *layers*: a
chain of synapse/shape ops (at least one weighted op, ``nn.Linear`` or ``nn.Conv2d``) followed by
one spiking neuron module. Modules are looked up in dispatch tables by exact type; anything else
raises :class:`~snntorch_async.errors.UnsupportedModuleError` naming the module's path, its type,
the supported types and what to do.

Only the modules' parameters and settings are read, never snnTorch's hidden state, and the graph
holds references to the user's modules (parameters are shared, not copied).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import snntorch as snn
import torch
from torch import nn

from .errors import InputError, ModelStructureError, UnsupportedModuleError
from .neurons import LeakyNeuron, Neuron, SynapticNeuron, exact_on_lava
from .recurrent import RLeakyNeuron, RSynapticNeuron, is_recurrent
from .ops import AvgPoolOp, Conv2dOp, FlattenOp, IdentityOp, LinearOp, MaxPoolOp, Op

__all__ = ["Layer", "NetworkGraph", "read_model", "register_op", "OP_TABLE", "NEURON_TABLE"]


def _check_flatten(m: nn.Flatten, path: str) -> None:
    if m.start_dim != 1 or m.end_dim != -1:
        raise UnsupportedModuleError(
            f"nn.Flatten at '{path}' has start_dim={m.start_dim}, end_dim={m.end_dim}; expected "
            "start_dim=1, end_dim=-1 (flatten every feature dimension, keep the batch). "
            "Fix: use nn.Flatten() with its defaults."
        )


def _check_conv(m: nn.Conv2d, path: str) -> None:
    if m.groups != 1:
        raise UnsupportedModuleError(
            f"nn.Conv2d at '{path}' has groups={m.groups}; only groups=1 is supported. "
            "Fix: use a dense convolution (groups=1)."
        )


def _check_neuron(m: nn.Module, path: str) -> None:
    problems = []
    if getattr(m, "inhibition", False):
        problems.append("inhibition=True")
    if getattr(m, "state_quant", False):
        problems.append("state_quant is set")
    gsf = getattr(m, "graded_spikes_factor", None)
    if gsf is not None and (gsf.numel() != 1 or float(gsf) != 1.0 or gsf.requires_grad):
        problems.append("graded_spikes_factor != 1")
    if problems:
        raise UnsupportedModuleError(
            f"{type(m).__name__} at '{path}' uses {', '.join(problems)}, which snntorch-async does "
            "not simulate. Fix: construct the neuron without these options."
        )


#: Synapse/shape modules: exact type -> (optional validator, op factory).
OP_TABLE: dict[type, tuple[Callable | None, Callable[[nn.Module, str], Op]]] = {
    nn.Linear: (None, LinearOp),
    nn.Conv2d: (_check_conv, Conv2dOp),
    nn.Flatten: (_check_flatten, FlattenOp),
    nn.AvgPool2d: (None, AvgPoolOp),
    nn.MaxPool2d: (None, MaxPoolOp),
    nn.Dropout: (None, IdentityOp),
    nn.Identity: (None, IdentityOp),
}

#: Neuron modules: exact type -> neuron kernel class.
NEURON_TABLE: dict[type, type[Neuron]] = {
    snn.Leaky: LeakyNeuron,
    snn.Synaptic: SynapticNeuron,
    snn.RLeaky: RLeakyNeuron,
    snn.RSynaptic: RSynapticNeuron,
}


def register_op(module_type: type, factory: Callable[[nn.Module, str], Op], validator=None) -> None:
    """Teach the reader a new synapse module type (used by ``snntorch_async.delays``)."""
    OP_TABLE[module_type] = (validator, factory)


def _supported_names() -> str:
    names = [
        f"nn.{t.__name__}" if t.__module__.startswith("torch") else t.__name__ for t in OP_TABLE
    ]
    names += [f"snn.{t.__name__}" for t in NEURON_TABLE]
    return ", ".join(names) + " inside nn.Sequential"


@dataclass(frozen=True, eq=False)
class Layer:
    """One spiking layer: synapse ops from the previous layer's spikes, then neurons.

    Attributes:
        index: Position of the layer (0 = first hidden layer).
        ops: Synapse/shape ops applied to the source spikes, in order.
        neuron: The neuron kernel (wraps the user's snnTorch module).
        in_shape: Per-sample shape of the source (input or previous layer).
        shape: Per-sample shape of this layer's neurons.
        op_in_shapes: Per-sample input shape of each op.
    """

    index: int
    ops: tuple[Op, ...]
    neuron: Neuron
    in_shape: tuple[int, ...]
    shape: tuple[int, ...]
    op_in_shapes: tuple[tuple[int, ...], ...] = ()

    @property
    def path(self) -> str:
        return self.neuron.path

    @property
    def numel(self) -> int:
        return self.neuron.numel

    @property
    def has_bias(self) -> bool:
        """Whether a weighted op of the layer adds a bias current."""
        return any(op.weighted and op.module.bias is not None for op in self.ops)

    def dense_synops(self) -> int:
        """Synaptic operations of one dense (every synapse) evaluation of this layer per sample
        (a recurrent layer's recurrence included)."""
        ff = sum(
            op.dense_synops(shape) for op, shape in zip(self.ops, self.op_in_shapes) if op.weighted
        )
        return ff + (self.neuron.recurrent_dense_synops() if is_recurrent(self) else 0)

    def forward_current(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the ops exactly as the user's model does (bias included)."""
        for op in self.ops:
            x = op.forward(x)
        return x

    @property
    def lone_linear(self) -> LinearOp | None:
        """The layer's ``nn.Linear`` op (or ``DelayedLinear``'s) if the other ops are only
        Flatten, Identity or eval-mode Dropout; else ``None``."""
        found = None
        for op in self.ops:
            if isinstance(op, LinearOp) and found is None:
                found = op
            elif isinstance(op, FlattenOp) or (
                isinstance(op, IdentityOp) and not op.module.training
            ):
                continue
            else:
                return None
        return found

    @property
    def exact_on_lava(self) -> bool:
        """Whether Lava's LIF reproduces this layer's reset rule exactly (zero reset with
        ``reset_delay=False``; see :func:`snntorch_async.neurons.exact_on_lava`)."""
        return exact_on_lava(self.neuron.reset_name, self.neuron.reset_delay)

    def bias_current(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor | None:
        """The layer's constant current per time step, ``[1, *shape]``: its ops applied to an
        all-zero input with their biases, weights cast to ``dtype`` (default: the weights' own;
        differentiable); ``None`` when no weighted op has a bias."""
        if not self.has_bias:
            return None
        ref = next(op.module.weight for op in self.ops if op.weighted)
        dtype = ref.dtype if dtype is None else dtype
        x = torch.zeros(
            (1, *self.in_shape), device=ref.device if device is None else device, dtype=dtype
        )
        for op in self.ops:
            if op.weighted:
                x = op.apply(x, op.module.weight.to(device=x.device, dtype=dtype))
                b = op.bias_current(())
                if b is not None:
                    x = x + b.to(device=x.device, dtype=dtype)
            else:
                x = op.forward(x)  # shape ops as the model calls them
        return x

    def dense_matrix(
        self, dtype: torch.dtype = torch.float64, chunk: int | None = None
    ) -> torch.Tensor:
        """The layer's bias-free ops as one dense matrix ``[numel, prod(in_shape)]`` on the CPU
        (synaptic delays not included): a lone ``nn.Linear``'s weight, else the ops applied to
        the unit inputs, ``chunk`` of them at a time (default: all at once)."""
        core = [op for op in self.ops if not isinstance(op, (IdentityOp, FlattenOp))]
        if len(core) == 1 and isinstance(core[0], LinearOp):  # Flatten is C-order: same columns
            return core[0].module.weight.detach().to("cpu", dtype)
        ops = [op for op in self.ops if not isinstance(op, IdentityOp)]
        in_size = 1
        for s in self.in_shape:
            in_size *= int(s)
        chunk = in_size if chunk is None else max(1, min(in_size, chunk))
        cols = []
        with torch.no_grad():
            for start in range(0, in_size, chunk):
                n = min(chunk, in_size - start)
                x = torch.zeros((n, in_size), dtype=dtype)
                x[torch.arange(n), torch.arange(start, start + n)] = 1.0
                x = x.reshape(n, *self.in_shape)
                for op in ops:
                    x = op.apply(
                        x, op.module.weight.detach().to("cpu", dtype) if op.weighted else None
                    )
                cols.append(x.reshape(n, -1))
        return torch.cat(cols, 0).T.contiguous()


@dataclass(frozen=True, eq=False)
class NetworkGraph:
    """A feed-forward spiking network read from a user's model.

    Attributes:
        layers: The spiking layers, input side first.
        input_shape: Per-sample feature shape the graph was read for.
        model: The user's model (its modules are shared with the layers).
    """

    layers: tuple[Layer, ...]
    input_shape: tuple[int, ...]
    model: nn.Module

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def output_size(self) -> int:
        return self.layers[-1].numel

    @property
    def num_neurons(self) -> int:
        return sum(layer.numel for layer in self.layers)

    def parameter(self) -> torch.Tensor | None:
        """Any parameter or buffer of the model (for device and dtype checks)."""
        for t in self.model.parameters():
            return t
        for t in self.model.buffers():
            if t.is_floating_point():
                return t
        return None

    def summary(self) -> str:
        """A one-line-per-layer description of the graph."""
        lines = [f"input {list(self.input_shape)}"]
        for layer in self.layers:
            ops = " -> ".join(type(op.module).__name__ for op in layer.ops)
            n = layer.neuron
            lines.append(
                f"layer {layer.index}: {ops} -> {type(n.module).__name__}('{n.path}', "
                f"reset={n.reset_name}, reset_delay={n.reset_delay}) {list(layer.shape)}"
            )
        return "\n".join(lines)


def _walk(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if type(child) is nn.Sequential:
            yield from _walk(child, path)
        else:
            yield path, child


def _root_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if type(model) is nn.Sequential:
        return list(_walk(model, ""))
    if type(model) in OP_TABLE or type(model) in NEURON_TABLE:
        return [("", model)]
    children = ", ".join(f"'{n}' ({type(c).__name__})" for n, c in model.named_children())
    raise UnsupportedModuleError(
        f"The model is a {type(model).__name__} with its own forward(); expected an nn.Sequential "
        f"of {_supported_names()}. Its children: {children or 'none'}. Fix: pass the "
        "nn.Sequential that holds the layers (e.g. model.net), or rebuild the model as an "
        "nn.Sequential with init_hidden=True neurons."
    )


def broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether a tensor of ``shape`` broadcasts to exactly ``target`` (without importing sympy,
    which ``torch.broadcast_shapes`` does on first use)."""
    if len(shape) > len(target):
        return all(s == 1 for s in shape[: len(shape) - len(target)]) and broadcasts_to(
            shape[len(shape) - len(target) :], target
        )
    return all(s in (1, t) for s, t in zip(shape[::-1], target[::-1]))


def _param_shape_check(neuron: Neuron, shape: tuple[int, ...]) -> None:
    m = neuron.module
    for name in ("beta", "threshold", "alpha"):
        value = getattr(m, name, None)
        if value is None or not torch.is_tensor(value):
            continue
        if not broadcasts_to(tuple(value.shape), shape):
            raise ModelStructureError(
                f"{type(m).__name__} at '{neuron.path}' has {name} of shape {list(value.shape)}, "
                f"but its layer has neurons of shape {list(shape)}; expected a scalar or a tensor "
                f"broadcastable to {list(shape)}. Fix: give {name} one value per neuron of this "
                "layer (or a single value)."
            )


def read_model(model: nn.Module, input_shape: tuple[int, ...] | torch.Size) -> NetworkGraph:
    """Read ``model`` into a :class:`NetworkGraph` for inputs of per-sample shape ``input_shape``.

    Args:
        model: An ``nn.Sequential`` of supported synapse modules and snnTorch neurons.
        input_shape: Feature shape of one sample at one time step (inputs are ``[T, B, *shape]``).

    Raises:
        UnsupportedModuleError: A module type is not supported.
        ModelStructureError: The modules are in an order that cannot be read, or a neuron's
            parameters do not match its layer.
        InputError: The input shape does not fit the first layers.
    """
    if not isinstance(model, nn.Module):
        raise UnsupportedModuleError(
            f"Expected a torch.nn.Module (an nn.Sequential of layers and snnTorch neurons); got "
            f"{type(model).__name__}. Fix: pass the nn.Sequential model itself (not a function, "
            "a state_dict or a list of layers)."
        )
    entries = _root_modules(model)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32

    layers: list[Layer] = []
    pending_ops: list[Op] = []
    op_shapes: list[tuple[int, ...]] = []
    shape = tuple(int(s) for s in input_shape)
    layer_in_shape = shape
    probe = torch.zeros((1, *shape), device=device, dtype=dtype)
    for path, m in entries:
        # a module wrapped by torch.nn.utils.parametrize (e.g. lava_bridge.qat) keeps its role
        t = torch.nn.utils.parametrize.type_before_parametrizations(m)
        if t in OP_TABLE:
            validator, factory = OP_TABLE[t]
            if validator is not None:
                validator(m, path)
            op = factory(m, path)
            op_shapes.append(tuple(probe.shape[1:]))
            try:
                # fork_rng: probing must not draw from the user's RNG (nn.Dropout in training
                # mode would, making results depend on graph-cache hits; exact resume needs this)
                rng_devices = [device] if device.type == "cuda" else []
                with torch.no_grad(), torch.random.fork_rng(devices=rng_devices):
                    probe = op.forward(probe)
            except RuntimeError as e:
                raise InputError(
                    f"Module '{path}' ({t.__name__}) cannot take per-sample features of shape "
                    f"{list(probe.shape[1:])} (from inputs of feature shape {list(input_shape)}): "
                    f"{str(e).splitlines()[0]}. Fix: check the input's feature shape "
                    "[T, B, *features] against the model's first layers."
                ) from None
            pending_ops.append(op)
        elif t in NEURON_TABLE:
            _check_neuron(m, path)
            if not any(op.weighted for op in pending_ops):
                where = (
                    "at the start of the model"
                    if not layers
                    else (f"right after the neuron '{layers[-1].path}'")
                )
                raise ModelStructureError(
                    f"Neuron '{path}' ({t.__name__}) comes {where} with no nn.Linear or nn.Conv2d "
                    "before it; every spiking layer must receive its input through weights "
                    "(the asynchronous schedulers and Lava deliver spikes through synapses). "
                    "Fix: put a weighted layer before each neuron module."
                )
            nshape = tuple(probe.shape[1:])
            neuron = NEURON_TABLE[t](m, path, nshape)
            _param_shape_check(neuron, nshape)
            layers.append(
                Layer(
                    len(layers),
                    tuple(pending_ops),
                    neuron,
                    layer_in_shape,
                    nshape,
                    tuple(op_shapes),
                )
            )
            pending_ops, op_shapes = [], []
            layer_in_shape = nshape
        else:
            raise UnsupportedModuleError(
                f"Module '{path}' of type {t.__module__}.{t.__qualname__} is not supported. "
                f"Supported: {_supported_names()}. Fix: replace it with supported modules, or "
                "open an issue if snntorch-async should learn it."
            )
    if not layers:
        raise ModelStructureError(
            "The model has no spiking neurons (snn.Leaky or snn.Synaptic); expected at least one "
            "weighted layer followed by a neuron module. Fix: add e.g. "
            "snn.Leaky(beta=0.9, init_hidden=True) after each nn.Linear."
        )
    if pending_ops:
        tail = ", ".join(f"'{op.path}' ({type(op.module).__name__})" for op in pending_ops)
        raise ModelStructureError(
            f"The model ends with {tail} after its last neuron '{layers[-1].path}'; the output "
            "must be a spiking layer so that the result is a spike record [T, B, C]. Fix: end the "
            "model with a neuron (e.g. snn.Leaky(..., init_hidden=True, output=True)) or remove "
            "the trailing modules."
        )
    return NetworkGraph(layers=tuple(layers), input_shape=tuple(input_shape), model=model)
