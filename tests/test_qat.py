"""QAT: fake-quantized parameters on Loihi's grids, straight-through gradients, removal, and use
from a plain snnTorch loop and from snntorch-async's fit."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import snntorch as snn
import snntorch.functional as SF
import torch
from torch import nn

import snntorch_async as sa
from lava_bridge import convert, emulate
from lava_bridge import is_qat, prepare_qat, qat, remove_qat
from lava_bridge import QuantizeSettings, quantize
from snntorch_async.reference import reset_states, run_snntorch


def _model(seed=0, sizes=(12, 16, 5), synaptic=False):
    torch.manual_seed(seed)
    kw = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)
    mods = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1])
        with torch.no_grad():
            lin.weight.mul_(3)
        out = i == len(sizes) - 2
        neuron = (
            snn.Synaptic(alpha=0.6, beta=0.8, output=out, **kw)
            if synaptic and i == 0
            else snn.Leaky(beta=0.85, learn_beta=True, output=out, **kw)
        )
        mods += [lin, neuron]
    return nn.Sequential(*mods)


def _spikes(seed, T=20, B=8, n=12):
    return (torch.rand(T, B, n, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


@pytest.mark.parametrize(
    "settings", [QuantizeSettings(), QuantizeSettings.slayer(), QuantizeSettings(num_weight_bits=4)]
)
def test_quantize_reproduces_the_fake_quantized_values(settings):
    model = _model(1, synaptic=True)
    if settings.scale is not None:  # SLAYER's grid needs weights within [-4, 4)
        with torch.no_grad():
            for m in model:
                if isinstance(m, nn.Linear):
                    m.weight.clamp_(-3.9, 3.9)
    prepare_qat(model, (12,), settings)
    spec = convert(model, (12,))  # reads the fake-quantized values
    fixed = quantize(spec, settings).spec
    for f, x in zip(spec.layers, fixed.layers):
        s = x.meta["scale"]
        np.testing.assert_allclose(
            x.weight * 2.0**x.weight_exp / s, f.weight, rtol=0, atol=1e-6 * np.abs(f.weight).max()
        )
        np.testing.assert_allclose(
            x.bias * 2.0**x.bias_exp / s, f.bias, rtol=0, atol=1e-6 * np.abs(f.weight).max()
        )
        np.testing.assert_allclose(x.neuron.vth / s, f.neuron.vth, rtol=1e-6)
        np.testing.assert_allclose(x.neuron.dv / 4096, f.neuron.dv, atol=1e-7)
        np.testing.assert_allclose((x.neuron.du + 1) / 4096, f.neuron.du, atol=1e-7)


def test_qat_model_in_fixed_point_matches_its_float_self():
    model = _model(2)
    prepare_qat(model, (12,))
    x = _spikes(2, B=32)
    ref = run_snntorch(model, x)
    fixed = quantize(convert(model, (12,))).spec
    got = emulate(fixed, torch.cat([x, torch.zeros(2, 32, 12)])).spikes[2:]
    assert ref.sum() > 50
    assert float((ref != got).float().mean()) < 0.005  # only the decays' integer rounding differs


def test_straight_through_gradient():
    model = _model(3)
    x = _spikes(3)
    plain = copy.deepcopy(model)
    prepare_qat(model, (12,))
    lin = model[0]
    w_fq = lin.weight.detach().clone().requires_grad_(True)
    # the gradient w.r.t. the float weight equals the gradient w.r.t. the quantized weight
    sa.simulate(model, x).spikes.sum().backward()
    g_qat = lin.parametrizations.weight.original.grad.clone()
    with torch.no_grad():
        plain[0].weight.copy_(w_fq)
        plain[0].bias.copy_(model[0].bias)
        plain[1].threshold.copy_(model[1].threshold)
        plain[1].beta.copy_(model[1].beta)
        plain[2].weight.copy_(model[2].weight)
        plain[2].bias.copy_(model[2].bias)
        plain[3].threshold.copy_(model[3].threshold)
        plain[3].beta.copy_(model[3].beta)
    sa.simulate(plain, x).spikes.sum().backward()
    torch.testing.assert_close(g_qat, plain[0].weight.grad)
    assert model[1].parametrizations.beta.original.grad is not None  # learnable beta trains too


def test_remove_restores_or_keeps():
    model = _model(4)
    w = model[0].weight.detach().clone()
    with qat(model, (12,)) as handle:
        assert is_qat(model) and len(handle.wrapped) == 8
        w_q = model[0].weight.detach().clone()
        assert not torch.equal(w_q, w)
    assert not is_qat(model) and type(model[0]) is nn.Linear
    assert torch.equal(model[0].weight, w)
    prepare_qat(model, (12,))
    remove_qat(model, keep_quantized=True)
    assert torch.equal(model[0].weight, w_q)
    assert type(model[1]) is snn.Leaky


def test_plain_snntorch_training_loop():
    """The user's own loop (one model call per step) trains the fake-quantized model."""
    model = _model(5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)  # built before prepare_qat: same params
    prepare_qat(model, (12,))
    x = _spikes(5, B=16)
    target = torch.zeros(16, dtype=torch.long)
    loss_fn = SF.ce_rate_loss()
    losses = []
    for _ in range(15):
        reset_states(model)
        spk = []
        for t in range(x.shape[0]):
            s, _mem = model(x[t])
            spk.append(s)
        loss = loss_fn(torch.stack(spk), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    # the fake-quantized weights moved with the float ones and stay on the grid
    spec = quantize(convert(model, (12,))).spec
    assert spec.fixed_point


def test_fit_under_qat():
    from snntorch_async.training import TrainConfig, fit

    model = _model(6)
    x = _spikes(6, B=16)
    y = torch.arange(16) % 5
    with qat(model, (12,)):
        before = model[0].weight.detach().clone()
        fit(
            model,
            [(x, y)],
            scheduler=sa.LayerSync(),
            config=TrainConfig(epochs=2, lr=1e-2),
            progress=False,
        )
        assert not torch.equal(model[0].weight, before)


def test_errors():
    model = _model(7)
    prepare_qat(model, (12,))
    with pytest.raises(ValueError, match="already has QAT parametrizations.*remove_qat"):
        prepare_qat(model, (12,))
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), snn.Leaky(beta=0.9, init_hidden=True))
    with pytest.raises(ValueError, match=r"layer 0 .*Conv2d.*exactly one nn.Linear"):
        prepare_qat(conv, (1, 5, 5))


