"""The native forward-step kernel equals the torch code bit for bit, and the random order is uniform.

The native kernel (``snntorch_async/engine/_native/async_kernel.c``) runs the asynchronous
engine's forward steps for Linear + Leaky networks in CPU inference. Every test here runs the same
simulation twice — kernel on, kernel off (the torch code) — and requires identical spikes,
membranes, counters and carried-over state. ``SimulationResult.backend`` says which ran.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import re
import warnings
from pathlib import Path

import pytest
import snntorch as snn
import torch
from torch import nn

import snntorch_async as sa
from snntorch_async.engine import kernel_build, native
from random_models import mlp

# the kernel can run: a C compiler (compile on first use) or a prebuilt library (a wheel)
needs_compiler = pytest.mark.skipif(
    native._compiler() is None and not native.PREBUILT.exists(),
    reason="no C compiler and no prebuilt kernel on this machine (the kernel is optional)",
)
# the test itself compiles a library
needs_cc = pytest.mark.skipif(native._compiler() is None, reason="no C compiler on this machine")
STRATEGIES = [sa.RandomAsync, sa.MomentumAsync, sa.LayerOrderedAsync]
REC = sa.Record(membranes=True, layer_spikes=True)


def _inputs(seed, T=8, B=5, n=20, p=0.4, graded=False):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand((T, B, n), generator=g) < p).float()
    if graded:
        x = x * (0.2 + torch.rand((T, B, n), generator=g))
    return x


def _run_both(net, x, sched):
    """The simulation with the kernel allowed (``r1``) and switched off (``r2``)."""
    with torch.no_grad():
        with native.use_native(True):
            r1 = sa.simulate(net, x, scheduler=sched, record=REC)
        with native.use_native(False):
            r2 = sa.simulate(net, x, scheduler=sched, record=REC)
    assert r2.backend == "torch"
    return r1, r2


def _assert_identical(r1, r2):
    for a, b in zip(r1.layer_spikes, r2.layer_spikes):
        assert torch.equal(a, b)
    for a, b in zip(r1.membranes, r2.membranes):
        assert torch.equal(a, b)
    assert torch.equal(r1.forward_steps, r2.forward_steps)
    assert torch.equal(r1.synops, r2.synops)
    assert torch.equal(r1.spike_counts, r2.spike_counts)
    s1, s2 = r1.final_state, r2.final_state
    for a, b in zip(s1.pending, s2.pending):
        assert torch.equal(a, b)
    for a, b in zip(s1.priority, s2.priority):
        assert torch.equal(a, b)


@needs_compiler
def test_kernel_builds():
    assert native.available()


@needs_compiler
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("F", [1, 2, 5])
@pytest.mark.parametrize("prioritize_input", [True, False])
def test_kernel_equals_torch_code(strategy, F, prioritize_input):
    net = mlp((20, 24, 16, 6))
    x = _inputs(F)
    sched = strategy(forward_group_size=F, prioritize_input=prioritize_input, seed=3)
    r1, r2 = _run_both(net, x, sched)
    assert r1.backend == "native"  # the kernel ran the time steps
    assert r1.layer_spikes[0].sum() > 0 and r1.layer_spikes[-1].sum() > 0  # real activity
    _assert_identical(r1, r2)


@needs_compiler
@pytest.mark.parametrize(
    "reset,reset_delay,bias,per_neuron_thr,full_eval,graded",
    [
        ("zero", False, True, False, True, False),
        ("zero", True, False, True, False, False),
        ("subtract", True, True, True, True, True),
        ("subtract", False, False, False, False, False),
        ("none", True, True, False, True, True),
        ("none", False, True, True, False, False),
    ],
)
def test_kernel_equals_torch_code_every_neuron_setting(
    reset, reset_delay, bias, per_neuron_thr, full_eval, graded
):
    net = mlp(
        (20, 24, 16, 6),
        reset=reset,
        reset_delay=reset_delay,
        bias=bias,
        per_neuron_thr=per_neuron_thr,
        seed=7,
    )
    x = _inputs(11, graded=graded)
    for strategy, F in itertools.product(STRATEGIES, (1, 4)):
        sched = strategy(
            forward_group_size=F,
            full_layer_evaluation=full_eval,
            prioritize_input=not graded,
            seed=5,
        )
        r1, r2 = _run_both(net, x, sched)
        assert r1.backend == "native"
        _assert_identical(r1, r2)


@needs_compiler
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_kernel_equals_torch_code_with_stop_rules(strategy):
    net = mlp((20, 24, 16, 6), seed=2)
    x = _inputs(4, T=10)
    for kw in (
        dict(max_forward_steps=3),
        dict(stop_on_output=0),
        dict(stop_on_output=2),
        dict(max_forward_steps=6, stop_on_output=1),
    ):
        r1, r2 = _run_both(net, x, strategy(forward_group_size=2, seed=1, **kw))
        assert r1.backend == "native"
        _assert_identical(r1, r2)
        # spikes were really carried over / cut short
        assert any(p.abs().sum() > 0 for p in r1.final_state.pending) or "stop_on_output" in kw


@needs_compiler
def test_kernel_equals_torch_code_deep_and_single_layer():
    for sizes in ((20, 6), (20, 30, 30, 30, 30, 5)):
        net = mlp(sizes, seed=len(sizes))
        x = _inputs(9)
        for strategy in STRATEGIES:
            r1, r2 = _run_both(
                net, x, strategy(forward_group_size=3, seed=2, prioritize_input=False)
            )
            assert r1.backend == "native"
            _assert_identical(r1, r2)


@needs_compiler
def test_kernel_equals_torch_code_on_the_benchmark_shape():
    torch.manual_seed(0)
    net = mlp((784, 256, 256, 10), gain=4.0, thr=1.0)
    x = (torch.rand(4, 8, 784) < 0.2).float()
    for strategy, F in itertools.product(STRATEGIES, (1, 16)):
        r1, r2 = _run_both(net, x, strategy(forward_group_size=F, seed=9))
        assert r1.backend == "native"
        _assert_identical(r1, r2)


@needs_compiler
def test_kernel_not_used_where_it_does_not_apply():
    net = mlp((20, 24, 6))
    x = _inputs(1)
    sched = sa.RandomAsync(forward_group_size=2)
    # gradients are recorded: the native training path (tests/test_native_grad.py)
    assert sa.simulate(net, x, scheduler=sched).backend == "native"
    with torch.no_grad():
        dense = sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=None))
        assert dense.backend == "torch"  # dense groups
        syn = nn.Sequential(
            nn.Linear(20, 8),
            snn.Synaptic(alpha=0.5, beta=0.8, init_hidden=True),
            nn.Linear(8, 6),
            snn.Synaptic(alpha=0.5, beta=0.8, init_hidden=True, output=True),
        )
        assert sa.simulate(syn, x, scheduler=sched).backend == "native"  # Synaptic neurons
        rec = nn.Sequential(
            nn.Linear(20, 8),
            snn.RLeaky(beta=0.8, linear_features=8, init_hidden=True),
            nn.Linear(8, 6),
            snn.Leaky(beta=0.8, init_hidden=True, output=True),
        )
        assert sa.simulate(rec, x, scheduler=sched).backend == "native"  # NEXT_STEP recurrence
        lateral = sa.RandomAsync(
            forward_group_size=2, recurrent_timing=sa.RecurrentTiming.IMMEDIATE
        )
        assert sa.simulate(rec, x, scheduler=lateral).backend == "torch"  # lateral groups
        assert sa.simulate(net, x, scheduler=sched).backend == "native"
        assert sa.simulate(net, x, scheduler=sa.LayerSync()).backend == "torch"


def _c_struct_fields(name: str) -> list[str]:
    """Field names of the C struct ``name`` in the kernel source, in order."""
    src = native.SOURCE.read_text()
    body = re.search(r"typedef struct \{([^{}]*)\}\s*" + name + ";", src).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    names = []
    for decl in body.split(";"):
        decl = decl.strip()
        if decl:
            names += [re.findall(r"\w+", part)[-1] for part in decl.split(",")]
    return names


@pytest.mark.parametrize(
    "struct,c_name",
    [
        (native.KernelPlan, "sa_plan"),
        (native.KernelStep, "sa_step"),
        (native.KernelGrad, "sa_grad"),
    ],
)
def test_ctypes_structures_mirror_the_c_structs(struct, c_name):
    """The Python side and the C side of the boundary agree field by field, by name and size."""
    assert [f[0] for f in struct._fields_] == _c_struct_fields(c_name)
    assert all(ctypes.sizeof(t) == 8 for _, t in struct._fields_)  # int64 and pointers only


# ------------------------------------------------- where the kernel comes from
@pytest.fixture
def fresh_loader(monkeypatch, tmp_path):
    """The loader as before its first use, with an empty cache at ``tmp_path / "cache"``."""
    for name, value in (("_lib", None), ("_tried", False), ("_origin", None)):
        monkeypatch.setattr(native, name, value)
    monkeypatch.setenv("SNNTORCH_ASYNC_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SNNTORCH_ASYNC_NATIVE", raising=False)
    return tmp_path


def _runs_native() -> bool:
    with torch.no_grad():
        r = sa.simulate(
            mlp((20, 24, 6)), _inputs(1), scheduler=sa.RandomAsync(forward_group_size=2)
        )
    return r.backend == "native"


@needs_cc
def test_prebuilt_library_is_used_when_present(fresh_loader, monkeypatch):
    lib = fresh_loader / "pkg" / kernel_build.LIBRARY
    native._compile(native.SOURCE, lib, native._compiler())
    monkeypatch.setattr(native, "PREBUILT", lib)
    monkeypatch.setattr(native, "_compiler", lambda: None)  # only the prebuilt library can serve
    origin = native.library_origin()
    assert origin.kind == "prebuilt" and origin.path == str(lib), origin
    assert _runs_native()
    assert not (fresh_loader / "cache").exists()  # nothing compiled


@needs_cc
def test_fallback_compiles_on_first_use_when_the_prebuilt_library_is_absent(
    fresh_loader, monkeypatch, caplog
):
    monkeypatch.setattr(native, "PREBUILT", fresh_loader / "pkg" / kernel_build.LIBRARY)
    with caplog.at_level(logging.INFO, logger=native.__name__):
        origin = native.library_origin()
    assert origin.kind == "compiled-on-first-use", origin
    assert Path(origin.path).parent == fresh_loader / "cache" and Path(origin.path).exists()
    assert "no prebuilt" in origin.reason
    lines = [r.getMessage() for r in caplog.records if r.name == native.__name__]
    assert len(lines) == 1 and "no prebuilt" in lines[0] and "on first use" in lines[0], lines
    assert _runs_native()


@needs_cc
def test_a_prebuilt_library_from_another_source_is_not_used(fresh_loader, monkeypatch, caplog):
    """An editable install whose C file was edited after the build: compiled again, not run stale."""
    edited = fresh_loader / "async_kernel.c"
    edited.write_bytes(native.SOURCE.read_bytes() + b"\n/* edited */\n")
    lib = fresh_loader / "pkg" / kernel_build.LIBRARY
    native._compile(edited, lib, native._compiler())
    monkeypatch.setattr(native, "PREBUILT", lib)
    with caplog.at_level(logging.INFO, logger=native.__name__):
        origin = native.library_origin()
    assert origin.kind == "compiled-on-first-use", origin
    assert "another async_kernel.c" in origin.reason and kernel_build.source_digest(edited) in (
        origin.reason
    )
    warned = [
        r for r in caplog.records if r.name == native.__name__ and r.levelno == logging.WARNING
    ]
    assert len(warned) == 1 and "another async_kernel.c" in warned[0].getMessage()
    assert _runs_native()


def test_missing_compiler_falls_back_with_one_warning(fresh_loader, monkeypatch):
    monkeypatch.setattr(native, "PREBUILT", fresh_loader / "pkg" / kernel_build.LIBRARY)
    monkeypatch.setattr(native, "_compiler", lambda: None)
    net = mlp((20, 24, 6))
    x = _inputs(1)
    with native.use_native(True), torch.no_grad():
        with pytest.warns(RuntimeWarning, match="native asynchronous kernel is unavailable"):
            r = sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=1))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # only once
            r2 = sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=1))
        origin = native.library_origin()
    assert r.backend == r2.backend == "torch"
    assert torch.equal(r.spikes, r2.spikes)
    assert origin.kind == "unavailable" and "no prebuilt" in origin.reason
    assert "no C compiler" in origin.reason


def test_environment_switch(monkeypatch):
    monkeypatch.setenv("SNNTORCH_ASYNC_NATIVE", "0")
    assert not native.enabled() and native.library() is None
    assert native.library_origin().kind == "switched-off"
    monkeypatch.setenv("SNNTORCH_ASYNC_NATIVE", "1")
    assert native.enabled()


# ------------------------------------------------- the random order is uniform at every step
def _relay(n_in: int) -> nn.Sequential:
    """input i -> hidden i -> output i, one-to-one: every delivered event fires its relay."""
    lin1, lin2 = nn.Linear(n_in, n_in, bias=False), nn.Linear(n_in, n_in, bias=False)
    with torch.no_grad():
        lin1.weight.copy_(2 * torch.eye(n_in))
        lin2.weight.copy_(2 * torch.eye(n_in))
    kw = dict(beta=0.5, threshold=1.0, init_hidden=True, reset_mechanism="zero")
    return nn.Sequential(lin1, snn.Leaky(**kw), lin2, snn.Leaky(output=True, **kw))


@pytest.mark.parametrize("use_kernel", [True, False])
def test_random_order_is_uniform_among_pending_spikes(use_kernel):
    """Three input events pending, F = 1, two forward steps: the first delivery makes a hidden
    spike pending beside the two inputs left. A uniform choice delivers that newcomer second with
    probability 1/3 (it then reaches the output). A scheme that gave newcomers fresh keys without
    the race clock would favour them (probability 1/2 here)."""
    if use_kernel and native._compiler() is None:
        pytest.skip("no C compiler")
    B = 6000
    x = torch.ones(1, B, 3)
    out = {}
    for steps in (1, 2):
        sched = sa.RandomAsync(
            forward_group_size=1, prioritize_input=False, max_forward_steps=steps, seed=123
        )
        with torch.no_grad(), native.use_native(use_kernel):
            out[steps] = sa.simulate(_relay(3), x, scheduler=sched, record=REC).layer_spikes
    first = out[1][0][0]  # after one forward step: the relay of the input delivered first
    assert torch.equal(first.sum(1), torch.ones(B))
    counts = first.sum(0) / B
    assert torch.allclose(counts, torch.full((3,), 1 / 3), atol=0.025), counts
    # same seed: the first delivery is the same in both runs; the output fires only when the
    # hidden newcomer was chosen second
    assert torch.equal(out[2][0][0] * first, first)
    fired = out[2][1][0].sum(1) > 0
    assert abs(fired.float().mean().item() - 1 / 3) < 0.025
    assert torch.equal(out[2][1][0][fired], first[fired])  # causality: the relay of the first


def test_random_groups_are_uniform_subsets():
    """F = 2 out of 4 pending inputs: each of the 6 pairs is delivered first equally often."""
    B = 6000
    x = torch.ones(1, B, 4)
    sched = sa.RandomAsync(
        forward_group_size=2, prioritize_input=False, max_forward_steps=1, seed=7
    )
    with torch.no_grad():
        r = sa.simulate(_relay(4), x, scheduler=sched, record=REC)
    h = r.layer_spikes[0][0]
    assert torch.equal(h.sum(1), torch.full((B,), 2.0))
    code = (h * torch.tensor([1.0, 2.0, 4.0, 8.0])).sum(1).long()
    freq = torch.bincount(code, minlength=16)[[3, 5, 6, 9, 10, 12]].float() / B
    assert torch.allclose(freq, torch.full((6,), 1 / 6), atol=0.02), freq


@needs_compiler
@pytest.mark.parametrize("full_eval", [True, False])
def test_kernel_equals_torch_code_with_candidates_and_settle_steps(full_eval):
    """A bias above threshold makes neurons fire with no input: settle forward steps reach them."""
    net = mlp((20, 24, 16, 6), seed=4)
    with torch.no_grad():
        net[2].bias.fill_(0.2)
        net[2].bias[:5] = 1.0  # above the threshold 0.5: candidates of layer 1
    x = _inputs(2, p=0.05)
    x[2:4] = 0.0  # steps without any input: only settle steps can reach the layers
    for strategy in STRATEGIES:
        sched = strategy(forward_group_size=2, full_layer_evaluation=full_eval, seed=8)
        r1, r2 = _run_both(net, x, sched)
        assert r1.backend == "native"
        assert r1.layer_spikes[1][2:4, :, :5].sum() > 0  # candidates fired without input
        assert (r1.forward_steps[2:4] > 1).all()  # through settle steps
        _assert_identical(r1, r2)


@needs_compiler
def test_spike_forward_steps_record_runs_the_torch_backend_with_the_kernels_spikes():
    """The kernel does not record each spike's forward step: asking for it runs the torch backend
    (``backend == "torch"``), and its spikes and counters are the kernel's, bit for bit."""
    net, x = mlp((20, 24, 6)), _inputs(4)
    order = sa.Record(membranes=True, layer_spikes=True, spike_forward_steps=True)
    for sched in (
        sa.RandomAsync(forward_group_size=2, seed=1),
        sa.MomentumAsync(forward_group_size=1),
    ):
        with torch.no_grad(), native.use_native(True):
            kernel = sa.simulate(net, x, scheduler=sched, record=REC)
            torch_ = sa.simulate(net, x, scheduler=sched, record=order)
        assert kernel.backend == "native" and kernel.spike_forward_steps is None
        assert torch_.backend == "torch"
        _assert_identical(kernel, torch_)
        fs = torch_.forward_steps
        for s, k in zip(torch_.layer_spikes, torch_.spike_forward_steps):
            assert torch.equal(k > 0, s != 0) and bool((k <= fs.view(*fs.shape, 1)).all())
