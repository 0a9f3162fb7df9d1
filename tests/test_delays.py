"""DelayedLinear: golden values, nn.Linear at delay 0, LayerSync equals the module's own loop."""

import pytest
import snntorch as snn
import torch
from torch import nn

import snntorch_async as sa
from snntorch_async import ConfigError, DelayedLinear, InputError, LayerSync, Record, simulate
from snntorch_async.delays import MAX_DELAY, DelayedLinearOp, reset_delays
from snntorch_async.graph import read_model
from snntorch_async.reference import run_snntorch

ZERO = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)


def test_golden_hand_computed():
    lin = DelayedLinear(2, 1, delays=torch.tensor([[0, 2]]))
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 10.0]]))
        lin.bias.fill_(0.5)
    x = torch.tensor([[1.0, 1.0], [0.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 0.0], [0.0, 0.0]])
    # y[t] = x0[t] + 10·x1[t-2] + 0.5
    want = [1.5, 0.5, 12.5, 0.5, 0.5, 30.5]
    with torch.no_grad():
        got = [float(lin(x[t : t + 1])) for t in range(6)]
    assert got == want
    # the same through the engine's explicit state
    op = DelayedLinearOp(lin, "lin")
    st = op.init_state(1, "cpu", torch.float32)
    eng = []
    for t in range(6):
        y, st = op.forward_stateful(x[t : t + 1], st)
        eng.append(float(y.detach()))
    assert eng == want
    assert float(op.deliver_at(x[0:1], 2).detach()) == 10.0


def test_delay_zero_is_exactly_nn_linear():
    torch.manual_seed(0)
    ref = nn.Linear(7, 5)
    lin = DelayedLinear(7, 5, delays=0)
    lin.load_state_dict({**ref.state_dict(), "delays": lin.delays})
    x = torch.randn(4, 3, 7)
    assert torch.equal(torch.stack([lin(x[t]) for t in range(4)]), ref(x))

    def make(first):
        return nn.Sequential(first, snn.Leaky(beta=0.8, threshold=0.3, output=True, **ZERO))

    r1 = simulate(make(ref), (x > 0).float())
    r2 = simulate(make(lin), (x > 0).float())
    assert torch.equal(r1.spikes, r2.spikes)


def _model(seed: int, synaptic: bool, reset: str = "zero", bias: bool = True):
    torch.manual_seed(seed)
    kw = dict(init_hidden=True, reset_mechanism=reset, reset_delay=False)
    second = (
        snn.Synaptic(alpha=0.6, beta=0.85, threshold=0.4, output=True, **kw)
        if synaptic
        else snn.Leaky(beta=0.9, threshold=0.4, output=True, **kw)
    )
    m = nn.Sequential(
        DelayedLinear(8, 12, bias=bias, max_delay=5, seed=seed),
        snn.Leaky(beta=0.8, threshold=0.3, **kw),
        DelayedLinear(12, 4, bias=bias, max_delay=3, seed=seed + 1),
        second,
    )
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.5)
    return m


@pytest.mark.parametrize("synaptic", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_layersync_equals_modules_own_forward_in_snntorch_loop(seed, synaptic, reset):
    m = _model(seed, synaptic, reset)
    x = (torch.rand(25, 3, 8, generator=torch.Generator().manual_seed(seed)) < 0.4).float()
    res = simulate(m, x, scheduler=LayerSync())
    reset_delays(m)
    ref = run_snntorch(m, x)
    assert ref.sum() > 0
    assert torch.equal(res.spikes, ref)


def test_engine_never_touches_the_modules_history():
    m = _model(0, False)
    m[0](torch.zeros(5, 8))  # the module's own history for batch 5
    hist = m[0].history.clone()
    simulate(m, torch.ones(4, 2, 8))
    assert torch.equal(m[0].history, hist)
    reset_delays(m)
    assert m[0].history is None and m[2].history is None


def test_gradients_flow_through_delays():
    m = _model(3, True)
    x = (torch.rand(10, 2, 8, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    simulate(m, x).spikes.sum().backward()
    assert m[0].weight.grad is not None and m[2].weight.grad is not None


def test_seeded_initialiser_and_buffer():
    a = DelayedLinear(6, 4, max_delay=7, seed=3)
    b = DelayedLinear(6, 4, max_delay=7, seed=3)
    c = DelayedLinear(6, 4, max_delay=7, seed=4)
    assert torch.equal(a.delays, b.delays) and not torch.equal(a.delays, c.delays)
    assert int(a.delays.min()) >= 0 and int(a.delays.max()) <= 7 and a.delays.dtype == torch.long
    assert "delays" in a.state_dict()
    assert a.double().delays.dtype == torch.long
    g = read_model(nn.Sequential(a, snn.Leaky(beta=0.5, init_hidden=True)), (6,))
    assert isinstance(g.layers[0].ops[0], DelayedLinearOp) and g.layers[0].ops[0].stateful


def test_bad_delays_are_refused():
    with pytest.raises(ConfigError, match=rf"0\.\.{MAX_DELAY}.*got values in 63\.\.63"):
        DelayedLinear(2, 2, delays=torch.full((2, 2), 63))
    with pytest.raises(ConfigError, match=rf"0\.\.{MAX_DELAY}.*got values in -1\.\.-1"):
        DelayedLinear(2, 2, delays=-1)
    with pytest.raises(ConfigError, match="integers"):
        DelayedLinear(2, 2, delays=torch.full((2, 2), 1.5))
    with pytest.raises(ConfigError, match=r"shape \[out_features, in_features\] = \[2, 3\]"):
        DelayedLinear(3, 2, delays=torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ConfigError, match="max_delay"):
        DelayedLinear(3, 2, max_delay=64)


def test_batch_change_without_reset_is_an_error():
    lin = DelayedLinear(3, 2, max_delay=2)
    lin(torch.zeros(4, 3))
    with pytest.raises(InputError, match=r"reset\(\)"):
        lin(torch.zeros(5, 3))
    lin.reset()
    assert lin(torch.zeros(5, 3)).shape == (5, 2)


def test_record_membranes_with_stateful_layers():
    m = _model(1, True)
    res = simulate(m, torch.ones(3, 2, 8), record=Record(membranes=True))
    assert res.membranes[1].shape == (3, 2, 4)
    assert sa.DelayedLinear is DelayedLinear


def test_max_delay_is_the_same_in_core_and_bridge():
    """The core must not import the bridge, so both define MAX_DELAY: pinned equal here."""
    import lava_bridge

    assert MAX_DELAY == lava_bridge.MAX_DELAY == 62