def test_digits_qat_fixed_point_loses_at_most_one_point():
    """A small version of benchmarks/qat_digits.py: QAT model, float vs fixed point (emulator)."""
    from snntorch_async.data import RateEncoding, load_digits_spikes, make_loader
    from snntorch_async.training import TrainConfig, fit

    digits = load_digits_spikes(encoding=RateEncoding(gain=1.0), num_steps=10, seed=0)
    train = make_loader(digits.train, batch_size=64, shuffle=True, seed=0)
    x, y = next(iter(make_loader(digits.test, batch_size=300)))
    torch.manual_seed(0)
    kw = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)
    model = nn.Sequential(
        nn.Linear(64, 32),
        snn.Leaky(beta=0.9, **kw),
        nn.Linear(32, 10),
        snn.Leaky(beta=0.9, output=True, **kw),
    )
    with qat(model, (64,)):
        fit(
            model,
            train,
            scheduler=sa.LayerSync(),
            config=TrainConfig(epochs=1, lr=1e-2, max_batches=12),
            progress=False,
        )
        with torch.no_grad():
            acc_float = float((sa.simulate(model, x).spikes.sum(0).argmax(1) == y).float().mean())
        spec = quantize(convert(model, (64,))).spec
    counts = emulate(spec, torch.cat([x, torch.zeros(2, *x.shape[1:])])).spikes[2:].sum(0)
    acc_fixed = float((counts.argmax(1) == y).float().mean())
    assert acc_float > 0.5  # it learned something
    assert abs(acc_float - acc_fixed) <= 0.01
