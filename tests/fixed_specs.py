"""Seeded random fixed-point NetworkSpecs for the emulator tests (test helper).

``random_fixed_spec(seed, ...)`` draws a small network in Lava's fixed-point units with the
features the bit-exactness tests must cover: mixed-sign / excitatory / inhibitory weight
matrices with odd mantissas, positive and negative ``weight_exp``, reduced ``num_weight_bits``,
optional delays and bias channels, slow and fast decays, and (``recurrent=True``) a recurrent
``Dense`` per layer (mixed / excitatory / inhibitory / diagonal, odd mantissas, beyond 8 bits).
Thresholds are set from the weights so that the layers really spike.
"""

from __future__ import annotations

import numpy as np

from lava_bridge.spec import LayerSpec, NetworkSpec, NeuronSpec


def random_fixed_spec(
    seed: int,
    sizes: tuple[int, ...] = (6, 5, 4, 3),
    *,
    delays: bool | None = None,
    bias: bool | None = None,
    sign: str | None = None,
    recurrent: bool = False,
    bias_timing: str = "synaptic",
) -> NetworkSpec:
    """A random fixed-point spec; ``None`` options are drawn from the seed (an inhibitory layer
    always gets a positive bias so that it can spike)."""
    rng = np.random.default_rng(seed)
    rec_rng = np.random.default_rng(10_000 + seed)  # its own stream: the rest stays as drawn
    if delays is None:
        delays = bool(rng.random() < 0.5)
    if bias is None:
        bias = bool(rng.random() < 0.5)
    layers = []
    for i in range(len(sizes) - 1):
        n_in, n_out = sizes[i], sizes[i + 1]
        kind = sign or rng.choice(["mixed", "mixed", "excitatory", "inhibitory"])
        w = rng.integers(-200, 300, (n_out, n_in))  # beyond 8 bits on purpose: Lava clips
        if kind == "excitatory":
            w = np.abs(w)
        elif kind == "inhibitory":
            w = -np.abs(w)
        else:
            w[0, 0], w[-1, -1] = 3, -3  # odd mantissas: Lava truncates them in a mixed matrix
        e = int(rng.integers(-3, 3))
        nwb = int(rng.choice([8, 8, 7, 6]))
        # typical drive per step in units of a_in, to put the threshold where spikes happen
        drive = max(2.0, float(np.abs(w.mean()) * n_in * 0.5 * 2.0**e))
        vth = int(rng.integers(1, int(1.5 * drive) + 2))
        du = int(rng.choice([4095, int(rng.integers(0, 4096))]))
        dv = int(rng.choice([rng.integers(0, 4096), rng.integers(0, 600)]))
        layers.append(
            LayerSpec(
                name=f"layer{i}",
                weight=w,
                neuron=NeuronSpec(
                    du=np.full(n_out, du), dv=np.full(n_out, dv), vth=np.full(n_out, vth)
                ),
                shape=(n_out,),
                delay=rng.integers(0, 5, (n_out, n_in)) if delays else None,
                # an inhibitory layer spikes only through a positive bias current
                bias=(
                    rng.integers(150, 256, n_out)
                    if kind == "inhibitory"
                    else rng.integers(-200, 200, n_out)
                    if bias
                    else None
                ),
                weight_exp=e,
                bias_exp=e + 2 if kind == "inhibitory" else int(rng.integers(-2, 3)),
                num_weight_bits=nwb,
                source="dense",
                recurrent=_recurrent(rec_rng, n_out) if recurrent else None,
                bias_timing=bias_timing,
            )
        )
    return NetworkSpec(layers=tuple(layers), input_shape=(sizes[0],), fixed_point=True)


def _recurrent(rng: np.random.Generator, n: int) -> np.ndarray:
    kind = rng.choice(["mixed", "excitatory", "inhibitory", "diagonal"])
    r = rng.integers(-200, 300, (n, n))  # beyond 8 bits on purpose: Lava clips
    if kind == "excitatory":
        r = np.abs(r) // 2
    elif kind == "inhibitory":
        r = -np.abs(r)
    elif kind == "diagonal":
        r = np.diag(rng.integers(-150, 150, n))
    else:
        r[0, -1], r[-1, 0] = 5, -7  # odd mantissas
    return r


