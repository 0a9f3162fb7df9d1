"""First contact with bad input: each is refused with a clear one-line error, and no
file is left half-written."""

import errno
import logging
from pathlib import Path

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

import snntorch_async as sa
from snntorch_async.errors import ConfigError, InputError, WriteError

lb = pytest.importorskip("lava_bridge")


def _net(n_in=6, hidden=5, out=3, **neuron):
    torch.manual_seed(0)
    kw = dict(beta=0.9, init_hidden=True, reset_mechanism="zero", reset_delay=False, **neuron)
    return nn.Sequential(
        nn.Linear(n_in, hidden),
        snn.Leaky(**kw),
        nn.Linear(hidden, out),
        snn.Leaky(**kw, output=True),
    )


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and "Fix" in msg, msg
    return msg


# ------------------------------------------------------------------------------------------
# Schedulers and neurons
# ------------------------------------------------------------------------------------------
def test_scheduler_settings_are_keyword_only_and_the_call_is_shown():
    with pytest.raises(ConfigError) as exc:
        sa.RandomAsync(8)
    assert "RandomAsync takes its settings as keywords only" in _one_line(exc)
    assert "RandomAsync(forward_group_size=8)" in str(exc.value)
    with pytest.raises(ConfigError, match="LayerSync takes its settings as keywords only"):
        sa.LayerSync(1)
    assert sa.RandomAsync(forward_group_size=8).forward_group_size == 8


def test_negative_sync_threshold_and_jitter_are_refused():
    with pytest.raises(ConfigError) as exc:
        sa.RandomAsync(sync_threshold=-1)
    assert "sync_threshold must be >= 0" in _one_line(exc) and "got -1" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        sa.MomentumAsync(jitter=-1)
    assert "jitter must be a finite number >= 0" in _one_line(exc)
    assert sa.MomentumAsync(jitter=0.0).jitter == 0.0 and sa.RandomAsync(sync_threshold=0)


def test_beta_outside_0_1_is_reported(caplog):
    model = _net()
    model[1] = snn.Leaky(beta=1.5, init_hidden=True)
    with caplog.at_level(logging.WARNING, logger="snntorch_async.neurons"):
        sa.simulate(model, torch.ones(3, 2, 6))
        sa.simulate(model, torch.ones(3, 2, 6))
    hits = [r.getMessage() for r in caplog.records if "outside [0, 1]" in r.getMessage()]
    assert len(hits) == 1 and "beta = 1.5" in hits[0] and "acts as 1" in hits[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="snntorch_async.neurons"):
        sa.simulate(_net(), torch.ones(3, 2, 6))
    assert not [r for r in caplog.records if "outside [0, 1]" in r.getMessage()]


def test_delays_set_out_of_range_after_construction_are_refused_by_simulate():
    model = nn.Sequential(
        sa.DelayedLinear(4, 3, max_delay=2, seed=0),
        snn.Leaky(beta=0.9, init_hidden=True, output=True),
    )
    sa.simulate(model, torch.ones(4, 2, 4))
    with torch.no_grad():
        model[0].delays.fill_(70)
    for scheduler in (sa.LayerSync(), sa.RandomAsync(forward_group_size=2)):
        with pytest.raises(
            ConfigError,
            match=r"delays must be integers in 0\.\.62.*got values in "
            r"70\.\.70.*Fix: clip",
        ):
            sa.simulate(model, torch.ones(4, 2, 4), scheduler=scheduler)


def test_initial_state_of_the_wrong_kind_or_batch():
    model, x = _net(), torch.ones(4, 2, 6)
    res = sa.simulate(model, x)
    with pytest.raises(InputError) as exc:
        sa.simulate(model, x, initial_state=5)
    assert "initial_state does not fit this simulation" in _one_line(exc)
    with pytest.raises(InputError, match=r"expected shape \[3, 5\], got \[2, 5\].*batch size 3"):
        sa.simulate(model, torch.ones(4, 3, 6), initial_state=res.final_state)
    with pytest.raises(InputError, match="got AsyncState.*under LayerSync"):
        async_res = sa.simulate(model, x, scheduler=sa.RandomAsync())
        sa.simulate(model, x, initial_state=async_res.final_state)
    sa.simulate(model, x, initial_state=res.final_state)  # the right one still works


