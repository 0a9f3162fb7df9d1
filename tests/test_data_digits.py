"""The offline digits dataset and the spike encodings."""

import pytest
import torch

pytest.importorskip(
    "sklearn", reason="the digits dataset needs scikit-learn (pip install '.[data]')"
)

from snntorch_async.data import (  # noqa: E402
    CurrentEncoding,
    EpochShuffleSampler,
    LatencyEncoding,
    RateEncoding,
    encode,
    load_digits_spikes,
    make_loader,
)
from snntorch_async.errors import ConfigError  # noqa: E402


def test_shapes_and_dtypes_flat_and_conv():
    d = load_digits_spikes(encoding=RateEncoding(), num_steps=7, seed=0)
    assert len(d.train) + len(d.test) == 1797
    assert abs(len(d.test) - 0.25 * 1797) <= 1
    x, y = next(iter(make_loader(d.train, batch_size=5)))
    assert x.shape == (7, 5, 64) and x.dtype == torch.float32
    assert y.shape == (5,) and y.dtype == torch.int64
    assert set(torch.unique(x).tolist()) <= {0.0, 1.0}
    dc = load_digits_spikes(encoding=RateEncoding(), num_steps=7, seed=0, flatten=False)
    xc, _ = next(iter(make_loader(dc.test, batch_size=3)))
    assert xc.shape == (7, 3, 1, 8, 8)
    # same spikes, only the feature layout differs
    assert torch.equal(dc.train.data.flatten(2), d.train.data)


def test_determinism_per_seed_and_fixed_split():
    a = load_digits_spikes(num_steps=5, seed=1)
    b = load_digits_spikes(num_steps=5, seed=1)
    c = load_digits_spikes(num_steps=5, seed=2)
    assert torch.equal(a.train.data, b.train.data)
    assert not torch.equal(a.train.data, c.train.data)
    # the split does not depend on the encoding seed
    assert torch.equal(a.train.labels, c.train.labels) and torch.equal(a.test.labels, c.test.labels)
    assert a.num_classes == 10 and set(a.train.labels.tolist()) == set(range(10))


def test_rate_matches_intensity_statistically():
    x = torch.tensor([[0.0, 0.1, 0.5, 0.9, 1.0]]).expand(400, 5)
    s = encode(x, encoding=RateEncoding(gain=1.0), num_steps=50, seed=0).float()
    rate = s.mean((0, 1))  # 20,000 Bernoulli draws per feature
    assert rate[0] == 0 and rate[-1] == 1
    assert torch.allclose(rate, x[0], atol=0.015)
    half = encode(x, encoding=RateEncoding(gain=0.5), num_steps=50, seed=0).float().mean((0, 1))
    assert torch.allclose(half, x[0] * 0.5, atol=0.015)


def test_digits_rates_follow_pixel_intensities():
    from sklearn.datasets import load_digits

    d = load_digits_spikes(encoding=RateEncoding(), num_steps=40, seed=0, test_fraction=0.5)
    imgs = torch.as_tensor(load_digits().images, dtype=torch.float32).reshape(-1, 64) / 16
    # mean rate over all samples and steps equals mean intensity (≈ 2.3 M draws)
    all_rates = torch.cat([d.train.data, d.test.data]).float().mean()
    assert abs(float(all_rates) - float(imgs.mean())) < 0.003


def test_latency_one_spike_brighter_first():
    x = torch.tensor([[1.0, 0.5, 0.05, 0.0]])
    s = encode(x, encoding=LatencyEncoding(threshold=0.1), num_steps=11, seed=0)
    assert s.shape == (1, 11, 4)
    counts = s.sum(1)[0]
    assert counts.tolist() == [1, 1, 0, 0]
    t = s[0].argmax(0)
    assert t[0] == 0 and t[1] == 5


def test_current_encoding_is_real_valued_and_repeated():
    x = torch.tensor([[0.25, 0.75]])
    s = encode(x, encoding=CurrentEncoding(), num_steps=3)
    assert s.dtype == torch.float32 and torch.equal(s[0], x.expand(3, 2))


def test_epoch_order_is_a_function_of_seed_and_epoch():
    s = EpochShuffleSampler(20, seed=3)
    s.set_epoch(1)
    a = list(s)
    s.set_epoch(0)
    b = list(s)
    s.set_epoch(1)
    assert list(s) == a and a != b and sorted(a) == list(range(20))


def test_bad_settings():
    with pytest.raises(ConfigError, match="gain > 0"):
        RateEncoding(gain=0)
    with pytest.raises(ConfigError, match="threshold < 1"):
        LatencyEncoding(threshold=1.5)
    with pytest.raises(ConfigError, match="must be one of RateEncoding"):
        encode(torch.zeros(1, 2), encoding="rate", num_steps=3)
    with pytest.raises(ConfigError, match="num_steps must be a positive int"):
        load_digits_spikes(num_steps=0)
    with pytest.raises(ConfigError, match=r"intensities in \[0, 1\]"):
        encode(torch.full((1, 2), 16.0), encoding=RateEncoding(), num_steps=3)
    with pytest.raises(ConfigError, match="test_fraction"):
        load_digits_spikes(test_fraction=1.0)
