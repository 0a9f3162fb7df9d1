"""tonic event streams -> time-major tensors (synthetic events in tonic's format; no downloads)."""

import numpy as np
import pytest
import torch

tonic = pytest.importorskip("tonic", reason="tonic is in the [data] extra: pip install tonic")

from snntorch_async.data.tonic import (  # noqa: E402
    TONIC_DATASETS,
    DatasetNotFoundError,
    EventFrames,
    SyntheticEvents,
    collate_padded,
    events_to_frames,
    load_tonic,
    missing_files,
    synthetic_events,
)


def test_frames_equal_tonic_toframe_and_count_events_by_hand():
    # Golden by hand: events in a 3x2 sensor, 2 polarities, windows [0, 50) and [50, 100); the
    # last event sits exactly at the end time, which tonic's half-open windows leave out.
    ev = np.zeros(5, dtype=[("x", int), ("y", int), ("t", int), ("p", int)])
    ev["x"], ev["y"], ev["t"], ev["p"] = (
        [0, 2, 2, 1, 0],
        [0, 1, 1, 0, 0],
        [0, 10, 60, 90, 100],
        [0, 1, 1, 0, 1],
    )
    frames = events_to_frames(ev, (3, 2, 2), time_window=50)
    assert frames.shape == (2, 2, 2, 3)  # [T, p, y, x]
    assert frames.dtype == torch.float32
    expected = torch.zeros(2, 2, 2, 3)
    expected[0, 0, 0, 0] = 1  # t=0, p=0, y=0, x=0
    expected[0, 1, 1, 2] = 1  # t=10
    expected[1, 1, 1, 2] = 1  # t=60
    expected[1, 0, 0, 1] = 1  # t=90
    assert torch.equal(frames, expected)
    ref = tonic.transforms.ToFrame(sensor_size=(3, 2, 2), time_window=50)(ev)
    assert torch.equal(frames, torch.as_tensor(ref, dtype=torch.float32))


def test_audio_events_t_x_p_and_binary_clamp():
    ev = np.zeros(3, dtype=[("t", int), ("x", int), ("p", int)])
    ev["t"], ev["x"], ev["p"] = [0, 1, 2], [5, 5, 6], [0, 0, 0]
    frames = events_to_frames(ev, (10, 1, 1), n_time_bins=1)
    assert frames.shape == (1, 1, 10)
    assert frames[0, 0, 5] == 2
    assert events_to_frames(ev, (10, 1, 1), n_time_bins=1, binary=True)[0, 0, 5] == 1


def test_events_to_frames_rejects_bad_arguments():
    ev = synthetic_events(10, (4, 4, 2))
    with pytest.raises(ValueError, match="exactly one of n_time_bins or time_window"):
        events_to_frames(ev, (4, 4, 2))
    with pytest.raises(ValueError, match="structured array with fields x, y, t, p"):
        events_to_frames(np.zeros((10, 4)), (4, 4, 2), n_time_bins=2)


def test_collate_pads_to_longest_time_major():
    a, b = torch.ones(3, 2, 4), 2 * torch.ones(5, 2, 4)
    x, y = collate_padded([(a, 1), (b.numpy(), 7)])
    assert x.shape == (5, 2, 2, 4) and x.dtype == torch.float32
    assert torch.equal(x[:3, 0], a) and torch.all(x[3:, 0] == 0)
    assert torch.equal(x[:, 1], b)
    assert y.tolist() == [1, 7]
    with pytest.raises(ValueError, match="different feature shapes"):
        collate_padded([(torch.ones(2, 3), 0), (torch.ones(2, 4), 0)])


def test_synthetic_dataset_is_deterministic_and_feeds_simulate():
    from snntorch_async import simulate
    from snntorch_async.app.zoo import build_zoo_model

    ds = SyntheticEvents(4, (34, 34, 2), num_classes=2, events_per_sample=50, seed=3)
    e0, y0 = ds[1]
    assert e0.dtype.names == ("x", "y", "t", "p") and y0 == 1
    assert np.array_equal(e0, ds[1][0])
    frames = EventFrames(ds, (34, 34, 2), n_time_bins=5, binary=True)
    x, y = collate_padded([frames[i] for i in range(4)])
    assert x.shape == (5, 4, 2, 34, 34) and set(x.unique().tolist()) <= {0.0, 1.0}
    out = simulate(build_zoo_model("nmnist_mlp", hidden=8), x)
    assert out.spikes.shape == (5, 4, 10)


@pytest.mark.parametrize("name", sorted(TONIC_DATASETS))
def test_missing_dataset_names_the_file_and_where_to_put_it(tmp_path, name):
    info = TONIC_DATASETS[name]
    expected = tmp_path / info.tonic_class / info.train_file
    assert missing_files(name, tmp_path) == [expected]
    with pytest.raises(DatasetNotFoundError, match=f"place it at {expected}"):
        load_tonic(name, tmp_path)


def test_file_names_match_the_installed_tonic():
    for info in TONIC_DATASETS.values():
        cls = getattr(tonic.datasets, info.tonic_class)
        assert tuple(cls.sensor_size) == info.sensor_size
        names = {
            v
            for k, v in vars(cls).items()
            if isinstance(v, str) and k.endswith(("filename", "zip"))
        }
        assert {info.train_file, info.test_file} <= names, (info.tonic_class, names)


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="Unknown tonic dataset 'mnist'; expected one of"):
        load_tonic("mnist", "data")