def random_spikes(seed: int, steps: int, batch: int, n: int, rate: float = 0.5) -> np.ndarray:
    """Binary inputs ``[T, B, n]`` (int64)."""
    rng = np.random.default_rng(seed)
    return (rng.random((steps, batch, n)) < rate).astype(np.int64)


def _conv_out(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


def random_conv_spec(
    seed: int,
    in_shape: tuple[int, int, int] = (2, 6, 6),
    *,
    lava_conv: bool = False,
    bias: bool | None = None,
) -> tuple[NetworkSpec, dict[int, np.ndarray]]:
    """A random fixed-point ``conv → conv → dense`` spec with ``meta["conv"]`` on the conv layers.

    Kernels ``[O, C, kh, kw]`` (1-3 wide, stride 1-2, padding 0-1, 1-3 channels) are unrolled to
    the layers' dense matrices, which stay their meaning. Sign modes, ``weight_exp`` (-3..2),
    ``num_weight_bits`` (6-8), decays and per-neuron biases are drawn as in
    :func:`random_fixed_spec`. ``lava_conv=True`` draws what Lava's ``Conv`` process runs as the
    dense form does: ``weight_exp = 0`` and kernels already on Lava's weight grid
    (``loihi_weights(k) == k``; Lava's Conv truncates nothing). Returns the spec and the kernels.
    """
    from lava_bridge._conv import _unroll
    from lava_bridge.emulator import loihi_weights

    rng = np.random.default_rng(seed)
    if bias is None:
        bias = bool(rng.random() < 0.5)
    shape = tuple(in_shape)
    layers, kernels = [], {}
    for i in range(3):
        C, H, W = shape
        kind = rng.choice(["mixed", "mixed", "excitatory", "inhibitory"])
        nwb = 8 if lava_conv and rng.random() < 0.5 else int(rng.choice([8, 7, 6]))
        e = 0 if lava_conv else int(rng.integers(-3, 3))
        if i < 2:
            O = int(rng.integers(1, 4))
            kh, kw = (int(rng.integers(1, min(3, H) + 1)), int(rng.integers(1, min(3, W) + 1)))
            sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
            ph, pw = int(rng.integers(0, 2)), int(rng.integers(0, 2))
            Ho, Wo = _conv_out(H, kh, sh, ph), _conv_out(W, kw, sw, pw)
            k = rng.integers(-200, 300, (O, C, kh, kw))
            if kind == "excitatory":
                k = np.abs(k)
            elif kind == "inhibitory":
                k = -np.abs(k)
            else:
                k.flat[0], k.flat[-1] = 3, -3
            if lava_conv:
                k = loihi_weights(k.reshape(O, -1), nwb).reshape(k.shape)
            g = dict(
                in_shape=[C, H, W],
                out_shape=[O, Ho, Wo],
                kernel=[kh, kw],
                stride=[sh, sw],
                padding=[ph, pw],
            )
            w = np.rint(_unroll(k.astype(np.float64), g)).astype(np.int64)
            kernels[i] = k
            meta, out_shape, source = {"conv": g}, (O, Ho, Wo), "conv2d-as-dense"
        else:
            n_out = int(rng.integers(2, 5))
            w = rng.integers(-200, 300, (n_out, C * H * W))
            meta, out_shape, source = {}, (n_out,), "dense"
        n_out, fan_in = w.shape
        drive = max(2.0, float(np.abs(w).sum(1).mean() * 0.25 * 2.0**e))
        vth = int(rng.integers(1, int(drive) + 2))
        du = int(rng.choice([4095, int(rng.integers(0, 4096))]))
        dv = int(rng.choice([rng.integers(0, 4096), rng.integers(0, 600)]))
        layers.append(
            LayerSpec(
                name=f"layer{i}",
                weight=w,
                neuron=NeuronSpec(
                    du=np.full(n_out, du), dv=np.full(n_out, dv), vth=np.full(n_out, vth)
                ),
                shape=out_shape,
                bias=(
                    rng.integers(150, 256, n_out)
                    if kind == "inhibitory"
                    else rng.integers(-200, 200, n_out)
                    if bias
                    else None
                ),
                weight_exp=e,
                bias_exp=e + 2 if kind == "inhibitory" else int(rng.integers(-2, 3)),
                num_weight_bits=nwb,
                source=source,
                meta=meta,
            )
        )
        shape = out_shape
    spec = NetworkSpec(layers=tuple(layers), input_shape=tuple(in_shape), fixed_point=True)
    return spec, kernels
