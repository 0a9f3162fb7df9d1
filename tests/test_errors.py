"""Bad input: every error says what was expected, what was received, where, and the fix."""

from __future__ import annotations

import warnings

import pytest
import snntorch as snn
import torch
from torch import nn

import snntorch_async as sa
from snntorch_async import (
    InputError,
    ModelStructureError,
    SnnTorchAsyncError,
    UnsupportedModuleError,
)


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True))


def _leaky(**kw) -> snn.Leaky:
    return snn.Leaky(beta=kw.pop("beta", 0.9), init_hidden=True, **kw)


X = torch.rand(5, 2, 4)
IMG = torch.rand(2, 1, 2, 5, 5)


class Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.lif = _leaky()

    def forward(self, x):
        return self.lif(self.fc(x))


def _inhibited() -> snn.Leaky:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Inhibition is an unstable feature")
        return snn.Leaky(beta=0.9, inhibition=True, init_hidden=True)


class Scale(nn.Module):
    def forward(self, x):
        return 2 * x


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "inputs,match",
    [
        (
            torch.rand(2, 4),
            r"expected time-major inputs of shape \[T, B, \*features\].*got shape "
            r"\[2, 4\]. Fix: .*unsqueeze",
        ),
        (torch.rand(4), r"at least 3 dimensions\); got shape \[4\]"),
        (
            torch.ones(5, 2, 4, dtype=torch.long),
            r"expected floating-point inputs.*got torch.int64. "
            r"Fix: inputs.float\(\)",
        ),
        (torch.ones(5, 2, 4, dtype=torch.bool), r"floating-point inputs.*got torch.bool"),
        (torch.rand(0, 2, 4), r"T = 0 time steps \(shape \[0, 2, 4\]\); expected T >= 1. Fix:"),
        (torch.rand(5, 0, 4), r"empty batch \(B = 0, shape \[5, 0, 4\]\); expected B >= 1. Fix:"),
        (X.numpy(), r"expected inputs as a torch.Tensor.*got ndarray. Fix: .*torch.as_tensor"),
    ],
)
def test_malformed_inputs(inputs, match):
    with pytest.raises(InputError, match=match):
        sa.simulate(_net(), inputs)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_inputs(bad):
    x = X.clone()
    x[1, 0, 2] = bad
    x[3, 1, 0] = bad
    with pytest.raises(
        InputError,
        match=r"got 2 NaN or infinite input values \(shape \[5, 2, 4\]"
        r"\); expected finite values. Fix: .*nan_to_num",
    ):
        sa.simulate(_net(), x)


def test_wrong_feature_shape_names_the_module():
    with pytest.raises(
        InputError,
        match=r"Module '0' \(Linear\) cannot take per-sample features "
        r"of shape \[6\] .*Fix: check the input's feature shape",
    ):
        sa.simulate(_net(), torch.rand(5, 2, 6))
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), _leaky())
    with pytest.raises(
        InputError,
        match=r"Module '0' \(Conv2d\) cannot take per-sample features "
        r"of shape \[2, 5, 5\]",
    ):
        sa.simulate(conv, IMG)


def test_inputs_on_another_device_than_the_model():
    with pytest.raises(
        InputError,
        match=r"The inputs are on meta but the model's parameters are "
        r"on cpu. Fix: inputs.to\('cpu'\)",
    ):
        sa.simulate(_net(), torch.rand(5, 2, 4, device="meta"))
    with pytest.raises(
        InputError,
        match=r"The inputs are on cpu but the model's parameters are "
        r"on meta. Fix: .*model.to\('cpu'\)",
    ):
        sa.simulate(_net().to("meta"), X)


@pytest.mark.cuda
def test_inputs_on_cpu_with_a_cuda_model():
    with pytest.raises(
        InputError,
        match=r"inputs are on cpu but the model's parameters are on "
        r"cuda:0",
    ):
        sa.simulate(_net().cuda(), X)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_dtype_mismatch(dtype):
    with pytest.raises(
        InputError,
        match=rf"inputs have dtype {dtype} but the model's parameters "
        rf"have torch.float32. Fix: inputs.to\(torch.float32\)",
    ):
        sa.simulate(_net(), X.to(dtype))


def test_bad_scheduler_and_record_arguments():
    with pytest.raises(
        InputError,
        match=r"scheduler must be a snntorch_async scheduler.*got str. "
        r"Fix: pass e.g. scheduler=snntorch_async.LayerSync",
    ):
        sa.simulate(_net(), X, scheduler="layersync")
    with pytest.raises(InputError, match=r"record must be a snntorch_async.Record; got bool. Fix"):
        sa.simulate(_net(), X, record=True)


def test_graph_read_for_another_input_shape():
    graph = sa.read_model(_net(), (4,))
    with pytest.raises(
        InputError,
        match=r"graph was read for per-sample features of shape \[4\], "
        r"but the inputs have \[5\]. Fix",
    ):
        sa.simulate(graph, torch.rand(3, 2, 5))


