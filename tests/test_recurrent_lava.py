"""Recurrent layers against real Lava (lava-nc 0.10.0), spike for spike.

* ``Pipelined`` ≡ a Lava float network with a recurrent ``Dense`` (``LIF.s_out → Dense → LIF.a_in``)
  built by hand, not with ``lava_bridge.build``, on seeded RLeaky layers with Lava's reset rule
  (zero, ``reset_delay=False``); with ``BiasTiming.LAVA`` the LIF's ``bias_mant`` holds the layer
  bias plus the recurrent Linear's bias.
* ``lava_bridge.verify``: the converted model under ``Pipelined`` ≡ ``build``'s Lava float network,
  and ``emulate`` ≡ ``build``'s Lava ``fixed_pt`` network, both bias timings.
* ``emulate`` ≡ Lava ``fixed_pt`` bit for bit (spikes, ``u``, ``v``) on random fixed-point specs
  with recurrent Dense matrices, built independently by ``lava_fixed_harness``.

Every comparison is also run against a deliberately wrong conversion (recurrent matrix transposed
or dropped, recurrent bias dropped) and must then fail."""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

pytest.importorskip("lava.magma.core.run_configs", reason="Lava is not installed")

from lava.magma.core.run_conditions import RunSteps  # noqa: E402
from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: E402
from lava.proc.dense.process import Dense  # noqa: E402
from lava.proc.io.sink import RingBuffer as Sink  # noqa: E402
from lava.proc.io.source import RingBuffer as Source  # noqa: E402
from lava.proc.lif.process import LIF  # noqa: E402

import snntorch_async as sa  # noqa: E402

pytestmark = pytest.mark.lava
T, NIN, N = 16, 5, 7


def _lava_recurrent(w, wrec, beta, thr, x, bias=0.0):
    """x ``[T, NIN]`` → output spikes ``[T + 1, N]`` of a Lava LIF layer with a recurrent Dense
    (and the LIF bias ``bias_mant``)."""
    steps = x.shape[0] + 1
    src = Source(data=np.concatenate([x, np.zeros((1, x.shape[1]))]).T)
    ff = Dense(weights=w)
    rec = Dense(weights=wrec)
    lif = LIF(shape=(N,), du=1.0, dv=1.0 - beta, vth=thr, bias_mant=bias)
    sink = Sink(shape=(N,), buffer=steps)
    src.s_out.connect(ff.s_in)
    ff.a_out.connect(lif.a_in)
    lif.s_out.connect(rec.s_in)
    rec.a_out.connect(lif.a_in)
    lif.s_out.connect(sink.a_in)
    try:
        lif.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="floating_pt"))
        return sink.data.get().T.copy()
    finally:
        lif.stop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("all_to_all", [True, False])
