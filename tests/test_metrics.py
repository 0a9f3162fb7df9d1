"""Metrics from the engine's counters: golden values by hand, consistency with the records, and a
cross-check against the NeuroBench package when it is installed."""

import math

import pytest
import snntorch as snn
import torch
from torch import nn

from snntorch_async import LayerSync, Record, simulate
from snntorch_async.errors import InputError
from snntorch_async.metrics import (
    Metrics,
    aligned_output,
    evaluate,
    is_binary,
    predict,
    sample_metrics,
    spike_density,
)
from snntorch_async.simulate import SimulationResult


def _result(out, *, counts=None, synops=None, fw=None, neurons=(4, 3), dense=(20, 12), lag=0):
    T, B, C = out.shape
    L = len(neurons)
    return SimulationResult(
        spikes=out,
        layer_spikes=None,
        membranes=None,
        spike_counts=counts if counts is not None else torch.zeros(T, B, L),
        synops=synops if synops is not None else torch.zeros(T, B, L),
        dense_synops=dense,
        forward_steps=fw if fw is not None else torch.full((T, B), L, dtype=torch.long),
        neurons=neurons,
        output_lag=lag,
        scheduler=LayerSync(),
    )


def _out(events, T, B=1, C=3):
    """events: list of (t, b, c) output spikes."""
    out = torch.zeros(T, B, C)
    for t, b, c in events:
        out[t, b, c] = 1
    return out


def test_latency_golden_values():
    # sample 0: class 1 fires at t=1, class 2 at t=2 and t=3 -> prediction 2 decided at t=3 (tie
    #           at t=2 goes to the lower index 1): latency 4 time steps; first spike at step 2.
    # sample 1: class 0 fires at t=0 only -> decided at once: latency 1, first spike 1.
    # sample 2: never fires -> nan latencies, prediction 0 (tie).
    out = _out([(1, 0, 1), (2, 0, 2), (3, 0, 2), (0, 1, 0)], T=5, B=3)
    fw = torch.tensor([[2, 2, 2], [3, 1, 2], [1, 1, 2], [4, 1, 2], [2, 1, 2]])
    m = sample_metrics(_result(out, fw=fw, neurons=(4, 3)), torch.tensor([2, 1, 0]))
    assert m.prediction.tolist() == [2, 0, 0]
    assert m.correct.tolist() == [1.0, 0.0, 1.0]
    assert m.tie.tolist() == [0.0, 0.0, 1.0]
    assert m.decision_step[:2].tolist() == [4.0, 1.0] and math.isnan(m.decision_step[2])
    assert m.first_spike_step[:2].tolist() == [2.0, 1.0] and math.isnan(m.first_spike_step[2])
    # forward steps up to and including the decision step: 2+3+1+4 = 10 and 2
    assert m.decision_forward_steps[:2].tolist() == [10.0, 2.0]
    assert m.first_spike_forward_steps[:2].tolist() == [5.0, 2.0]
    assert m.forward_steps.tolist() == [12.0, 6.0, 10.0]


def test_prediction_change_back_and_forth():
    # class 0 leads at t=0, class 1 overtakes at t=2 (2 vs 1), at t=3 the 2:2 tie goes back to
    # class 0, which stays ahead (3 vs 2 at t=4): decided from t=3, latency 4 time steps
    ev = [(0, 0, 0), (1, 0, 1), (2, 0, 1), (3, 0, 0), (4, 0, 0)]
    m = sample_metrics(_result(_out(ev, T=6)))
    assert m.prediction.item() == 0 and m.decision_step.item() == 4.0
    assert m.first_spike_step.item() == 1.0


