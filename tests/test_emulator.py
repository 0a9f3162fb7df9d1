"""The fixed-point emulator without Lava: hand-worked golden values, timing, batching, devices,
errors. Bit-exactness against Lava itself is in ``test_lava_fixed.py``."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import DEVICES
from fixed_specs import random_conv_spec, random_fixed_spec, random_spikes

from lava_bridge.emulator import (
    LIFState,
    _prepare,
    emulate,
    lif_fixed_step,
    loihi_weights,
    shift_floor,
)
from lava_bridge.spec import LayerSpec, NetworkSpec, NeuronSpec


def _one_layer(w, *, e=0, du=4095, dv=0, vth=10, delay=None, bias=None, bias_exp=0, nwb=8):
    w = np.atleast_2d(np.asarray(w))
    n = w.shape[0]
    return LayerSpec(
        name="l",
        weight=w,
        neuron=NeuronSpec(du=np.full(n, du), dv=np.full(n, dv), vth=np.full(n, vth)),
        shape=(n,),
        delay=None if delay is None else np.atleast_2d(delay),
        bias=bias,
        weight_exp=e,
        bias_exp=bias_exp,
        num_weight_bits=nwb,
    )


def _spec(*layers, n_in=None):
    n_in = n_in or layers[0].in_size
    return NetworkSpec(layers=tuple(layers), input_shape=(n_in,), fixed_point=True)


# -- golden values worked out by hand ----------------------------------------------------------


def test_loihi_weights_sign_modes_by_hand():
    # mixed: clip to [-256, 255], drop 1 LSB with floor: 3 -> 2, -3 -> -4, 300 -> 255 -> 254
    assert loihi_weights(np.array([[3, -3, 300, -300, 7]])).tolist() == [[2, -4, 254, -256, 6]]
    # excitatory: clip to [0, 255], nothing dropped at 8 bits
    assert loihi_weights(np.array([[3, 0, 300]])).tolist() == [[3, 0, 255]]
    # inhibitory: mirrored: [-255, 0]
    assert loihi_weights(np.array([[-3, 0, -300]])).tolist() == [[-3, 0, -255]]
    # 6 bits, excitatory: drop 2 LSBs: 7 -> 4; inhibitory mirrored: -7 -> -4
    assert loihi_weights(np.array([[7, 9]]), 6).tolist() == [[4, 8]]
    assert loihi_weights(np.array([[-7, -9]]), 6).tolist() == [[-4, -8]]


def test_shift_floor_by_hand():
    x = torch.tensor([-5, -4, 5, 7])
    assert shift_floor(x, -1).tolist() == [-3, -2, 2, 3]  # floor(x / 2)
    assert shift_floor(x, 2).tolist() == [-20, -16, 20, 28]
    assert shift_floor(x, torch.tensor([-1, 0, 1, -2])).tolist() == [-3, -4, 10, 1]


def test_lif_step_by_hand():
    i64 = dict(dtype=torch.int64)
    state = LIFState(
        u=torch.tensor([[1000, -1000, 0]], **i64), v=torch.tensor([[5000, -5000, 700]], **i64)
    )
    du, dv, vth = torch.tensor(2047), torch.tensor(1024), torch.tensor(10)
    spk, new = lif_fixed_step(state, torch.tensor([[1, 0, 3]], **i64), du=du, dv=dv, vth=vth)
    # u: 1000·2048 >> 12 = 500, +1<<6 -> 564; -1000 -> -500 (toward zero); 0 + 3<<6 = 192
    assert new.u.tolist() == [[564, -500, 192]]
    # v: 5000·3072 >> 12 = 3750, +564 = 4314 > 640 -> spike, v = 0; -5000 -> -3750 - 500;
    #    700·3072 >> 12 = 525, + 192 = 717 > 640 -> spike
    assert spk.tolist() == [[True, False, True]]
    assert new.v.tolist() == [[0, -4250, 0]]


def test_lif_wraps_u_and_saturates_v_by_hand():
    i64 = dict(dtype=torch.int64)
    state = LIFState(
        u=torch.tensor([[0, 0]], **i64), v=torch.tensor([[8_388_000, -8_388_000]], **i64)
    )
    a = torch.tensor([[2**17 + 1, -(2**17)]], **i64)  # << 6: 2**23 + 64 and -2**23
    spk, new = lif_fixed_step(
        state, a, du=torch.tensor(4095), dv=torch.tensor(0), vth=torch.tensor(131071)
    )
    assert new.u.tolist() == [[2**23 + 64 - 2**24, -(2**23) + 2**24]]  # one wrap each
    # v: 8_388_000 + (64 - 2**23) = 64 + ... ; -8_388_000 + 2**23 = 608
    assert new.v.tolist() == [[8_388_000 + 2**23 + 64 - 2**24, -8_388_000 + 2**23]]
    state = LIFState(
        u=torch.tensor([[0, 0]], **i64), v=torch.tensor([[8_388_000, -8_388_000]], **i64)
    )
    a = torch.tensor([[100, -100]], **i64)
    one = dict(du=torch.tensor(4095), dv=torch.tensor(0))
    spk, new = lif_fixed_step(state, a, vth=torch.tensor(200_000), **one)
    assert new.v.tolist() == [[2**23 - 1, -(2**23) + 1]]  # saturates, does not wrap
    # the largest threshold, 131071 << 6 = 8388544, is below the saturated v: it fires
    spk, new = lif_fixed_step(state, a, vth=torch.tensor(131071), **one)
    assert spk.tolist() == [[True, False]] and new.v.tolist() == [[0, -(2**23) + 1]]


def test_pipeline_timing_by_hand():
    # one input spike at t=0 reaches layer 0 at t=1 and layer 1 at t=2 (one step per hop)
    l0 = _one_layer([[20]], vth=10)
    l1 = _one_layer([[20]], vth=10)
    x = torch.zeros(6, 1, 1)
    x[0] = 1
    r = emulate(_spec(l0, l1), x)
    assert r.layer_spikes[0][:, 0, 0].tolist() == [0, 1, 0, 0, 0, 0]
    assert r.layer_spikes[1][:, 0, 0].tolist() == [0, 0, 1, 0, 0, 0]
    assert r.output_lag == 2


def test_delay_and_bias_timing_by_hand():
    # a spike at t=0 through a synapse of delay 3 arrives 1 + 3 steps later
    x = torch.zeros(7, 1, 1)
    x[0] = 1
    r = emulate(_spec(_one_layer([[20]], vth=10, delay=[[3]])), x)
    assert r.spikes[:, 0, 0].tolist() == [0, 0, 0, 0, 1, 0, 0]
    # the bias of layer l arrives from step l + 1 on (always-on channel of delay l):
    # u = bias << bias_exp << 6 = 3·2·64 = 384 from t = 2 for layer 1
    l0 = _one_layer([[0]], vth=1000)
    l1 = _one_layer([[0]], vth=1000, bias=np.array([3]), bias_exp=1)
    r = emulate(_spec(l0, l1), torch.zeros(5, 1, 1), record_state=True)
    assert r.u[1][:, 0, 0].tolist() == [0, 0, 384, 384, 384]


# -- properties -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_batch_equals_one_sample_at_a_time(seed):
    spec = random_fixed_spec(seed)
    x = torch.tensor(random_spikes(seed, 15, 4, spec.input_size))
    batched = emulate(spec, x, record_state=True)
    for b in range(4):
        single = emulate(spec, x[:, b : b + 1], record_state=True)
        for i in range(spec.num_layers):
            assert torch.equal(batched.layer_spikes[i][:, b], single.layer_spikes[i][:, 0])
            assert torch.equal(batched.v[i][:, b], single.v[i][:, 0])
            assert torch.equal(batched.u[i][:, b], single.u[i][:, 0])


def test_causality_future_inputs_do_not_change_the_past():
    spec = random_fixed_spec(3, delays=True, bias=True)
    x = torch.tensor(random_spikes(3, 12, 2, spec.input_size))
    y = x.clone()
    y[8:] = 1 - y[8:]
    a, b = emulate(spec, x).layer_spikes, emulate(spec, y).layer_spikes
    for i in range(spec.num_layers):
        assert torch.equal(a[i][:9], b[i][:9])  # changes at t=8 reach layer i at t >= 9


@pytest.mark.parametrize("device", DEVICES)
def test_devices_agree(device):
    spec = random_fixed_spec(5, delays=True, bias=True)
    x = torch.tensor(random_spikes(5, 10, 3, spec.input_size))
    ref = emulate(spec, x, record_state=True)
    got = emulate(spec, x.to(device), record_state=True)
    assert got.spikes.device.type == device
    assert torch.equal(got.spikes.cpu(), ref.spikes)
    assert all(torch.equal(a.cpu(), b) for a, b in zip(got.v, ref.v))
    assert got.v[0].dtype == torch.int64


def test_input_dtypes_accepted():
    spec = random_fixed_spec(1)
    x = random_spikes(1, 8, 2, spec.input_size)
    ref = emulate(spec, torch.tensor(x, dtype=torch.float32)).spikes
    for dt in (torch.bool, torch.int64, torch.uint8, torch.float64):
        assert torch.equal(emulate(spec, torch.tensor(x).to(dt)).spikes, ref)


# -- errors -----------------------------------------------------------------------------------


def test_rejects_float_spec():
    fixed = random_fixed_spec(0)
    floats = NetworkSpec(
        layers=tuple(
            LayerSpec(
                name=l.name,
                weight=l.weight.astype(float),
                neuron=NeuronSpec(
                    du=np.ones(l.out_size), dv=np.zeros(l.out_size), vth=np.ones(l.out_size)
                ),
                shape=l.shape,
            )
            for l in fixed.layers
        ),
        input_shape=fixed.input_shape,
    )
    with pytest.raises(ValueError, match="float NetworkSpec.*quantize it first"):
        emulate(floats, torch.zeros(3, 1, fixed.input_size))
    with pytest.raises(TypeError, match="expected a fixed-point lava_bridge.NetworkSpec"):
        emulate({"layers": []}, torch.zeros(3, 1, 2))


def test_rejects_bad_inputs():
    spec = random_fixed_spec(0)
    n = spec.input_size
    with pytest.raises(ValueError, match=r"expected binary spike inputs \(0 or 1\).*spike-encode"):
        emulate(spec, torch.full((3, 1, n), 0.5))
    with pytest.raises(ValueError, match=rf"takes {n} .*Fix: pass inputs of shape \[T, B, {n}\]"):
        emulate(spec, torch.zeros(3, 1, n + 1))
    with pytest.raises(ValueError, match=r"shape \[T, B, .*time-major"):
        emulate(spec, torch.zeros(3, n))


@pytest.mark.parametrize("seed", range(8))
def test_fast_path_equals_the_wrapping_path(seed, monkeypatch):
    """The int64 fast path (used where no int32 wrap is possible) equals the full Lava path."""
    import lava_bridge.emulator as em

    spec = random_fixed_spec(seed, sizes=(7, 6, 5, 4))
    x = torch.tensor(random_spikes(seed, 20, 3, 7))
    fast = emulate(spec, x, record_state=True)
    monkeypatch.setattr(em, "FAST_PATH", False)
    monkeypatch.setattr(em, "FIRST_LAYER_MAX_ELEMENTS", 0)  # and the step-by-step first layer
    full = emulate(spec, x, record_state=True)
    for i in range(spec.num_layers):
        assert torch.equal(fast.layer_spikes[i], full.layer_spikes[i])
        assert torch.equal(fast.u[i], full.u[i]) and torch.equal(fast.v[i], full.v[i])


# -- the convolutional path ---------------------------------------------------------------------


def _conv_layer(kernel, in_shape, *, stride=(1, 1), padding=(0, 0), e=0, vth=10_000):
    from lava_bridge._conv import _unroll

    kernel = np.asarray(kernel)
    O, (_, H, W) = kernel.shape[0], in_shape
    Ho = (H + 2 * padding[0] - kernel.shape[2]) // stride[0] + 1
    Wo = (W + 2 * padding[1] - kernel.shape[3]) // stride[1] + 1
    g = dict(
        in_shape=list(in_shape),
        out_shape=[O, Ho, Wo],
        kernel=list(kernel.shape[2:]),
        stride=list(stride),
        padding=list(padding),
    )
    n = O * Ho * Wo
    return LayerSpec(
        name="conv",
        weight=np.rint(_unroll(kernel.astype(float), g)).astype(np.int64),
        neuron=NeuronSpec(du=np.full(n, 4095), dv=np.zeros(n), vth=np.full(n, vth)),
        shape=(O, Ho, Wo),
        weight_exp=e,
        source="conv2d-as-dense",
        meta={"conv": g},
    )


def _equal_runs(a, b) -> bool:
    return all(
        torch.equal(p, q) for p, q in zip(a.layer_spikes + a.u + a.v, b.layer_spikes + b.u + b.v)
    )


def test_conv_path_by_hand():
    # 1x3x3 input, kernel [[1, 2], [3, 4]] (cross-correlation, as nn.Conv2d), weight_exp 1
    layer = _conv_layer([[[[1, 2], [3, 4]]]], (1, 3, 3), e=1)
    spec = NetworkSpec(layers=(layer,), input_shape=(1, 3, 3), fixed_point=True)
    assert _prepare(layer, 0, torch.device("cpu")).conv is not None  # the conv path is taken
    x = torch.zeros(4, 1, 1, 3, 3)
    x[0, 0, 0, 1, 1] = 1  # centre: every output sees it, through the opposite kernel tap
    x[1, 0, 0, 0, 0] = 1  # corner: only output (0, 0), through tap (0, 0)
    r = emulate(spec, x, record_state=True)
    # u = (acc << e) << 6 with du = 4095 (the current is cleared each step); outputs in C·H·W order
    assert r.u[0][:, 0].tolist() == [[0] * 4, [512, 384, 256, 128], [128, 0, 0, 0], [0] * 4]
    assert _equal_runs(r, emulate(spec, x, record_state=True, conv_as_dense=True))


@pytest.mark.parametrize("seed", range(10))
def test_conv_path_equals_dense_path_bit_for_bit(seed, monkeypatch):
    """Random conv → conv → dense specs (strides, padding, channels, sign modes, weight_exp -3..2,
    6-8 bits, biases, slow and fast decays): spikes, u and v at every step equal the unrolled
    matrices', on the int64 fast path and on the wrapping path, whole-input and step by step."""
    import lava_bridge.emulator as em

    spec, _ = random_conv_spec(seed, lava_conv=seed % 3 == 0)
    cpu = torch.device("cpu")
    taken = [em._prepare(layer, i, cpu).conv is not None for i, layer in enumerate(spec.layers)]
    assert taken[2] is False and any(taken)  # dense layers stay on the dense path
    x = torch.tensor(random_spikes(seed, 20, 3, spec.input_size)).reshape(20, 3, *spec.input_shape)
    conv = emulate(spec, x, record_state=True)
    assert sum(int(s.sum()) for s in conv.layer_spikes) > 0
    assert _equal_runs(conv, emulate(spec, x, record_state=True, conv_as_dense=True))
    monkeypatch.setattr(em, "FAST_PATH", False)
    monkeypatch.setattr(em, "FIRST_LAYER_MAX_ELEMENTS", 0)
    assert _equal_runs(conv, emulate(spec, x, record_state=True))
    assert _equal_runs(conv, emulate(spec, x, record_state=True, conv_as_dense=True))


