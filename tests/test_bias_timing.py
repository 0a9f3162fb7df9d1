"""Bias timing (``BiasTiming``): one definition, recorded per layer in the spec (file format v2,
v1 files read as "synaptic"), honoured by Pipelined, simulate_spec, emulate and netx (numpy/torch
only; the real-Lava and lava-dl comparisons are in test_lava_dl.py)."""

from __future__ import annotations

import json
import logging
import zipfile

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from lava_bridge import ConversionError, SpecFormatError, convert, load, simulate_spec
from lava_bridge.netx import bias_timing_mismatch, export_netx, read_netx
from lava_bridge import QuantizeSettings, quantize
from lava_bridge.spec import BIAS_TIMINGS, FORMAT_VERSION
from snntorch_async import BiasTiming, ConfigError, LayerSync, Pipelined, Record, simulate
from test_pipelined import CASES, _inputs, _kw, _lin, random_model


def test_one_vocabulary_in_both_packages():
    assert BIAS_TIMINGS == tuple(t.value for t in BiasTiming)  # spec.py cannot import torch
    assert BiasTiming.coerce("lava") is BiasTiming.LAVA
    with pytest.raises(ConfigError, match="expected one of BiasTiming.SYNAPTIC.*got 'late'"):
        Pipelined(bias_timing="late")
    with pytest.raises(ConversionError, match="bias_timing"):
        convert(random_model(0), (10,), bias_timing="late")


def test_lava_timing_adds_the_bias_to_v_from_step_0():
    # strong positive bias, no input: with Lava's timing every layer integrates from step 0
    m = nn.Sequential(
        _lin(1, 1, 0.0, b=1.0),
        snn.Leaky(beta=0.0, threshold=0.5, **_kw()),
        _lin(1, 1, 0.0, b=1.0),
        snn.Leaky(beta=0.0, threshold=0.5, output=True, **_kw()),
    )
    res = simulate(
        m,
        torch.zeros(4, 1, 1),
        scheduler=Pipelined(bias_timing=BiasTiming.LAVA),
        record=Record(layer_spikes=True),
    )
    assert res.layer_spikes[0][:, 0, 0].tolist() == [1, 1, 1, 1]
    assert res.layer_spikes[1][:, 0, 0].tolist() == [1, 1, 1, 1]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_pipelined_lava_timing_equals_the_lava_timed_spec(case):
    m = random_model(**case)
    shape = (1, 4, 4) if case.get("conv") else (10,)
    x = _inputs(case["seed"] + 100, 22, shape)
    sched = Pipelined(float64=True, bias_timing="lava")
    pipe = simulate(m, x, scheduler=sched).spikes.detach().numpy()
    spec = convert(m, shape, bias_timing="lava")
    assert {l.bias_timing for l in spec.layers} == {"lava"}
    ref = simulate_spec(spec, x.numpy())
    assert ref.sum() > 0
    assert (pipe == ref).all()
    # and the timing matters: the default spec (synaptic) runs differently on these nets
    assert (simulate_spec(convert(m, shape), x.numpy()) != ref).any()


def test_synaptic_timing_still_is_layersync_shifted():
    m = random_model(0)
    x = _inputs(0, 20, (10,))
    sync = simulate(m, x, scheduler=LayerSync()).spikes
    padded = torch.cat([x, torch.zeros(3, *x.shape[1:])])
    pipe = simulate(m, padded, scheduler=Pipelined(float64=True, bias_timing="synaptic")).spikes
    assert torch.equal(pipe[3:], sync)


def test_spec_records_the_timing_and_reads_version_1_files(tmp_path):
    spec = convert(random_model(1), (10,), bias_timing=BiasTiming.LAVA)
    back = load(spec.save(tmp_path / "s.npz"))
    assert back.equals(spec) and back.bias_timing == "lava"
    assert "bias (lava)" in spec.summary()
    # a version-1 file (no timing field) meant the synaptic channel
    old = convert(random_model(1), (10,)).save(tmp_path / "v1.npz")
    with zipfile.ZipFile(old) as z:
        files = {n: z.read(n) for n in z.namelist()}
    with np.load(old) as npz:
        header = json.loads(str(npz["header"]))
    header["version"] = 1
    for layer in header["layers"]:
        del layer["bias_timing"]
    arrays = {k[:-4]: np.load(old)[k[:-4]] for k in files if k != "header.npy"}
    np.savez(tmp_path / "v1b.npz", header=np.array(json.dumps(header)), **arrays)
    v1 = load(tmp_path / "v1b.npz")
    assert v1.bias_timing == "synaptic" and v1.version == FORMAT_VERSION
    assert v1.equals(convert(random_model(1), (10,)))
    with pytest.raises(SpecFormatError, match="different bias timings"):
        from dataclasses import replace

        mixed = (replace(spec.layers[0], bias_timing="synaptic"), *spec.layers[1:])
        _ = replace(spec, layers=mixed).bias_timing


def _fixed(timing):
    from test_netx import _model  # one beta/threshold per layer, as netx stores them

    return quantize(
        convert(_model(0), (6,), bias_timing=timing), QuantizeSettings(weight_exp=0)
    ).spec


def test_netx_opt_in_reports_the_measured_mismatch(tmp_path, caplog):
    syn = _fixed("synaptic")
    x = (torch.rand(30, 3, 6, generator=torch.Generator().manual_seed(4)) < 0.35).float()
    measured = bias_timing_mismatch(syn, x)
    assert measured.mismatches > 0 and measured.compared == 30 * 3 * syn.output_size
    assert bias_timing_mismatch(_fixed("lava"), x).mismatches == 0
    with pytest.raises(ConversionError, match="approximate_bias_timing=inputs"):
        export_netx(syn, tmp_path / "a.net")
    assert not (tmp_path / "a.net").exists()
    with caplog.at_level(logging.WARNING, logger="lava_bridge.netx"):
        path = export_netx(syn, tmp_path / "b.net", approximate_bias_timing=x)
    assert f"{measured.mismatches} / {measured.compared} output spike slots differ" in caplog.text
    assert read_netx(path).bias_timing == "lava"


def test_netx_timing_conflicts_names_the_biased_synaptic_layers():
    from lava_bridge.netx import netx_timing_conflicts

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 3, bias=True),
        snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="zero", reset_delay=False),
        nn.Linear(3, 2, bias=False),
        snn.Leaky(
            beta=0.9, init_hidden=True, output=True, reset_mechanism="zero", reset_delay=False
        ),
    )
    assert netx_timing_conflicts(convert(model, input_shape=(4,))) == [0]  # the bias-free one: no
    assert netx_timing_conflicts(convert(model, input_shape=(4,), bias_timing="lava")) == []