def test_density_synops_and_sparsity_golden():
    T, B = 2, 2
    counts = torch.tensor([[[1.0, 0.0], [4.0, 3.0]], [[2.0, 1.0], [0.0, 0.0]]])  # [T, B, L]
    synops = torch.tensor([[[10.0, 3.0], [0.0, 0.0]], [[5.0, 6.0], [1.0, 2.0]]])
    r = _result(_out([(0, 0, 0)], T=T, B=B), counts=counts, synops=synops)
    assert spike_density(r).tolist() == [4 / 14, 7 / 14]
    m = sample_metrics(r, binary_inputs=True)
    assert m.synops_ac.tolist() == [24.0, 3.0] and m.synops_mac.tolist() == [0.0, 0.0]
    assert m.dense_synops.tolist() == [64.0, 64.0]
    m2 = sample_metrics(r, binary_inputs=False)  # the first layer's synops become MACs
    assert m2.synops_mac.tolist() == [15.0, 1.0] and m2.synops_ac.tolist() == [9.0, 2.0]
    agg = Metrics.from_batches([m], neurons=(4, 3), num_steps=T, output_lag=0, scheduler="s")
    s = agg.summary()
    assert s["spike_density"] == pytest.approx(5.5 / 14)
    assert s["activation_sparsity"] == pytest.approx(1 - 5.5 / 14)
    assert s["synops_effective"] == 13.5 and s["synops_dense"] == 64.0
    assert math.isnan(s["accuracy"])  # no targets
    assert "spike_density" in agg.table()


def test_output_lag_is_removed_in_one_place():
    # a pipelined output (lag 2) equal to a sync output shifted by 2 steps
    sync = _out([(0, 0, 1), (1, 0, 1), (2, 0, 0)], T=5)
    lagged = torch.cat([torch.zeros(2, 1, 3), sync[:3]])
    fw = torch.ones(5, 1, dtype=torch.long)
    a = sample_metrics(_result(sync[:3], fw=fw[:3]))
    b = sample_metrics(_result(lagged, fw=fw, lag=2))
    assert a.decision_step.item() == b.decision_step.item() == 1.0
    assert b.decision_forward_steps.item() == 3.0  # the 2 pipeline-filling steps are counted
    spikes, cum = aligned_output(_result(lagged, fw=fw, lag=2))
    assert torch.equal(spikes, sync[:3]) and cum[:, 0].tolist() == [3.0, 4.0, 5.0]
    with pytest.raises(InputError, match="pad the inputs with 5 zero steps"):
        aligned_output(_result(lagged, fw=fw, lag=5))


def test_helpers():
    assert predict(_out([(0, 0, 2), (1, 0, 1)], T=2)).tolist() == [1]  # tie -> lower index
    assert is_binary(torch.tensor([0.0, 1.0, -1.0])) and not is_binary(torch.tensor([0.5]))
    with pytest.raises(InputError, match="class indices of shape"):
        sample_metrics(_result(_out([], T=2, B=2)), torch.zeros(2, 3))


def _net(seed=0, n_in=12, hidden=10, out=4):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(n_in, hidden),
        snn.Leaky(beta=0.9, threshold=0.5, init_hidden=True),
        nn.Linear(hidden, out),
        snn.Leaky(beta=0.9, threshold=0.5, init_hidden=True, output=True),
    )


def test_counters_agree_with_records_of_a_real_simulation():
    model = _net()
    with torch.no_grad():
        model[0].weight[:, :3] = 0  # inputs 0..2 have no synapses: no synops for them
    x = (torch.rand(8, 5, 12, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    res = simulate(model, x, record=Record(layer_spikes=True))
    m = sample_metrics(res)
    spikes = sum(s.sum((0, 2)) for s in res.layer_spikes).double()
    assert torch.equal(m.spikes, spikes) and torch.allclose(m.density, spikes / (14 * 8))
    # synops by hand: active inputs x non-zero fan-out, + hidden spikes x fan-out (4)
    fan_in = (model[0].weight != 0).sum(0).double()
    by_hand = (x.double() * fan_in).sum((0, 2)) + res.layer_spikes[0].double().sum((0, 2)) * 4
    assert torch.allclose(m.synops_ac, by_hand)
    assert m.dense_synops[0].item() == 8 * (12 * 10 + 10 * 4)


def test_evaluate_over_a_loader():
    model = _net()
    g = torch.Generator().manual_seed(0)
    data = [
        ((torch.rand(6, 4, 12, generator=g) < 0.5).float(), torch.randint(0, 4, (4,), generator=g))
        for _ in range(3)
    ]
    model.train()
    m = evaluate(model, data, scheduler=LayerSync(), max_batches=2)
    assert model.training  # restored
    assert m.num_samples == 8 and m.num_steps == 6
    # accuracy equals snnTorch's own accuracy readout on the same outputs
    import snntorch.functional as SF

    accs = [SF.accuracy_rate(simulate(model, x).spikes, y) for x, y in data[:2]]
    assert m.accuracy == pytest.approx(sum(accs) / 2)
    assert 0 <= m.spike_density <= 1


# ------------------------------------------------------------------------------------------
# Cross-check against NeuroBench (skipped when the package is absent).
# ------------------------------------------------------------------------------------------
def _neurobench_run(model, x_bt, y, metrics):
    from neurobench.benchmarks import Benchmark
    from neurobench.models import SNNTorchModel
    from neurobench.processors.postprocessors import ChooseMaxCount

    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x_bt, y), batch_size=x_bt.shape[0]
    )
    bench = Benchmark(SNNTorchModel(model), loader, [], [ChooseMaxCount()], [[], metrics])
    return bench.run(quiet=True)


