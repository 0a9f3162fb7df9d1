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
