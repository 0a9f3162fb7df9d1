"""Real clients of our Lava artefacts, spike for spike, with Lava's bias timing.

* lava-dl's own netx reader (``lava.lib.dl.netx.hdf5.Network``) loads our netx files and runs
  them in Lava fixed point: equal to :func:`lava_bridge.emulate` (bias-free, biased, delayed).
* A Lava float network built *natively* from the model's weights (``Dense`` + ``LIF(bias_mant=b)``,
  the way Lava users write it, not with ``lava_bridge.build``): equal to
  ``Pipelined(bias_timing=BiasTiming.LAVA)``.

Each comparison is also run once against a deliberately wrong file / timing and must then fail.
"""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from lava_bridge import lava_available

lava_available()  # imports Lava now, before anything sets the start method
pytest.importorskip("lava.magma.core.run_configs", reason="Lava is not installed: run `make test`")
pytest.importorskip("lava.lib.dl.netx", reason="lava-dl is not installed: run `make test`")

from lava_bridge import convert  # noqa: E402
from lava_bridge.emulator import emulate  # noqa: E402
from lava_bridge.netx import export_netx  # noqa: E402
from lava_bridge import QuantizeSettings, quantize  # noqa: E402
from snntorch_async import BiasTiming, DelayedLinear, Pipelined, simulate  # noqa: E402

pytestmark = pytest.mark.lava


def _net(seed: int, *, bias: bool, delays: bool = False, synaptic: bool = False) -> nn.Sequential:
    """A seeded 3-layer 6-10-8-4 net; layer 1 is Synaptic if asked, layer 2 delayed if asked."""
    torch.manual_seed(seed)
    kw = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)
    second = (
        DelayedLinear(10, 8, max_delay=3, seed=seed, bias=bias)
        if delays
        else nn.Linear(10, 8, bias=bias)
    )
    hidden = (
        snn.Synaptic(alpha=0.5, beta=0.8, threshold=0.6, **kw)
        if synaptic
        else snn.Leaky(beta=0.8, threshold=0.6, **kw)
    )
    m = nn.Sequential(
        nn.Linear(6, 10, bias=bias),
        snn.Leaky(beta=0.85, threshold=0.5, **kw),
        second,
        hidden,
        nn.Linear(8, 4, bias=bias),
        snn.Leaky(beta=0.7, threshold=0.5, output=True, **kw),
    )
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("weight"):
                p.mul_(2.5)
            elif name.endswith("bias"):
                p.uniform_(-0.1, 0.45)
    return m


def _spikes(seed: int, T: int, n: int, p: float = 0.4) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, n, generator=g) < p).numpy().astype(np.int64)


def run_netx_in_lava(path, x: np.ndarray) -> np.ndarray:
    """Load ``path`` with lava-dl's ``hdf5.Network`` and run one sample ``x [T, n_in]`` (fixed_pt).

    A file starting with conv layers takes ``x [T, C, H, W]``, fed as netx's ``(W, H, C)``.
    Returns the output layer's spikes ``[T, n_out]`` (int64), on Lava's time axis.
    """
    from lava.lib.dl.netx import hdf5
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer

    T = x.shape[0]
    net = hdf5.Network(net_config=str(path))
    if len(net.inp.shape) == 3:  # a conv input: netx's (x, y, c) order
        data = x.transpose(3, 2, 1, 0)
    else:
        data = x.reshape(T, -1).T
    src = RingBuffer(data=np.ascontiguousarray(data).astype(np.int32))
    sink = Sink(shape=net.out.shape, buffer=T)
    src.s_out.connect(net.inp)
    net.out.connect(sink.a_in)
    try:
        net.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        out = sink.data.get().T.astype(np.int64)
    finally:
        net.stop()
    return out


def _netx_vs_emulate(spec, path, x) -> tuple[int, int]:
    lava = run_netx_in_lava(path, x)
    ours = emulate(spec, torch.tensor(x)[:, None]).spikes[:, 0].numpy().astype(np.int64)
    ours = ours.reshape(ours.shape[0], -1)
    return int((lava != ours).sum()), int(ours.sum())


