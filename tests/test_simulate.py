"""simulate()'s result and the engine's counters: golden values worked out by hand; properties."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from random_models import random_inputs, random_model, snntorch_loop
from torch import nn

import snntorch_async as sa
from snntorch_async.errors import ConfigError
from snntorch_async.simulate import get_graph


def _set(module: nn.Module, weight) -> nn.Module:
    with torch.no_grad():
        module.weight.copy_(torch.tensor(weight, dtype=torch.float32).reshape(module.weight.shape))
    return module


def _instant(threshold: float) -> snn.Leaky:
    """A memoryless neuron (beta = 0, no reset): ``spk = I > threshold`` at every step."""
    return snn.Leaky(beta=0.0, threshold=threshold, reset_mechanism="none", init_hidden=True)


# ---------------------------------------------------------------------------------------------
# Golden values (worked out by hand in the comments)
# ---------------------------------------------------------------------------------------------


def _tiny_mlp() -> nn.Sequential:
    # W1 = [[2, 0, 2], [0, 0, 3]]: non-zero fan-out of the inputs = [1, 0, 2].
    # W2 = [[1, 1], [0, 1]]:       non-zero fan-out of layer 0    = [1, 2].
    return nn.Sequential(
        _set(nn.Linear(3, 2, bias=False), [[2, 0, 2], [0, 0, 3]]),
        _instant(1.0),
        _set(nn.Linear(2, 2, bias=False), [[1, 1], [0, 1]]),
        _instant(0.5),
    )


# [T=3, B=2, 3]; t=2, b=0 is real-valued: every non-zero value counts as an event.
TINY_X = torch.tensor(
    [
        [[1, 1, 0], [0, 1, 1]],
        [[0, 0, 0], [1, 0, 1]],
        [[0.5, 0, -2], [0, 0, 0]],
    ]
)


def test_tiny_linear_golden_counters():
    res = sa.simulate(_tiny_mlp(), TINY_X, record=sa.Record(layer_spikes=True))
    # Layer 0 current W1·x: t0 [2,0] | [2,3];  t1 [0,0] | [4,3];  t2 [-3,-6] | [0,0]  (thr 1)
    # Layer 1 current W2·s: t0 [1,0] | [2,1];  t1 [0,0] | [2,1];  t2 [0,0]  | [0,0]  (thr 0.5)
    expected_l0 = torch.tensor([[[1, 0], [1, 1]], [[0, 0], [1, 1]], [[0, 0], [0, 0]]]).float()
    assert torch.equal(res.layer_spikes[0], expected_l0)
    assert torch.equal(res.spikes, expected_l0)  # layer 1 fires exactly where layer 0 does
    # synops[t, b, layer] = Σ over non-zero inputs of their non-zero fan-out:
    #   layer 0: t0 1+0=1 | 0+2=2;  t1 0 | 1+2=3;  t2 (0.5 and -2 active) 1+2=3 | 0
    #   layer 1: t0 1 | 1+2=3;      t1 0 | 3;      t2 0 | 0
    expected_synops = torch.tensor([[[1, 1], [2, 3]], [[0, 0], [3, 3]], [[3, 0], [0, 0]]]).float()
    assert torch.equal(res.synops, expected_synops)
    expected_counts = torch.tensor([[[1, 1], [2, 2]], [[0, 0], [2, 2]], [[0, 0], [0, 0]]]).float()
    assert torch.equal(res.spike_counts, expected_counts)
    assert res.dense_synops == (3 * 2, 2 * 2)
    assert res.neurons == (2, 2)
    assert torch.equal(res.forward_steps, torch.full((3, 2), 2, dtype=torch.long))
    assert res.output_lag == 0
    # And snnTorch agrees on the spikes.
    with torch.no_grad():
        assert torch.equal(snntorch_loop(_tiny_mlp(), TINY_X).spikes, res.spikes)


def _tiny_conv() -> nn.Sequential:
    # Kernel [[1, 0], [1, 1]] on a 3×3 image, no padding: 2×2 outputs. Non-zero fan-out of each
    # input pixel (i, j) = #outputs (a, b) with w[i-a, j-b] ≠ 0:
    #   [[1, 1, 0],
    #    [2, 3, 1],
    #    [1, 2, 1]]   (sum 12 = 4 outputs × 3 non-zero weights)
    # Then Flatten → Linear(4, 1) with weight [1, 0, 1, 0]: fan-out of conv neurons [1, 0, 1, 0].
    return nn.Sequential(
        _set(nn.Conv2d(1, 1, 2, bias=False), [[1, 0], [1, 1]]),
        _instant(0.5),
        nn.Flatten(),
        _set(nn.Linear(4, 1, bias=False), [[1, 0, 1, 0]]),
        _instant(0.5),
    )


def test_tiny_conv_golden_counters():
    a = torch.ones(1, 3, 3)
    b = torch.zeros(1, 3, 3)
    b[0, 1, 1] = b[0, 0, 2] = 1.0
    x = torch.stack([a, b])[None]  # [T=1, B=2, 1, 3, 3]
    res = sa.simulate(_tiny_conv(), x, record=sa.Record(layer_spikes=True))
    # Sample a (all ones): conv synops 12; every conv output is 1+1+1 = 3 > 0.5 → 4 spikes;
    #   linear synops = fan-out 1+0+1+0 = 2; current 2 → 1 spike.
    # Sample b (pixels (1,1), (0,2)): conv synops 3 + 0 = 3; conv outputs (0,0)=1 (via w[1,1]),
    #   (0,1)=1 (via w[1,0]), (1,0)=0 (via w[0,1] = 0), (1,1)=1 (via w[0,0]) → spikes [1,1,0,1];
    #   linear synops = 1 + 0 + 0 = 1; current 1 → 1 spike.
    expected = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 1]])
    assert torch.equal(res.layer_spikes[0][0].flatten(1), expected)
    assert torch.equal(res.synops[0], torch.tensor([[12.0, 2], [3, 1]]))
    assert torch.equal(res.spike_counts[0], torch.tensor([[4.0, 1], [3, 1]]))
    # Dense: every one of the 4 kernel taps of the 4 outputs reads a real pixel → 16; linear 4.
    assert res.dense_synops == (16, 4)
    assert res.neurons == (4, 1)


@pytest.mark.parametrize(
    "conv,in_shape,expected",
    [
        # 3×3 input, 2×2 kernel, padding 1: 4×4 outputs; each real pixel feeds 4 outputs → 9 × 4.
        (dict(in_channels=1, out_channels=1, kernel_size=2, padding=1), (1, 3, 3), 36),
        # 4×4 input, 3×3 kernel, stride 2, padding 1: 2×2 outputs whose windows hold 4, 6, 6, 9 real
        # pixels = 25 per (in, out) channel pair; 2 in × 3 out channels → 150.
        (dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1), (2, 4, 4), 150),
    ],
)
def test_conv_dense_synops_golden(conv, in_shape, expected):
    model = nn.Sequential(nn.Conv2d(**conv), snn.Leaky(beta=0.5, init_hidden=True))
    graph = sa.read_model(model, in_shape)
    assert graph.layers[0].dense_synops() == expected
    res = sa.simulate(model, torch.ones((1, 1, *in_shape)))
    assert res.dense_synops == (expected,)
    # With all inputs active and every weight non-zero, the effective count is the dense one.
    assert float(res.synops[0, 0, 0]) == expected


def test_zero_weights_do_not_count_and_updates_are_seen():
    model = _tiny_mlp()
    x = torch.ones(1, 1, 3)
    assert float(sa.simulate(model, x).synops[0, 0, 0]) == 3  # fan-outs 1 + 0 + 2
    with torch.no_grad():
        model[0].weight[1, 1] = 5.0  # input 1 gains a synapse (the fan-out cache must notice)
    assert float(sa.simulate(model, x).synops[0, 0, 0]) == 4


# ---------------------------------------------------------------------------------------------
# Properties on random models
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_spike_counts_are_the_spike_record_summed(seed):
    case = random_model(seed)
    x = random_inputs(seed, 6, 3, case.input_shape)
    with torch.no_grad():
        res = sa.simulate(case.model, x, record=sa.Record(layer_spikes=True))
    L = len(res.layer_spikes)
    assert res.spike_counts.shape == (6, 3, L) and res.synops.shape == (6, 3, L)
    for i, s in enumerate(res.layer_spikes):
        assert torch.equal(res.spike_counts[..., i], s.flatten(2).sum(-1))
    assert bool((res.synops >= 0).all())
    assert bool((res.synops.sum((0, 1)) <= torch.tensor(res.dense_synops) * 6 * 3).all())
    graph = sa.read_model(case.model, case.input_shape)
    assert res.neurons == tuple(layer.numel for layer in graph.layers)
    assert not res.spike_counts.requires_grad and not res.synops.requires_grad


def test_result_fields_and_recording_options():
    case = random_model(2)
    x = random_inputs(2, 5, 2, case.input_shape)
    plain = sa.simulate(case.model, x)
    assert plain.layer_spikes is None and plain.membranes is None
    assert isinstance(plain.scheduler, sa.LayerSync)
    full = sa.simulate(case.model, x, record=sa.Record(membranes=True, layer_spikes=True))
    graph = sa.read_model(case.model, case.input_shape)
    for layer, s, m in zip(graph.layers, full.layer_spikes, full.membranes):
        assert s.shape == m.shape == (5, 2, *layer.shape)
    assert torch.equal(full.spikes, plain.spikes)
    assert full.spikes.shape == (5, 2, graph.output_size)


@pytest.mark.parametrize("seed", [0, 3, 5])
def test_spike_forward_steps_of_layersync_and_pipelined(seed):
    """LayerSync: layer l fires in forward step l + 1 of L; Pipelined: every layer updates at
    once (no order within a step), every spike at 1. Spikes as without the record."""
    case = random_model(seed)
    x = random_inputs(seed, 6, 3, case.input_shape)
    order = sa.Record(layer_spikes=True, spike_forward_steps=True)
    for sched in (sa.LayerSync(), sa.Pipelined()):
        with torch.no_grad():
            on = sa.simulate(case.model, x, scheduler=sched, record=order)
            off = sa.simulate(case.model, x, scheduler=sched, record=sa.Record(layer_spikes=True))
        assert off.spike_forward_steps is None
        L = len(on.layer_spikes)
        assert bool((on.forward_steps == L).all())
        fired_somewhere = 0
        for l, (s, s_off, k) in enumerate(
            zip(on.layer_spikes, off.layer_spikes, on.spike_forward_steps)
        ):
            assert torch.equal(s, s_off) and k.dtype == torch.long and k.shape == s.shape
            index = l + 1 if isinstance(sched, sa.LayerSync) else 1
            assert torch.equal(k, (s != 0).long() * index)
            fired_somewhere += int((k > 0).sum())
        assert fired_somewhere > 0


def test_a_scheduler_that_does_not_record_spike_forward_steps_is_refused():
    class Quiet(sa.LayerSync):
        def step(self, ctx, state, x, t):
            state, out = super().step(ctx, state, x, t)
            return state, out._replace(spike_forward_steps=None)

    x = random_inputs(1, 3, 2, (3,))
    with pytest.raises(ConfigError, match=r"Quiet does not record the forward step of each spike"):
        sa.simulate(_tiny_mlp(), x, scheduler=Quiet(), record=sa.Record(spike_forward_steps=True))
    assert sa.simulate(_tiny_mlp(), x, scheduler=Quiet()).spike_forward_steps is None


def test_graph_is_cached_and_reread_when_a_module_is_replaced():
    case = random_model(1, kind="mlp")
    model = case.model
    g1 = get_graph(model, case.input_shape)
    assert get_graph(model, case.input_shape) is g1
    idx = next(i for i, m in enumerate(model) if isinstance(m, snn.SpikingNeuron))
    model[idx] = snn.Leaky(beta=0.5, init_hidden=True)
    g2 = get_graph(model, case.input_shape)
    assert g2 is not g1 and g2.layers[0].neuron.module is model[idx]


def test_simulate_accepts_a_network_graph():
    case = random_model(4)
    graph = sa.read_model(case.model, case.input_shape)
    x = random_inputs(4, 5, 2, case.input_shape)
    assert torch.equal(sa.simulate(graph, x).spikes, sa.simulate(case.model, x).spikes)
