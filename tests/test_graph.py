"""read_model: the network graph read from a user's snnTorch model (structure, shapes, sharing)."""

from __future__ import annotations

import snntorch as snn
import torch
from torch import nn

import snntorch_async as sa
from snntorch_async.graph import OP_TABLE, register_op
from snntorch_async.neurons import NONE, SUBTRACT, ZERO, LeakyNeuron, SynapticNeuron
from snntorch_async.ops import (
    AvgPoolOp,
    Conv2dOp,
    FlattenOp,
    IdentityOp,
    LinearOp,
    MaxPoolOp,
)
from snntorch_async.reference import run_snntorch


def _conv_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=1, padding=1),  # [4, 8, 8]
        nn.MaxPool2d(2),  # [4, 4, 4]
        snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="zero"),
        nn.Sequential(
            nn.Conv2d(4, 6, 2, stride=2, bias=False),  # [6, 2, 2]
            snn.Synaptic(alpha=0.5, beta=0.8, init_hidden=True),
        ),
        nn.AvgPool2d(2),  # [6, 1, 1]
        nn.Flatten(),  # [6]
        nn.Dropout(0.2),
        nn.Identity(),
        nn.Linear(6, 3),
        snn.Leaky(
            beta=0.7, init_hidden=True, output=True, reset_mechanism="none", reset_delay=False
        ),
    )


def test_conv_net_layers_shapes_ops_and_paths():
    model = _conv_net()
    g = sa.read_model(model, (2, 8, 8))
    assert g.num_layers == 3 and g.input_shape == (2, 8, 8)
    l0, l1, l2 = g.layers
    assert [type(op) for op in l0.ops] == [Conv2dOp, MaxPoolOp]
    assert [type(op) for op in l1.ops] == [Conv2dOp]
    assert [type(op) for op in l2.ops] == [AvgPoolOp, FlattenOp, IdentityOp, IdentityOp, LinearOp]
    assert (l0.in_shape, l0.shape) == ((2, 8, 8), (4, 4, 4))
    assert (l1.in_shape, l1.shape) == ((4, 4, 4), (6, 2, 2))
    assert (l2.in_shape, l2.shape) == ((6, 2, 2), (3,))
    assert l0.op_in_shapes == ((2, 8, 8), (4, 8, 8))
    assert l2.op_in_shapes == ((6, 2, 2), (6, 1, 1), (6,), (6,), (6,))
    # Paths are the dotted names of the user's modules, nested containers included.
    assert [op.path for op in l1.ops] == ["3.0"] and l1.path == "3.1"
    assert [op.path for op in l2.ops] == ["4", "5", "6", "7", "8"] and l2.path == "9"
    assert (l0.numel, l1.numel, l2.numel) == (64, 24, 3)
    assert g.num_neurons == 91 and g.output_size == 3
    # Neuron kernels and their settings.
    assert isinstance(l0.neuron, LeakyNeuron) and isinstance(l1.neuron, SynapticNeuron)
    assert (l0.neuron.reset, l1.neuron.reset, l2.neuron.reset) == (ZERO, SUBTRACT, NONE)
    assert l2.neuron.reset_delay is False and l0.neuron.reset_delay is True
    # Dense synops: conv golden values are in test_simulate; here the Linear (in × out).
    assert l2.dense_synops() == 6 * 3
    summary = g.summary()
    assert "layer 2" in summary and "reset=none" in summary and "[6, 2, 2]" in summary


def test_modules_and_parameters_are_shared_not_copied():
    model = _conv_net()
    g = sa.read_model(model, (2, 8, 8))
    assert g.model is model
    assert g.layers[0].ops[0].module is model[0]
    assert g.layers[1].ops[0].module is model[3][0]
    assert g.layers[2].ops[-1].module.weight is model[8].weight
    assert g.layers[1].neuron.module is model[3][1]
    assert g.parameter() is next(model.parameters())


def test_neuron_params_are_read_at_call_time_and_clamped():
    lin = nn.Linear(4, 3)
    beta = torch.tensor([0.5, 1.5, -0.2])
    neuron = snn.Synaptic(
        alpha=torch.tensor([2.0, 0.3, -1.0]),
        beta=beta,
        learn_beta=True,
        threshold=torch.tensor([1.0, 2.0, 3.0]),
        init_hidden=True,
    )
    g = sa.read_model(nn.Sequential(lin, neuron), (4,))
    p = g.layers[0].neuron.params()
    assert torch.equal(p.beta, torch.tensor([0.5, 1.0, 0.0]))
    assert torch.equal(p.alpha, torch.tensor([1.0, 0.3, 0.0]))
    assert torch.equal(p.threshold, torch.tensor([1.0, 2.0, 3.0]))
    assert p.beta.requires_grad  # learnable beta keeps its graph
    with torch.no_grad():
        neuron.beta[0] = 0.25  # a training update is seen by the next evaluation
    assert float(g.layers[0].neuron.params().beta[0].detach()) == 0.25


def test_per_neuron_parameters_broadcast_per_channel():
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3),
        snn.Leaky(beta=torch.rand(3, 1, 1), threshold=torch.rand(3, 4, 4), init_hidden=True),
    )
    g = sa.read_model(model, (1, 6, 6))
    assert g.layers[0].shape == (3, 4, 4)


def test_single_layer_and_leaky_subtract_defaults():
    model = nn.Sequential(nn.Linear(5, 2), snn.Leaky(beta=0.9, init_hidden=True))
    g = sa.read_model(model, torch.Size([5]))
    (layer,) = g.layers
    assert layer.neuron.reset == SUBTRACT and layer.neuron.reset_delay is True
    assert layer.in_shape == (5,) and layer.shape == (2,)
    assert layer.dense_synops() == 10


def test_register_op_teaches_the_reader_a_new_module_type():
    class Scale(nn.Module):
        def forward(self, x):
            return 2 * x

    model = nn.Sequential(nn.Linear(3, 3), Scale(), snn.Leaky(beta=0.9, init_hidden=True))
    try:
        register_op(Scale, IdentityOp)
        g = sa.read_model(model, (3,))
        assert [type(op) for op in g.layers[0].ops] == [LinearOp, IdentityOp]
        x = torch.ones(2, 1, 3)
        with torch.no_grad():
            assert torch.equal(sa.simulate(model, x).spikes, run_snntorch(model, x))
    finally:
        OP_TABLE.pop(Scale, None)