def test_conv_path_comparison_can_fail(monkeypatch):
    import lava_bridge.emulator as em

    spec, _ = random_conv_spec(1)
    x = torch.tensor(random_spikes(1, 20, 3, spec.input_size)).reshape(20, 3, *spec.input_shape)
    dense = emulate(spec, x, record_state=True, conv_as_dense=True)
    # a matrix that is not one convolution any more (one entry changed) runs dense, still exact
    w = spec.layers[0].weight.copy()
    w[0, np.flatnonzero(w[0] == 0)[0]] = 50
    odd = replace(spec, layers=(replace(spec.layers[0], weight=w), *spec.layers[1:]))
    assert em._prepare(odd.layers[0], 0, torch.device("cpu")).conv is None
    assert _equal_runs(
        emulate(odd, x, record_state=True), emulate(odd, x, conv_as_dense=True, record_state=True)
    )
    # a conv path with the kernel flipped (the classic orientation error) is caught
    real = em._conv_plan

    def flipped(layer, index, device):
        c = real(layer, index, device)
        return None if c is None else c._replace(kernel=c.kernel.flip(-1, -2))

    monkeypatch.setattr(em, "_conv_plan", flipped)
    assert not _equal_runs(emulate(spec, x, record_state=True), dense)


@pytest.mark.parametrize("device", DEVICES)
def test_conv_path_devices_agree(device):
    spec, _ = random_conv_spec(4, bias=True)
    x = torch.tensor(random_spikes(4, 12, 2, spec.input_size)).reshape(12, 2, *spec.input_shape)
    ref = emulate(spec, x, record_state=True, conv_as_dense=True)
    got = emulate(spec, x.to(device), record_state=True)
    assert all(
        torch.equal(a.cpu(), b)
        for a, b in zip(got.layer_spikes + got.u + got.v, ref.layer_spikes + ref.u + ref.v)
    )