CASES = {
    "bias-free": dict(bias=False),
    "biased": dict(bias=True),
    "biased-synaptic": dict(bias=True, synaptic=True),
    "delayed-biased": dict(bias=True, delays=True),
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_lava_dl_netx_reader_equals_emulate(tmp_path, case):
    spec = quantize(
        convert(_net(3, **CASES[case]), (6,), bias_timing=BiasTiming.LAVA),
        QuantizeSettings(weight_exp=0),
    ).spec
    path = export_netx(spec, tmp_path / "n.net")
    for seed in (0, 1):
        x = _spikes(seed, 40, 6)
        mismatches, spikes = _netx_vs_emulate(spec, path, x)
        assert spikes > 5  # the output layer spikes
        assert mismatches == 0


@pytest.mark.timeout(180)
def test_lava_dl_check_fails_on_wrong_files(tmp_path):
    """The comparison above can fail: a wrong timing, a wrong weight, a wrong delay."""
    x = _spikes(0, 40, 6)
    # 1. the case: a 'synaptic' spec written with Lava's timing (the opt-in) differs
    syn = quantize(convert(_net(3, bias=True), (6,)), QuantizeSettings(weight_exp=0)).spec
    path = export_netx(syn, tmp_path / "t.net", approximate_bias_timing=torch.tensor(x)[:, None])
    assert _netx_vs_emulate(syn, path, x)[0] > 0
    # 2. one weight changed in the file of a bias-free net
    spec = quantize(convert(_net(3, bias=False), (6,)), QuantizeSettings(weight_exp=0)).spec
    path = export_netx(spec, tmp_path / "w.net")
    with h5py.File(path, "r+") as f:
        w = f["layer/0/weight"][()]
        w[np.unravel_index(np.argmax(w), w.shape)] = 0
        f["layer/0/weight"][...] = w
    assert _netx_vs_emulate(spec, path, x)[0] > 0
    # 3. the delays dropped from a delayed net's file
    spec = quantize(
        convert(_net(3, bias=True, delays=True), (6,), bias_timing="lava"),
        QuantizeSettings(weight_exp=0),
    ).spec
    path = export_netx(spec, tmp_path / "d.net")
    with h5py.File(path, "r+") as f:
        del f["layer/1/delay"]
    assert _netx_vs_emulate(spec, path, x)[0] > 0


def run_native_lava_float(model: nn.Sequential, x: np.ndarray) -> np.ndarray:
    """Lava float network written the way a Lava user writes it: ``Dense(W)`` / ``DelayDense`` +
    ``LIF(du, dv, vth, bias_mant=b)`` per layer, from the model's parameters. Returns ``[T, n_out]``."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import DelayDense, Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF

    T = x.shape[0]
    src = RingBuffer(data=np.ascontiguousarray(x.T).astype(np.float64))
    port, lifs = src.s_out, []
    mods = list(model)
    for lin, nrn in zip(mods[0::2], mods[1::2]):
        w = lin.weight.detach().double().numpy()
        syn = (
            DelayDense(weights=w, delays=lin.delays.numpy().astype(int))
            if isinstance(lin, DelayedLinear)
            else Dense(weights=w)
        )
        beta = torch.broadcast_to(nrn.beta.detach().double(), (w.shape[0],)).numpy()
        alpha = getattr(nrn, "alpha", None)
        du = 1.0 if alpha is None else 1.0 - float(alpha)
        b = 0.0 if lin.bias is None else lin.bias.detach().double().numpy()
        lif = LIF(shape=(w.shape[0],), du=du, dv=1.0 - beta, vth=float(nrn.threshold), bias_mant=b)
        port.connect(syn.s_in)
        syn.a_out.connect(lif.a_in)
        port = lif.s_out
        lifs.append(lif)
    sink = Sink(shape=(lifs[-1].s_out.shape[0],), buffer=T)
    port.connect(sink.a_in)
    try:
        src.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2SimCfg(select_tag="floating_pt"))
        out = sink.data.get().T
    finally:
        src.stop()
    return out


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "seed,synaptic,delays", [(0, False, False), (1, True, False), (2, False, True)]
)
def test_pipelined_lava_timing_equals_native_lava_float(seed, synaptic, delays):
    m = _net(seed, bias=True, synaptic=synaptic, delays=delays)
    x = _spikes(seed + 5, 40, 6)
    native = run_native_lava_float(m, x)
    xt = torch.tensor(x, dtype=torch.float32)[:, None]
    with torch.no_grad():
        ours = simulate(m, xt, scheduler=Pipelined(float64=True, bias_timing=BiasTiming.LAVA))
        synaptic_timing = simulate(m, xt, scheduler=Pipelined(float64=True))
    ours = ours.spikes[:, 0].numpy()
    assert native.sum() > 5
    assert int((ours != native).sum()) == 0
    # the check can fail: the other timing differs from the natively built Lava network
    assert int((synaptic_timing.spikes[:, 0].numpy() != native).sum()) > 0


@pytest.mark.timeout(180)
def test_verify_and_build_honour_lava_timing():
    """lava_bridge.build with Lava's timing (LIF bias_mant, no bias channel): float and fixed."""
    from lava_bridge import verify

    m = _net(1, bias=True, synaptic=True)
    x = torch.tensor(_spikes(9, 30, 6), dtype=torch.float32)[:, None]
    res = verify(m, x, bias_timing=BiasTiming.LAVA)
    assert res.spec.bias_timing == "lava" and res.lava.sum() > 5 and res.mismatches == 0
    fixed = verify(m, x, bias_timing=BiasTiming.LAVA, fixed_point=True)
    assert fixed.engine == "emulate" and fixed.lava.sum() > 5 and fixed.mismatches == 0


def _conv_net(seed: int) -> nn.Sequential:
    """2x8x8 -> Conv 4c3 (pad 1) -> Conv 6c3 + AvgPool 2 -> dense 5, biased, Leaky."""
    torch.manual_seed(seed)
    kw = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)
    m = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        snn.Leaky(beta=0.8, threshold=0.5, **kw),
        nn.Conv2d(4, 6, 3),
        nn.AvgPool2d(2),
        snn.Leaky(beta=0.8, threshold=0.4, **kw),
        nn.Flatten(),
        nn.Linear(6 * 3 * 3, 5),
        snn.Leaky(beta=0.7, threshold=0.5, output=True, **kw),
    )
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("weight"):
                p.mul_(3.0)
            else:
                p.uniform_(-0.05, 0.2)
    return m


