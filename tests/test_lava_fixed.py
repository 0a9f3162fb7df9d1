"""The emulator equals Lava's fixed_pt simulation bit for bit (spikes, u and v).

Every test runs real Lava (``Loihi2SimCfg(select_tag="fixed_pt")``) on a tiny network built by
``lava_fixed_harness`` directly from Lava's processes, one sample at a time, and compares it with
:func:`lava_bridge.emulate`. Skipped without Lava (run ``make test``, or install the ``[lava]``
extra on Python 3.10).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lava_bridge import lava_available

lava_available()  # imports Lava now, before anything sets the multiprocessing start method (see the harness)

pytest.importorskip(
    "lava.magma.core.run_configs",
    reason="Lava is not installed: run `make test`, or install the [lava] extra on Python 3.10",
)

from fixed_specs import random_fixed_spec, random_spikes  # noqa: E402
from lava_fixed_harness import run_lava_fixed  # noqa: E402

from lava_bridge.emulator import emulate  # noqa: E402
from lava_bridge.spec import LayerSpec, NetworkSpec, NeuronSpec  # noqa: E402

pytestmark = [pytest.mark.lava]


def _assert_bit_exact(spec: NetworkSpec, x: np.ndarray) -> int:
    """Compare one sample ``x`` ``[T, n_in]``; returns the number of spikes compared."""
    spikes, us, vs = run_lava_fixed(spec, x, record_state=True)
    r = emulate(spec, torch.tensor(x)[:, None], record_state=True)
    total = 0
    for i in range(spec.num_layers):
        where = f"layer {i} of\n{spec.summary()}"
        np.testing.assert_array_equal(
            r.layer_spikes[i][:, 0].numpy().astype(np.int64), spikes[i], err_msg=f"spikes, {where}"
        )
        np.testing.assert_array_equal(r.u[i][:, 0].numpy(), us[i], err_msg=f"u, {where}")
        np.testing.assert_array_equal(r.v[i][:, 0].numpy(), vs[i], err_msg=f"v, {where}")
        total += int(spikes[i].sum())
    return total


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", range(6))
def test_random_networks_bit_exact(seed):
    """Mixed / excitatory / inhibitory matrices with odd mantissas, negative and positive weight
    exponents, 6-8 weight bits, slow and fast decays, with and without delays and bias."""
    spec = random_fixed_spec(seed)
    x = random_spikes(seed, 25, 1, spec.input_size)[:, 0]
    assert _assert_bit_exact(spec, x) > 0


def _layer(w, *, e, du, dv, vth, bias=None, bias_exp=0, delay=None, nwb=8):
    w = np.asarray(w)
    n = w.shape[0]
    return LayerSpec(
        name="edge",
        weight=w,
        neuron=NeuronSpec(du=np.full(n, du), dv=np.full(n, dv), vth=np.full(n, vth)),
        shape=(n,),
        bias=None if bias is None else np.asarray(bias),
        bias_exp=bias_exp,
        delay=None if delay is None else np.asarray(delay),
        weight_exp=e,
        num_weight_bits=nwb,
    )


EDGE_CASES = {
    # u passes ±2**23 and wraps (one wrap, as Lava)
    "u_wraps": _layer([[255, 255, 255, -3], [-256, -256, -256, 1]], e=7, du=100, dv=50, vth=131071),
    # a_in << 6 overflows int32 in Lava's arrays
    "int32_activation": _layer(
        [[255, 200, 255, 7], [-256, -256, -256, 3]], e=20, du=4095, dv=10, vth=131071
    ),
    # the accumulation overflows Lava's int32 channel
    "int32_channel": _layer(
        [[255, 200, 255, 7], [-256, -256, -256, 3]], e=24, du=4095, dv=10, vth=1000
    ),
    # v saturates at ±(2**23 - 1) (a large positive bias channel, no leak)
    "v_saturates": _layer(
        [[255, 255, 255, 255], [-255, -255, -255, -255]],
        e=5,
        du=4000,
        dv=0,
        vth=131071,
        bias=[255, -255],
        bias_exp=7,
    ),
    # inhibitory matrix (mirrored clipping), negative states, slow current decay
    "inhibitory_negative_states": _layer(
        [[-3, -5, -255, 0], [-1, -300, 0, 0]],
        e=3,
        du=10,
        dv=4095,
        vth=10,
        bias=[120, 7],
        bias_exp=3,
    ),
    # reduced precision: 5 weight bits, mixed (drops 4 LSBs), odd mantissas, negative exponent
    "five_bits_odd": _layer(
        [[3, 5, -7, 9], [11, -13, 15, 17]],
        e=-2,
        nwb=5,
        du=2000,
        dv=3000,
        vth=1,
        bias=[-7, 9],
        bias_exp=1,
    ),
    # long delays (up to the limit 62) with a negative weight exponent
    "long_delays": _layer(
        [[40, -41, 43, 45], [-50, 60, 70, 81]],
        e=-1,
        du=3000,
        dv=100,
        vth=20,
        delay=[[0, 62, 5, 9], [62, 1, 30, 2]],
    ),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases_bit_exact(case):
    layer = EDGE_CASES[case]
    spec = NetworkSpec(layers=(layer,), input_shape=(4,), fixed_point=True)
    steps = 70 if case == "long_delays" else 14
    x = random_spikes(7, steps, 1, 4, rate=0.6)[:, 0]
    spikes, us, vs = run_lava_fixed(spec, x, record_state=True)
    if case == "u_wraps":
        assert us[0].max() > 2**22 and us[0].min() < -(2**22)
    if case == "v_saturates":
        assert vs[0].min() == -(2**23) + 1
    if case == "long_delays":
        assert spikes[0][63:].sum() > 0  # something arrived through the 62-step synapses
    _assert_bit_exact(spec, x)


@pytest.mark.timeout(120)
def test_deeper_network_with_delays_bit_exact():
    spec = random_fixed_spec(101, sizes=(5, 6, 5, 4, 3), delays=True, bias=True, sign="mixed")
    x = random_spikes(101, 30, 1, 5)[:, 0]
    assert _assert_bit_exact(spec, x) > 0


@pytest.mark.timeout(120)
def test_quantized_model_through_lava_bridge_build_equals_emulator():
    """End to end with the bridge's own builder: model -> convert -> quantize -> run_spec (Lava
    fixed_pt, bias channel included) equals the emulator on every layer."""
    import snntorch as snn
    from torch import nn

    from lava_bridge import convert, run_spec
    from lava_bridge import quantize

    torch.manual_seed(0)
    kw = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)
    model = nn.Sequential(
        nn.Linear(6, 8),
        snn.Leaky(beta=0.8, **kw),
        nn.Linear(8, 3),
        snn.Leaky(beta=0.9, output=True, **kw),
    )
    with torch.no_grad():
        model[0].weight.mul_(3)
        model[2].weight.mul_(3)
    spec = quantize(convert(model, (6,))).spec
    x = random_spikes(3, 20, 1, 6, rate=0.4)[:, 0]
    out = run_spec(spec, x, record_layers=True)  # pads with L zero steps
    ours = emulate(
        spec, torch.cat([torch.tensor(x), torch.zeros(2, 6, dtype=torch.int64)])[:, None]
    )
    for i in range(spec.num_layers):
        np.testing.assert_array_equal(
            np.asarray(out.layer_spikes[i]).astype(np.int64),
            ours.layer_spikes[i][:, 0].numpy().astype(np.int64),
        )
    assert ours.spikes.sum() > 0


@pytest.mark.timeout(180)
@pytest.mark.parametrize("seed", range(4))
def test_conv_layers_bit_exact_with_lava_conv(seed):
    """Random conv → conv → dense specs run with Lava's own ``Conv`` process for the conv layers
    (weight_exp 0, kernels on Lava's grid; strides, padding, sign modes, biases): the emulator's
    conv path equals it in spikes, u and v at every step."""
    from fixed_specs import random_conv_spec

    spec, kernels = random_conv_spec(seed, lava_conv=True)
    x = random_spikes(seed, 15, 1, spec.input_size)[:, 0]
    spikes, us, vs = run_lava_fixed(spec, x, record_state=True, conv_kernels=kernels)
    r = emulate(spec, torch.tensor(x).reshape(15, 1, *spec.input_shape), record_state=True)
    for i in range(spec.num_layers):
        np.testing.assert_array_equal(r.layer_spikes[i][:, 0].numpy().astype(np.int64), spikes[i])
        np.testing.assert_array_equal(r.u[i][:, 0].numpy(), us[i])
        np.testing.assert_array_equal(r.v[i][:, 0].numpy(), vs[i])
    assert sum(int(s.sum()) for s in spikes) > 20
    # the check can fail: Lava's Conv given the kernel flipped in both spatial axes differs
    flipped = {i: k[:, :, ::-1, ::-1] for i, k in kernels.items()}
    wrong, _, _ = run_lava_fixed(spec, x, conv_kernels=flipped)
    assert any(
        not np.array_equal(r.layer_spikes[i][:, 0].numpy().astype(np.int64), wrong[i])
        for i in range(spec.num_layers)
    )
