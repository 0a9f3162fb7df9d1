"""Pipelined ≡ a real Lava float network with a recurrent Dense (LIF.s_out → Dense → LIF.a_in),
spike for spike, on a seeded RLeaky layer with Lava's reset rule (zero, reset_delay=False)."""

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


def _lava_recurrent(w, wrec, beta, thr, x):
    """x ``[T, NIN]`` → output spikes ``[T + 1, N]`` of a Lava LIF layer with a recurrent Dense."""
    steps = x.shape[0] + 1
    src = Source(data=np.concatenate([x, np.zeros((1, x.shape[1]))]).T)
    ff = Dense(weights=w)
    rec = Dense(weights=wrec)
    lif = LIF(shape=(N,), du=1.0, dv=1.0 - beta, vth=thr, bias_mant=0.0)
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