@pytest.mark.timeout(240)
def test_lava_dl_reads_conv_layers_and_equals_emulate(tmp_path):
    spec = convert(_conv_net(0), (2, 8, 8), bias_timing="lava")
    assert [bool(l.meta.get("conv")) for l in spec.layers] == [True, True, False]
    fixed = quantize(spec, QuantizeSettings(weight_exp=0)).spec
    path = export_netx(fixed, tmp_path / "c.net")
    wrong = shutil.copy(path, tmp_path / "wrong.net")  # the reader keeps its file open
    with h5py.File(path, "r") as f:
        types = [f[f"layer/{i}/type"][0] for i in range(len(f["layer"]))]
    assert types == [b"input", b"conv", b"conv", b"flatten", b"dense"]
    dense = export_netx(fixed, tmp_path / "d.net", conv_as_dense=True)
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(30, 2, 8, 8, generator=g) < 0.3).numpy().astype(np.int64)
    mismatches, spikes = _netx_vs_emulate(fixed, path, x)
    assert spikes > 5 and mismatches == 0
    assert _netx_vs_emulate(fixed, dense, x)[0] == 0
    # the check can fail: a kernel entry changed in the file
    with h5py.File(wrong, "r+") as f:
        w = f["layer/1/weight"][()]
        w[0, 0, 0, 0] += 40
        f["layer/1/weight"][...] = w
    assert _netx_vs_emulate(fixed, wrong, x)[0] > 0