def test_pipelined_equals_lava_recurrent_dense(all_to_all):
    torch.manual_seed(0)
    kw = dict(
        beta=0.75,
        threshold=0.6,
        init_hidden=True,
        reset_mechanism="zero",
        reset_delay=False,
        output=True,
    )
    rl = (
        snn.RLeaky(linear_features=N, **kw)
        if all_to_all
        else snn.RLeaky(all_to_all=False, V=torch.rand(N) * 1.6 - 0.5, learn_recurrent=False, **kw)
    )
    model = nn.Sequential(nn.Linear(NIN, N, bias=False), rl)
    with torch.no_grad():
        model[0].weight.mul_(3.0)
        if all_to_all:
            rl.recurrent.bias.zero_()  # the bridge's bias rules are not part of this check
            rl.recurrent.weight.mul_(2.0)
    x = (torch.rand(T, 1, NIN, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    out = (
        sa.simulate(
            model, torch.cat([x, torch.zeros(1, 1, NIN)]), scheduler=sa.Pipelined(float64=True)
        )
        .spikes[:, 0]
        .detach()
        .numpy()
    )
    wrec = (
        rl.recurrent.weight.detach().double().numpy()
        if all_to_all
        else np.diag(rl.V.detach().double().numpy())
    )
    lava = _lava_recurrent(
        model[0].weight.detach().double().numpy(), wrec, 0.75, 0.6, x[:, 0].double().numpy()
    )
    assert 0 < out.mean() < 1
    assert np.array_equal(out, lava)


@pytest.mark.timeout(120)
def test_pipelined_lava_timing_equals_lava_with_recurrent_bias_in_bias_mant():
    """BiasTiming.LAVA: the recurrent Linear's bias is part of the LIF's bias (into v from
    step 0), as convert writes it; without it the natively built network differs."""
    torch.manual_seed(1)
    kw = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False, output=True)
    rl = snn.RLeaky(beta=0.75, threshold=0.6, linear_features=N, **kw)
    model = nn.Sequential(nn.Linear(NIN, N), rl)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        model[0].weight.mul_(2.5)
        model[0].bias.uniform_(-0.1, 0.2, generator=g)
        rl.recurrent.weight.mul_(2.0)
        rl.recurrent.bias.uniform_(-0.1, 0.3, generator=g)
    x = (torch.rand(T, 1, NIN, generator=torch.Generator().manual_seed(5)) < 0.4).float()
    xp = torch.cat([x, torch.zeros(1, 1, NIN)])
    with torch.no_grad():
        sched = sa.Pipelined(float64=True, bias_timing=sa.BiasTiming.LAVA)
        out = sa.simulate(model, xp, scheduler=sched).spikes[:, 0].numpy()
    f64 = lambda t: t.detach().double().numpy()  # noqa: E731
    w, wrec, xs = f64(model[0].weight), f64(rl.recurrent.weight), x[:, 0].double().numpy()
    both = f64(model[0].bias) + f64(rl.recurrent.bias)
    lava = _lava_recurrent(w, wrec, 0.75, 0.6, xs, bias=both)
    assert 0 < out.mean() < 1
    assert np.array_equal(out, lava)
    # the check can fail: the recurrent bias left out of bias_mant
    assert not np.array_equal(out, _lava_recurrent(w, wrec, 0.75, 0.6, xs, bias=f64(model[0].bias)))


def _net(seed: int) -> nn.Sequential:
    """6-8-4, biased: an all-to-all RLeaky (recurrent bias too) and a one-to-one RLeaky."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    kw = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
    m = nn.Sequential(
        nn.Linear(6, 8),
        snn.RLeaky(beta=0.8, threshold=0.6, linear_features=8, **kw),
        nn.Linear(8, 4),
        snn.RLeaky(
            beta=0.7,
            threshold=0.5,
            all_to_all=False,
            V=torch.rand(4, generator=g) - 0.3,
            output=True,
            **kw,
        ),
    )
    with torch.no_grad():
        for lin in (m[0], m[2]):
            lin.weight.mul_(2.5).add_(0.15)
            lin.bias.uniform_(-0.1, 0.3, generator=g)
        m[1].recurrent.weight.mul_(2.0)
        m[1].recurrent.bias.uniform_(-0.2, 0.3, generator=g)
    return m


def _lava_of(spec, x) -> np.ndarray:
    """``build`` + ``run`` of ``spec`` for every sample of ``x`` ``[S, B, n]`` → ``[S, B, C]``."""
    from lava_bridge import run_spec

    return np.stack(
        [run_spec(spec, x[:, b], num_steps=x.shape[0]).spikes for b in range(x.shape[1])], 1
    )


@pytest.mark.timeout(300)
@pytest.mark.parametrize("timing", ["synaptic", "lava"])
def test_verify_recurrent_model_float_and_fixed_point(timing):
    """verify: Pipelined ≡ build's Lava float network; emulate ≡ build's Lava fixed_pt network.
    The float check can fail: Lava running a spec with the recurrent matrix transposed, or
    without the recurrent bias, differs from the model."""
    from dataclasses import replace

    from lava_bridge import convert, verify

    m = _net(2)
    x = (torch.rand(25, 2, 6, generator=torch.Generator().manual_seed(2)) < 0.4).float()
    res = verify(m, x, bias_timing=timing)
    assert res.engine.startswith("Pipelined") and res.spec.has_recurrence
    assert res.lava.sum() > 10 and res.mismatches == 0
    fixed = verify(m, x, bias_timing=timing, fixed_point=True)
    assert fixed.engine == "emulate" and fixed.lava.sum() > 10 and fixed.mismatches == 0
    # deliberately wrong conversions, run in Lava, against the model's own spikes (Pipelined)
    spec = convert(m, (6,), bias_timing=timing)
    l0 = spec.layers[0]
    xp = np.concatenate([x.numpy(), np.zeros((spec.output_lag(), *x.shape[1:]))])
    ours = res.ours  # the model's spikes, pipeline lag removed
    bias_ff = m[0].bias.detach().double().numpy()
    for wrong in (replace(l0, recurrent=l0.recurrent.T), replace(l0, bias=bias_ff)):
        lava = _lava_of(replace(spec, layers=(wrong, spec.layers[1])), xp)
        assert int((lava[spec.output_lag() :] != ours).sum()) > 0


@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed,timing", [(0, "synaptic"), (1, "lava"), (2, "synaptic")])
def test_emulate_equals_lava_fixed_point_with_recurrent_dense(seed, timing):
    """Random fixed-point specs with a recurrent Dense in every layer (mixed / excitatory /
    inhibitory / diagonal, odd mantissas, beyond 8 bits, negative and positive weight_exp, 6-8
    weight bits, slow and fast decays, delays or not): spikes, u and v bit for bit. The check
    can fail: emulating the spec with its recurrent matrices transposed or dropped gives another
    u (the spikes may agree where a layer saturates)."""
    from dataclasses import replace

    from fixed_specs import random_fixed_spec, random_spikes
    from lava_fixed_harness import run_lava_fixed

    from lava_bridge.emulator import emulate

    spec = random_fixed_spec(seed, recurrent=True, bias=True, bias_timing=timing)
    x = random_spikes(seed, 25, 1, spec.input_size)[:, 0]
    spikes, us, vs = run_lava_fixed(spec, x, record_state=True)
    r = emulate(spec, torch.tensor(x)[:, None], record_state=True)
    for i in range(spec.num_layers):
        where = f"layer {i} of\n{spec.summary()}"
        got = r.layer_spikes[i][:, 0].numpy().astype(np.int64)
        np.testing.assert_array_equal(got, spikes[i], err_msg=f"spikes, {where}")
        np.testing.assert_array_equal(r.u[i][:, 0].numpy(), us[i], err_msg=f"u, {where}")
        np.testing.assert_array_equal(r.v[i][:, 0].numpy(), vs[i], err_msg=f"v, {where}")
    assert all(s.sum() > 0 for s in spikes)
    changes = [lambda l: replace(l, recurrent=None)]
    if any(not np.array_equal(l.recurrent, l.recurrent.T) for l in spec.layers):
        changes.append(lambda l: replace(l, recurrent=l.recurrent.T))  # (diagonal ones: equal)
    for change in changes:
        wrong = replace(spec, layers=tuple(change(l) for l in spec.layers))
        w = emulate(wrong, torch.tensor(x)[:, None], record_state=True)
        assert sum(int((a[:, 0].numpy() != b).sum()) for a, b in zip(w.u, us)) > 0


@pytest.mark.timeout(300)
def test_rsynaptic_spec_runs_in_lava_as_specified():
    """An RSynaptic layer converts with approximate_reset=True (snnTorch 1.0 runs it with
    reset_delay=True only); its spec then runs in Lava float exactly as simulate_spec says and
    in fixed point exactly as emulate says."""
    from lava_bridge import convert, quantize, verify

    torch.manual_seed(3)
    m = nn.Sequential(
        nn.Linear(6, 8),
        snn.RSynaptic(alpha=0.6, beta=0.8, threshold=0.5, linear_features=8, init_hidden=True),
        nn.Linear(8, 4),
        snn.Leaky(
            beta=0.7,
            threshold=0.5,
            init_hidden=True,
            output=True,
            reset_mechanism="zero",
            reset_delay=False,
        ),
    )
    with torch.no_grad():
        m[0].weight.mul_(2.0)
        m[2].weight.mul_(2.0)
    x = (torch.rand(25, 2, 6, generator=torch.Generator().manual_seed(3)) < 0.4).float()
    spec = convert(m, (6,), approximate_reset=True)
    assert spec.layers[0].neuron.kind == "synaptic" and spec.has_recurrence and not spec.exact
    float_res = verify(spec, x)
    assert float_res.engine == "simulate_spec" and float_res.lava.sum() > 5
    assert float_res.mismatches == 0
    fixed = verify(quantize(spec).spec, x)
    assert fixed.engine == "emulate" and fixed.mismatches == 0