def test_evaluate_with_data_that_is_not_batches():
    with pytest.raises(InputError) as exc:
        sa.evaluate(_net(), 5)
    assert "expects data as an iterable of batches" in _one_line(exc) and "got int" in str(
        exc.value
    )
    with pytest.raises(InputError, match="takes the model first"):
        sa.evaluate(5, [])


# ------------------------------------------------------------------------------------------
# Quantization
# ------------------------------------------------------------------------------------------
def test_quantize_settings_and_a_threshold_that_would_become_zero():
    with pytest.raises(ValueError, match="num_weight_bits must be in 1..8, a whole number.*7.5"):
        lb.QuantizeSettings(num_weight_bits=7.5)
    model = _net()
    with torch.no_grad():
        model[0].weight.mul_(1e6)
    spec = lb.convert(model, input_shape=(6,))
    with pytest.raises(lb.LoihiLimitError, match=r"becomes vth = 0 in fixed point.*Fix"):
        lb.quantize(spec)
    assert lb.quantize(lb.convert(_net(), input_shape=(6,))).spec.fixed_point  # normal weights


# ------------------------------------------------------------------------------------------
# Files: unwritable paths, failing writers, malformed files
# ------------------------------------------------------------------------------------------
def _fixed(spec):
    return lb.quantize(spec, lb.QuantizeSettings(weight_exp=0)).spec


def _lava_spec():  # netx files need Lava's bias timing; the other writers take any spec
    return lb.convert(_net(), input_shape=(6,), bias_timing="lava")


WRITERS = {
    "spec": (".npz", lambda spec, path: spec.save(path)),
    "netx": (".h5", lambda spec, path: lb.export_netx(_fixed(spec), path)),
    "nir": (".nir", lambda spec, path: lb.export_nir(spec, path)),
}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_writing_into_a_missing_folder(fmt, tmp_path):
    suffix, write = WRITERS[fmt]
    spec = _lava_spec()
    with pytest.raises(WriteError) as exc:
        write(spec, tmp_path / "no" / f"net{suffix}")
    assert "Cannot write the " in _one_line(exc)
    assert f"create the folder {tmp_path / 'no'} first" in str(exc.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_a_writer_failing_midway_leaves_nothing(fmt, tmp_path, monkeypatch):
    suffix, write = WRITERS[fmt]
    spec = _lava_spec()
    netx_spec = _fixed(spec)  # quantized before the writers are broken
    if fmt == "netx":
        write = lambda spec, path: lb.export_netx(netx_spec, path)  # noqa: E731
    if fmt == "spec":
        real = np.savez

        def half(file, *a, **k):  # writes the archive, keeps half of it, then the disk is full
            real(file, *a, **k)
            data = Path(file).read_bytes()
            Path(file).write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(np, "savez", half)
    else:  # HDF5 (netx, NIR): the file is created, then a dataset cannot be written
        import h5py

        def full(self, *a, **k):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(h5py.Group, "create_dataset", full)
    with pytest.raises(WriteError) as exc:
        write(spec, tmp_path / f"net{suffix}")
    assert "No space left on device" in _one_line(exc) and "Nothing was written" in str(exc.value)
    assert list(tmp_path.iterdir()) == []  # no partial file, no temporary


def test_existing_file_survives_a_failed_rewrite(tmp_path, monkeypatch):
    spec = lb.convert(_net(), input_shape=(6,))
    path = spec.save(tmp_path / "net.npz")
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(WriteError):
        spec.save(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["net.npz"]


def test_malformed_files_are_diagnosed(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(lb.SpecFormatError) as exc:
        lb.load(junk)
    assert "is not an .npz archive (300 bytes" in _one_line(exc)
    assert "pickled" not in str(exc.value)
    bad_nir = tmp_path / "bad.nir"
    bad_nir.write_bytes(b"not hdf5 at all")
    with pytest.raises(lb.SpecFormatError) as exc:
        lb.import_nir(bad_nir)
    assert "cannot be read as a NIR graph" in _one_line(exc)
    good = tmp_path / "good.nir"
    lb.export_nir(lb.convert(_net(), input_shape=(6,)), good)
    cut = tmp_path / "cut.nir"
    cut.write_bytes(good.read_bytes()[:500])
    with pytest.raises(lb.SpecFormatError, match="truncated, damaged or not a NIR HDF5 file"):
        lb.import_nir(cut)