@pytest.mark.timeout(300)
@pytest.mark.parametrize("timing", ["lava", "synaptic"])
def test_build_uses_lava_conv_and_equals_pipelined_and_emulate(timing):
    """lava_bridge.build: conv layers as Lava's Conv process (float = Pipelined, fixed = emulate)."""
    from lava_bridge import build, verify

    m = _conv_net(1)
    spec = convert(m, (2, 8, 8), bias_timing=timing)
    x = (torch.rand(25, 1, 2, 8, 8, generator=torch.Generator().manual_seed(5)) < 0.3).float()
    built = build(spec, x[:, 0])
    assert [type(s).__name__ for s in built.synapses] == ["Conv", "Conv", "Dense"]
    assert [type(s).__name__ for s in build(spec, x[:, 0], conv_as_dense=True).synapses] == [
        "Dense"
    ] * 3
    res = verify(m, x, bias_timing=timing)
    assert res.lava.sum() > 5 and res.mismatches == 0
    fixed = verify(quantize(spec, QuantizeSettings(weight_exp=0)).spec, x)
    assert fixed.engine == "emulate" and fixed.lava.sum() > 5 and fixed.mismatches == 0


def _recurrent_net(seed: int, *, inhibitory_v: bool) -> nn.Sequential:
    """6-10-4, Lava's bias timing to be: an all-to-all RLeaky (recurrent bias too), then a
    one-to-one RLeaky whose V is all negative (an inhibitory recurrent Dense) if asked."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    kw = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)
    v = (
        -(torch.rand(4, generator=g) * 0.5 + 0.1)
        if inhibitory_v
        else torch.rand(4, generator=g) - 0.3
    )
    m = nn.Sequential(
        nn.Linear(6, 10),
        snn.RLeaky(beta=0.85, threshold=0.5, linear_features=10, **kw),
        nn.Linear(10, 4),
        snn.RLeaky(beta=0.7, threshold=0.5, all_to_all=False, V=v, output=True, **kw),
    )
    with torch.no_grad():
        for lin in (m[0], m[2]):
            lin.weight.mul_(2.5).add_(0.1)
            lin.bias.uniform_(-0.1, 0.3, generator=g)
        m[1].recurrent.weight.mul_(1.5)
        m[1].recurrent.bias.uniform_(-0.1, 0.2, generator=g)
    return m


@pytest.mark.timeout(240)
@pytest.mark.parametrize("inhibitory_v", [False, True], ids=["mixed-V", "inhibitory-V"])
def test_lava_dl_reads_dense_rec_and_equals_emulate(tmp_path, inhibitory_v):
    """Recurrent layers as netx dense_rec: lava-dl's reader builds the recurrent Dense (and reads
    [weight | weight_rec] as one matrix): equal to emulate spike for spike. The check can fail:
    the file's weight_rec transposed, or the layer written as plain dense (recurrence dropped)."""
    m = _recurrent_net(4, inhibitory_v=inhibitory_v)
    spec = quantize(convert(m, (6,), bias_timing="lava"), QuantizeSettings(weight_exp=0)).spec
    if inhibitory_v:
        assert spec.layers[1].recurrent.max() <= 0 < spec.layers[1].weight.max()
    path = export_netx(spec, tmp_path / "r.net")
    wrong = [shutil.copy(path, tmp_path / f"w{k}.net") for k in range(2)]
    with h5py.File(wrong[0], "r+") as f:
        f["layer/0/weight_rec"][...] = f["layer/0/weight_rec"][()].T
    with h5py.File(wrong[1], "r+") as f:
        del f["layer/0/type"]
        f["layer/0"].create_dataset("type", (1,), "S10", [b"dense"])
    x = _spikes(7, 40, 6)
    mismatches, spikes = _netx_vs_emulate(spec, path, x)
    assert spikes > 5 and mismatches == 0
    for w in wrong:
        assert _netx_vs_emulate(spec, w, x)[0] > 0
