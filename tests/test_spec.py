"""NetworkSpec: validation, lossless .npz round trip, versioning and bad files (numpy only)."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lava_bridge import (
    FORMAT_VERSION,
    LayerSpec,
    NetworkSpec,
    NeuronSpec,
    SpecFormatError,
    SpecVersionError,
    load,
)


def random_spec(
    seed: int, *, fixed: bool = False, layers: int = 2, delays: bool = True, bias: bool = True
):
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(1, 7)) for _ in range(layers + 1)]
    out = []
    for i in range(layers):
        n_in, n = sizes[i], sizes[i + 1]
        if fixed:
            w = rng.integers(-256, 256, (n, n_in))
            nrn = NeuronSpec(
                du=rng.integers(0, 4096, n),
                dv=rng.integers(0, 4096, n),
                vth=rng.integers(0, 2**17, n),
                kind="synaptic",
                source_reset="subtract",
                source_reset_delay=True,
            )
            b = rng.integers(-256, 256, n) if bias and rng.random() < 0.7 else None
        else:
            w = rng.normal(size=(n, n_in))
            nrn = NeuronSpec(du=rng.random(n), dv=rng.random(n), vth=rng.random(n) + 0.1)
            b = rng.normal(size=n) if bias and rng.random() < 0.7 else None
        d = rng.integers(0, 63, (n, n_in)) if delays and rng.random() < 0.6 else None
        out.append(
            LayerSpec(
                name=f"net.{2 * i + 1}",
                weight=w,
                neuron=nrn,
                shape=(n,),
                delay=d,
                bias=b,
                weight_exp=int(rng.integers(-8, 8)) if fixed else 0,
                bias_exp=int(rng.integers(-8, 8)) if fixed else 0,
                source=["linear", "delayed-linear", "dense"][i % 3],
                meta={"scale": float(rng.random()), "note": "αβ"},
            )
        )
    return NetworkSpec(
        layers=tuple(out),
        input_shape=(sizes[0],),
        dt=float(rng.random()) + 0.5,
        fixed_point=fixed,
        meta={"seed": seed},
    )


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), fixed=st.booleans(), layers=st.integers(1, 3))
def test_save_load_round_trip_is_lossless(tmp_path_factory, seed, fixed, layers):
    spec = random_spec(seed, fixed=fixed, layers=layers)
    path = spec.save(tmp_path_factory.mktemp("spec") / "net")
    assert path.suffix == ".npz"
    back = load(path)
    assert back.equals(spec)
    for a, b in zip(spec.layers, back.layers):
        assert a.weight.dtype == b.weight.dtype == (np.int64 if fixed else np.float64)
        assert np.array_equal(a.weight, b.weight)  # bit for bit (float64 survives exactly)
    assert NetworkSpec.load(path).equals(spec)


def test_arrays_are_read_only_copies():
    w = np.ones((2, 3))
    spec = NetworkSpec(
        layers=(
            LayerSpec(
                name="a", weight=w, shape=(2,), neuron=NeuronSpec(du=[1, 1], dv=[0, 0], vth=[1, 1])
            ),
        ),
        input_shape=(3,),
    )
    w[0, 0] = 5.0
    assert spec.layers[0].weight[0, 0] == 1.0
    with pytest.raises(ValueError):
        spec.layers[0].weight[0, 0] = 2.0


def _one_layer(**kw):
    args = dict(
        name="l0",
        weight=np.ones((2, 3)),
        shape=(2,),
        neuron=NeuronSpec(du=np.ones(2), dv=np.zeros(2), vth=np.ones(2)),
    )
    args.update(kw)
    return LayerSpec(**args)


def test_validation_errors_say_what_and_where():
    with pytest.raises(
        SpecFormatError, match=r"layers\[0\] \('l0'\)\.weight: expected shape \[2, 4\]"
    ):
        NetworkSpec(layers=(_one_layer(),), input_shape=(4,))
    with pytest.raises(SpecFormatError, match="integer delays"):
        NetworkSpec(layers=(_one_layer(delay=np.zeros((2, 3))),), input_shape=(3,))
    with pytest.raises(SpecFormatError, match=">= 0 time steps"):
        NetworkSpec(layers=(_one_layer(delay=-np.ones((2, 3), dtype=int)),), input_shape=(3,))
    with pytest.raises(SpecFormatError, match="NaN"):
        NetworkSpec(layers=(_one_layer(weight=np.full((2, 3), np.nan)),), input_shape=(3,))
    with pytest.raises(SpecFormatError, match="quantize"):
        NetworkSpec(
            layers=(_one_layer(weight=np.full((2, 3), 0.5)),), input_shape=(3,), fixed_point=True
        )
    with pytest.raises(SpecFormatError, match="at least one layer"):
        NetworkSpec(layers=(), input_shape=(3,))
    with pytest.raises(SpecFormatError, match="neuron kind"):
        NetworkSpec(
            layers=(
                _one_layer(
                    neuron=NeuronSpec(
                        du=np.ones(2), dv=np.zeros(2), vth=np.ones(2), kind="izhikevich"
                    )
                ),
            ),
            input_shape=(3,),
        )
    with pytest.raises(SpecVersionError, match="version"):
        NetworkSpec(layers=(_one_layer(),), input_shape=(3,), version=FORMAT_VERSION + 1)


def test_file_from_another_version_is_refused(tmp_path):
    path = random_spec(1).save(tmp_path / "a.npz")
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    header = json.loads(str(data["header"]))
    header["version"] = FORMAT_VERSION + 1
    data["header"] = np.array(json.dumps(header))
    np.savez(tmp_path / "b.npz", **data)
    with pytest.raises(
        SpecVersionError,
        match=rf"format version {FORMAT_VERSION + 1}.*reads version {FORMAT_VERSION}",
    ):
        load(tmp_path / "b.npz")


def test_truncated_file_is_refused(tmp_path):
    path = random_spec(2).save(tmp_path / "a.npz")
    raw = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SpecFormatError, match="truncated or not an .npz"):
        load(tmp_path / "cut.npz")


def test_npz_holding_objects_is_refused_without_unpickling(tmp_path):
    path = random_spec(3).save(tmp_path / "a.npz")
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    data["layer0.weight"] = np.array([{"evil": 1}], dtype=object)
    np.savez(tmp_path / "obj.npz", **data)
    with pytest.raises(SpecFormatError, match="pickled Python objects"):
        load(tmp_path / "obj.npz")


def test_other_bad_files(tmp_path):
    with pytest.raises(SpecFormatError, match="does not exist"):
        load(tmp_path / "missing.npz")
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))
    with pytest.raises(SpecFormatError, match="not a network spec"):
        load(tmp_path / "plain.npz")
    path = random_spec(4, layers=1).save(tmp_path / "a.npz")
    with zipfile.ZipFile(path) as z:
        kept = {n: z.read(n) for n in z.namelist() if "neuron.vth" not in n}
    with zipfile.ZipFile(tmp_path / "lack.npz", "w") as z:
        for n, b in kept.items():
            z.writestr(n, b)
    with pytest.raises(SpecFormatError, match="lacks the entry"):
        load(tmp_path / "lack.npz")


def test_lava_bridge_imports_without_torch_and_lava():
    code = (
        "import sys, lava_bridge; from lava_bridge import NetworkSpec, load, check_loihi_limits;"
        "assert 'torch' not in sys.modules, 'torch'; assert 'lava' not in sys.modules, 'lava'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