@pytest.mark.parametrize("binary", [True, False], ids=["spiking-input", "real-input"])
def test_matches_neurobench(binary):
    pytest.importorskip(
        "neurobench", reason="NeuroBench is not installed (pip install --no-deps neurobench)"
    )
    from neurobench.metrics.workload import (
        ActivationSparsity,
        ClassificationAccuracy,
        SynapticOperations,
    )

    model = _net(seed=3)
    with torch.no_grad():
        model[2].weight[0, :4] = 0  # some zero synapses: effective != dense fan-out
    g = torch.Generator().manual_seed(2)
    x = torch.rand(10, 6, 12, generator=g)  # [T, B, F]
    x = (x < 0.5).float() if binary else x * 1.5
    y = torch.randint(0, 4, (6,), generator=g)
    ours = evaluate(model, [(x, y)], scheduler=LayerSync()).summary()
    nb = _neurobench_run(
        model,
        x.transpose(0, 1).contiguous(),
        y,
        [ActivationSparsity, SynapticOperations, ClassificationAccuracy],
    )
    assert ours["activation_sparsity"] == pytest.approx(nb["ActivationSparsity"], abs=1e-12)
    syn = nb["SynapticOperations"]
    assert ours["synops_ac"] == pytest.approx(syn["Effective_ACs"])
    assert ours["synops_mac"] == pytest.approx(syn["Effective_MACs"])
    assert ours["synops_dense"] == pytest.approx(syn["Dense"])
    assert ours["accuracy"] == pytest.approx(nb["ClassificationAccuracy"])
    assert (ours["synops_mac"] > 0) == (not binary)


def test_metrics_under_asynchronous_schedulers():
    from snntorch_async.schedulers.asynchronous import LayerOrderedAsync, RandomAsync

    model = _net(seed=1)
    g = torch.Generator().manual_seed(4)
    data = [
        ((torch.rand(8, 6, 12, generator=g) < 0.5).float(), torch.randint(0, 4, (6,), generator=g))
    ]
    sync = evaluate(model, data, scheduler=LayerSync()).summary()
    anchor = evaluate(model, data, scheduler=LayerOrderedAsync(forward_group_size=None)).summary()
    # same spikes (the anchor) => same accuracy, density, synops and time-step latencies
    for key in (
        "accuracy",
        "spike_density",
        "synops_ac",
        "synops_dense",
        "decision_step",
        "first_spike_step",
    ):
        assert anchor[key] == pytest.approx(sync[key], nan_ok=True), key
    serial = evaluate(model, data, scheduler=RandomAsync(forward_group_size=1, seed=0))
    s = serial.summary()
    assert s["forward_steps"] > anchor["forward_steps"]  # one spike per forward step
    assert s["synops_dense"] == sync["synops_dense"]
    # the forward-step latency is the engine's cumulative count at the decision step
    x = data[0][0]
    res = simulate(model, x, scheduler=RandomAsync(forward_group_size=1, seed=0))
    cum = res.forward_steps.double().cumsum(0)
    d = serial.samples.decision_step
    for b in range(6):
        if not math.isnan(d[b]):
            assert serial.samples.decision_forward_steps[b] == cum[int(d[b]) - 1, b]