# --------------------------------------------------------------------------------------------
# Model structure
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model,match",
    [
        (
            nn.Sequential(nn.Linear(4, 3)),
            r"The model has no spiking neurons \(snn.Leaky or snn.Synaptic\); expected at least one "
            r"weighted layer followed by a neuron module. Fix: add",
        ),
        (
            nn.Sequential(_leaky(), nn.Linear(4, 3), _leaky()),
            r"Neuron '0' \(Leaky\) comes at the start of the model with no nn.Linear or nn.Conv2d "
            r"before it.*Fix: put a weighted layer before each neuron",
        ),
        (
            nn.Sequential(nn.Linear(4, 3), _leaky(), _leaky()),
            r"Neuron '2' \(Leaky\) comes right after the neuron '1' with no nn.Linear or nn.Conv2d",
        ),
        (
            nn.Sequential(nn.Linear(4, 3), _leaky(), nn.Sequential(nn.Flatten(), _leaky())),
            r"Neuron '2.1' \(Leaky\) comes right after the neuron '1'",
        ),
        (
            nn.Sequential(nn.Linear(4, 3), _leaky(), nn.Linear(3, 2)),
            r"The model ends with '2' \(Linear\) after its last neuron '1'; the output must be a spiking "
            r"layer.*Fix: end the model with a neuron",
        ),
        (
            nn.Sequential(nn.Linear(4, 3), _leaky(beta=torch.rand(5))),
            r"Leaky at '1' has beta of shape \[5\], but its layer has neurons of shape \[3\]; expected a "
            r"scalar or a tensor broadcastable to \[3\]. Fix: give beta one value per neuron",
        ),
        (
            nn.Sequential(nn.Linear(4, 3), _leaky(threshold=torch.rand(2))),
            r"Leaky at '1' has threshold of shape \[2\], but its layer has neurons of shape \[3\]",
        ),
        (
            nn.Sequential(
                nn.Linear(4, 3), snn.Synaptic(alpha=torch.rand(4), beta=0.5, init_hidden=True)
            ),
            r"Synaptic at '1' has alpha of shape \[4\], but its layer has neurons of shape \[3\]",
        ),
    ],
    ids=[
        "no-neuron",
        "neuron-first",
        "two-neurons",
        "two-neurons-nested",
        "trailing-linear",
        "beta-size",
        "threshold-size",
        "alpha-size",
    ],
)
def test_model_structure_errors(model, match):
    with pytest.raises(ModelStructureError, match=match):
        sa.simulate(model, X)


def test_per_channel_threshold_of_the_wrong_size_in_a_conv_layer():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), _leaky(threshold=torch.rand(3, 1, 1)))
    with pytest.raises(
        ModelStructureError,
        match=r"threshold of shape \[3, 1, 1\], but its layer "
        r"has neurons of shape \[4, 3, 3\]",
    ):
        sa.simulate(model, IMG)


_SUPPORTED = (
    r"Supported: nn.Linear, nn.Conv2d, .*snn.Leaky, snn.Synaptic, snn.RLeaky, snn.RSynaptic "
    r"inside nn.Sequential. "
    r"Fix:"
)


@pytest.mark.parametrize(
    "model,inputs,match",
    [
        (
            nn.Sequential(
                nn.Linear(4, 12),
                nn.Unflatten(1, (3, 2, 2)),
                snn.RLeaky(beta=0.9, conv2d_channels=3, kernel_size=1, init_hidden=True),
            ),
            X,
            r"Module '1' of type torch.nn.modules.flatten.Unflatten is not supported. "
            + _SUPPORTED,
        ),
        (
            nn.Sequential(nn.LSTM(4, 3)),
            X,
            r"Module '0' of type torch.nn.modules.rnn.LSTM is not supported. " + _SUPPORTED,
        ),
        (
            nn.Sequential(nn.Linear(4, 3), Scale(), _leaky()),
            X,
            r"Module '1' of type test_errors.Scale is not supported. " + _SUPPORTED,
        ),
        (
            nn.Sequential(nn.Linear(4, 3), nn.Sequential(nn.ReLU()), _leaky()),
            X,
            r"Module '1.0' of type torch.nn.modules.activation.ReLU is not supported",
        ),
        (
            Custom(),
            X,
            r"The model is a Custom with its own forward\(\); expected an nn.Sequential of nn.Linear, .*"
            r"Its children: 'fc' \(Linear\), 'lif' \(Leaky\). Fix: pass the nn.Sequential",
        ),
        (
            nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), _leaky()),
            IMG,
            r"nn.Conv2d at '0' has groups=2; only groups=1 is supported. Fix: use a dense convolution",
        ),
        (
            nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(start_dim=2), nn.Linear(9, 3), _leaky()),
            IMG,
            r"nn.Flatten at '1' has start_dim=2, end_dim=-1; expected start_dim=1, end_dim=-1.*Fix: use "
            r"nn.Flatten\(\) with its defaults",
        ),
        (
            nn.Sequential(nn.Linear(4, 3), _inhibited()),
            X,
            r"Leaky at '1' uses inhibition=True, which snntorch-async does not simulate. Fix",
        ),
        (
            lambda x: x,
            X,
            r"Expected a torch.nn.Module .*got function. Fix: pass the nn.Sequential model itself",
        ),
    ],
    ids=[
        "unflatten-RLeaky",
        "LSTM",
        "custom-child",
        "nested-ReLU",
        "custom-root",
        "conv-groups",
        "flatten-start-dim",
        "inhibition",
        "not-a-module",
    ],
)
def test_unsupported_modules(model, inputs, match):
    with pytest.raises(UnsupportedModuleError, match=match):
        sa.simulate(model, inputs)


def test_errors_are_catchable_as_builtin_and_package_exceptions():
    with pytest.raises(ValueError):
        sa.simulate(_net(), torch.rand(0, 2, 4))
    with pytest.raises(TypeError):
        sa.simulate(nn.Sequential(nn.LSTM(4, 3)), X)
    with pytest.raises(SnnTorchAsyncError):
        sa.read_model(nn.Sequential(nn.Linear(4, 3)), (4,))


def test_async_network_raises_the_same_errors():
    net = sa.AsyncNetwork(_net())
    with pytest.raises(InputError, match=r"T = 0 time steps"):
        net(torch.rand(0, 2, 4))
    with pytest.raises(UnsupportedModuleError, match=r"LSTM is not supported"):
        sa.AsyncNetwork(nn.Sequential(nn.LSTM(4, 3)))(X)
