"""NIR export and import (the ``nir`` package), keeping per-neuron parameters, reset rule and dt.

:func:`export_nir` writes a float :class:`~lava_bridge.spec.NetworkSpec` (or a model, converted
first) as a chain ``Input → Affine|Linear → LIF|CubaLIF → ... → Output``. Its node keys sort in
chain order (``input``, ``000.flatten`` if the input is multi-dimensional, then ``001.dense``,
``001.neuron`` for layer 0, ``002.dense``, ...): HDF5 lists a group's members alphabetically, and
nirtorch (2.6, which snnTorch's importer runs) converts the nodes in that order, wiring a
recurrent subgraph only if its input node came before it. NIR's neurons are
continuous-time; with the time step ``dt`` and Euler steps they are exactly snnTorch's neurons
when (NIR's conventions, as snnTorch's own exporter uses them)::

    LIF:      τ = dt / (1 - β),  r = τ / dt,  v_leak = 0,  v_reset = 0
              v ← v + dt/τ·(v_leak - v + r·I)  =  β·v + I
    CubaLIF:  τ_syn = dt / (1 - α),  w_in = τ_syn / dt,  τ_mem = dt / (1 - β),  r = τ_mem / dt
              I ← α·I + S,   v ← β·v + I

(``β = 1`` gives ``τ = inf``). Readers differ in which ``dt`` they integrate with and in whether
they honour a LIF's ``r``; a :class:`NIRConvention` names one reader's reading:

- :data:`SNNTORCH` (the default): ``dt = 1e-4``, the value snnTorch's importer
  (``snntorch.import_nir.import_from_nir``) assumes (it ignores metadata), ``r = τ/dt`` as above.
- :data:`NORSE`: ``dt = 1e-3``, the default of ``norse.torch.from_nir`` (norse 1.1.0), whose LIF
  takes ``r = 1`` (it warns about and ignores any other ``r``): the LIF is written with
  ``r = 1`` and its input gain ``τ/dt = 1/(1 - β)`` folded into the weights and bias of the
  ``Affine``/``Linear`` before it, ``v ← v + dt/τ·(-v + W'·x)`` with ``W' = W/(1 - β)``, again
  ``β·v + W·x``. Its ``CubaLIF`` honours ``w_in`` and ``r``, so those are written as above.

Both files are valid NIR for the same network (a reader that honours ``r`` reads either); ``dt``
is also in the graph's metadata, with the convention's name. Every parameter is an array with one value per neuron (scalars
are broadcast). NIR resets to ``v_reset`` in the step a neuron fires (snnTorch's zero reset with
``reset_delay=False``); the snnTorch rule the spec came from is kept in each neuron node's
metadata (``reset_mechanism``, ``reset_delay``) and the graph's metadata holds ``dt``. NIR has no
per-synapse delay node: a ``DelayDense`` matrix is stored in the weight node's metadata
(``delay``, int ``[out, in]``), which :func:`import_nir` reads and other tools ignore.

:func:`import_nir` reads such a graph (a path or a ``nir.NIRGraph``) back into a float spec,
folding any input gain (``r·dt/τ``, ``w_in·dt/τ_syn``) that is not 1 into the weights, and
:func:`model_from_spec` builds the snnTorch ``nn.Sequential`` that snntorch-async runs. A graph
without ``dt`` in its metadata is read with the writer's convention: snnTorch's exporter writes
none and means 1e-4 (the default); norse's ``to_nir`` means its ``dt`` (1e-3 by default): pass
``import_nir(path, dt=1e-3)``.

Recurrent layers (``LayerSpec.recurrent``, from ``snn.RLeaky``/``snn.RSynaptic``) are written
exactly as snnTorch's own exporter (``snntorch.export_nir``, 1.0) writes them, the structure its
importer reads: the layer's neuron node is a subgraph ``NIRGraph`` with the nodes ``input``,
``lif`` (LIF or CubaLIF), ``w_rec`` (``Linear``, the ``[n, n]`` recurrent matrix; ``diag(V)`` for
the one-to-one form) and ``output``, and the edges ``input → lif → w_rec → lif → output``: the
recurrence is the graph edge ``lif → w_rec → lif``. The recurrent Linear's bias is not on
``w_rec``: the spec holds it in the layer's bias (a constant current per step, like the feed-
forward bias), written on the layer's ``Affine``. That placement is also what makes snnTorch's
importer exact: nirtorch (2.6), which it runs the graph with, feeds ``w_rec``'s output of the
previous call into the ``lif`` and starts it at zero, so a bias on ``w_rec`` would be missing at
step 0 (snnTorch's ``RLeaky`` applies it at step 0 too). Upstream facts, for readers of other
files: snnTorch 1.0's importer does not rebuild an ``snn.RLeaky``/``RSynaptic`` (nirtorch maps
the subgraph's nodes one by one to ``snn.Leaky``/``snn.Synaptic`` and ``nn.Linear`` and wires the
loop itself; the call returns ``(spikes, state)`` and the state must be passed back each step);
and it rewrites a *flat* cycle ``lif → w_rec → lif`` in the outer graph into a subgraph whose
input feeds ``w_rec`` instead of ``lif`` (``_create_rnn_subgraph``), so flat files are misread
there. :func:`import_nir` reads both forms (and a ``w_rec`` ``Affine``, whose bias it adds to
the layer's).

Bias timing: NIR readers run the graph layer-synchronously, with an ``Affine`` bias flowing from
step 0 in every layer, which is what a ``"synaptic"`` spec's model does under LayerSync. A
``"lava"`` spec's layer bias (Lava's pipelined timing) has no NIR form; it is written as an
``Affine`` bias (the timing recorded in the weight node's metadata, ``bias_timing``) with a
warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np

from snntorch_async._io import atomic_path

from .errors import SpecFormatError
from .spec import LayerSpec, NetworkSpec, NeuronSpec

__all__ = ["NORSE", "SNNTORCH", "NIRConvention", "export_nir", "import_nir", "model_from_spec"]

log = logging.getLogger(__name__)

PRODUCER = "snntorch-async"
#: The time step snnTorch's NIR importer assumes (``snntorch.import_nir``: ``dt = 1e-4``).
SNNTORCH_DT = 1e-4
#: The default time step of norse's ``norse.torch.from_nir`` (norse 1.1.0: ``dt = 0.001``).
NORSE_DT = 1e-3


@dataclass(frozen=True)
class NIRConvention:
    """How one NIR reader discretises LIF/CubaLIF, which :func:`export_nir` writes for.

    Attributes:
        name: The reader, also written to the graph's metadata (``convention``).
        dt: The time step the reader integrates with (``β = 1 - dt/τ``); ``export_nir``'s
            default ``dt``.
        lif_reads_r: True if the reader's LIF scales its input by ``r·dt/τ`` (write ``r = τ/dt``
            and the weights as they are); False if it takes ``r = 1`` whatever the file says
            (write ``r = 1`` and fold the gain ``τ/dt = 1/(1-β)`` into the weight node's rows).
    """

    name: str
    dt: float
    lif_reads_r: bool

    @classmethod
    def coerce(cls, value: NIRConvention | str) -> NIRConvention:
        """``value`` as a convention: a :class:`NIRConvention` or the name of a known one."""
        if isinstance(value, NIRConvention):
            return value
        known = {c.name: c for c in (SNNTORCH, NORSE)}
        if isinstance(value, str) and value in known:
            return known[value]
        raise SpecFormatError(
            f"export_nir(convention={value!r}): unknown NIR convention. Fix: pass "
            f"lava_bridge.nir.SNNTORCH or NORSE (or one of the names {sorted(known)})."
        )


#: snnTorch's importer (``snntorch.import_nir.import_from_nir``): dt = 1e-4, honours ``r``.
SNNTORCH = NIRConvention("snntorch", SNNTORCH_DT, lif_reads_r=True)
#: norse 1.1.0's ``norse.torch.from_nir``: dt = 1e-3 (its default), LIF takes ``r = 1``.
NORSE = NIRConvention("norse", NORSE_DT, lif_reads_r=False)


def _tau(decay: np.ndarray, dt: float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(decay > 0, dt / np.where(decay > 0, decay, 1.0), np.inf)


def _neuron_node(n: NeuronSpec, dt: float, convention: NIRConvention) -> nir.NIRNode:
    meta = {"reset_mechanism": n.source_reset, "reset_delay": bool(n.source_reset_delay), "dt": dt}
    tau_mem = _tau(n.dv, dt)
    lif_r = tau_mem / dt if convention.lif_reads_r or n.kind == "synaptic" else np.ones_like(n.vth)
    common = dict(
        r=lif_r,
        v_leak=np.zeros_like(n.vth),
        v_threshold=n.vth.copy(),
        v_reset=np.zeros_like(n.vth),
        metadata=meta,
    )
    if n.kind == "synaptic":
        tau_syn = _tau(n.du, dt)
        return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, w_in=tau_syn / dt, **common)
    return nir.LIF(tau=tau_mem, **common)


def _gain_into_weights(layer: LayerSpec, i: int, convention: NIRConvention) -> np.ndarray | None:
    """The per-neuron factor ``τ/dt = 1/(1-β)`` folded into a layer's weights (None: none).

    Only for a LIF under a convention whose reader takes ``r = 1``; a reader's Euler step
    ``v += dt/τ·(...)`` has no form for ``β = 1`` (``dt/τ = 0``), nor for ``α = 1`` in its
    CubaLIF (``w_in = inf``), so those are refused there.
    """
    n = layer.neuron
    if convention.lif_reads_r:
        return None
    flat = np.flatnonzero((n.dv <= 0) | ((n.du <= 0) & (n.kind == "synaptic")))
    if flat.size:
        raise SpecFormatError(
            f"Layer {i} ('{layer.name}'): neurons {flat[:5].tolist()} have β = 1 or α = 1 "
            f"(τ = inf), which the {convention.name} convention's Euler step v += dt/τ·(...) cannot "
            "integrate. Fix: train with β, α < 1, or export with convention=SNNTORCH."
        )
    return None if n.kind == "synaptic" else 1.0 / n.dv


def _recurrent_subgraph(neuron: nir.NIRNode, layer: LayerSpec, weight: np.ndarray) -> nir.NIRGraph:
    """snnTorch's exporter's structure of a recurrent layer (see the module docstring);
    ``weight``: the recurrent matrix as written (with the convention's gain folded in)."""
    n = np.array([layer.out_size])
    w_rec = nir.Linear(
        weight=weight,
        metadata={"recurrent": layer.meta.get("recurrent", "all-to-all")},
    )
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": n}),
            "lif": neuron,
            "w_rec": w_rec,
            "output": nir.Output(output_type={"output": n}),
        },
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
    )


def export_nir(
    source,
    path: str | Path | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
    dt: float | None = None,
    convention: NIRConvention | str = SNNTORCH,
) -> nir.NIRGraph:
    """Export a float spec (or a model) to a NIR graph, and write it if ``path`` is given.

    Args:
        source: A float :class:`~lava_bridge.spec.NetworkSpec`, or an snnTorch model (then
            ``input_shape`` is required; it is converted with ``approximate_reset=True``, since
            NIR records the reset rule rather than approximating it).
        path: Write the graph there with ``nir.write`` (HDF5).
        input_shape: Per-sample input shape, for a model.
        dt: The time step the time constants are expressed with (``τ = dt / (1 - β)``), also
            written to the metadata. Default: the convention's (1e-4 for snnTorch's importer,
            1e-3 for norse's ``from_nir``); the reader must integrate with the same ``dt``.
        convention: The reader to write for, :data:`SNNTORCH` (default) or :data:`NORSE` (or
            their names): with ``NORSE`` each LIF gets ``r = 1`` and its gain ``1/(1-β)`` goes
            into the weights (norse ignores ``r``); ``β = 1`` or ``α = 1`` is refused there.

    Returns:
        The ``nir.NIRGraph``.
    """
    if not isinstance(source, NetworkSpec):
        from ._convert import convert

        if input_shape is None:
            raise SpecFormatError(
                "export_nir(model) needs the per-sample input shape, e.g. export_nir(model, "
                "'net.nir', input_shape=(784,)). Fix: pass input_shape, or a NetworkSpec."
            )
        source = convert(source, tuple(input_shape), approximate_reset=True)
    spec = source
    if spec.fixed_point:
        raise SpecFormatError(
            "export_nir() writes float networks (NIR's parameters are real numbers); got a "
            "fixed-point spec. Fix: export the float spec from lava_bridge.convert(model, ...)."
        )
    convention = NIRConvention.coerce(convention)
    dt = convention.dt if dt is None else float(dt)
    if not (np.isfinite(dt) and dt > 0):
        raise SpecFormatError(f"export_nir(dt=...) must be a positive time step; got {dt!r}.")
    nodes: dict[str, nir.NIRNode] = {
        "input": nir.Input(input_type={"input": np.array(spec.input_shape or (spec.input_size,))})
    }
    edges = []
    prev = "input"
    if len(spec.input_shape) > 1:
        nodes["000.flatten"] = nir.Flatten(
            input_type={"input": np.array(spec.input_shape)}, start_dim=0, end_dim=-1
        )
        edges.append((prev, "000.flatten"))
        prev = "000.flatten"
    for i, layer in enumerate(spec.layers):
        meta = {"name": layer.name, "source": layer.source, "bias_timing": layer.bias_timing}
        if layer.recurrent is not None:
            meta["recurrent"] = layer.meta.get("recurrent", "all-to-all")
        if layer.bias is not None and layer.bias_timing == "lava":
            log.warning(
                "Layer %d ('%s'): its bias has Lava's pipelined timing, which NIR cannot express; "
                "NIR readers apply the Affine bias from step 0 in every layer (the 'synaptic' "
                "timing under LayerSync).",
                i,
                layer.name,
            )
        if layer.delay is not None:
            meta["delay"] = layer.delay.astype(np.int64)
            log.warning(
                "Layer %d ('%s'): NIR has no per-synapse delay; the delays are kept in the weight "
                "node's metadata ('delay'), which only lava_bridge.import_nir reads.",
                i,
                layer.name,
            )
        weight, bias = layer.weight.copy(), None if layer.bias is None else layer.bias.copy()
        gain = _gain_into_weights(layer, i, convention)
        if gain is not None:
            weight *= gain[:, None]
            bias = None if bias is None else bias * gain
        if bias is not None:
            syn = nir.Affine(weight=weight, bias=bias, metadata=meta)
        else:
            syn = nir.Linear(weight=weight, metadata=meta)
        dense, cell = f"{i + 1:03d}.dense", f"{i + 1:03d}.neuron"  # keys sort in chain order
        nodes[dense] = syn
        neuron = _neuron_node(layer.neuron, dt, convention)
        if layer.recurrent is not None:
            rec = layer.recurrent.copy() if gain is None else layer.recurrent * gain[:, None]
            neuron = _recurrent_subgraph(neuron, layer, rec)
        nodes[cell] = neuron
        edges += [(prev, dense), (dense, cell)]
        prev = cell
    nodes["output"] = nir.Output(output_type={"output": np.array([spec.output_size])})
    edges.append((prev, "output"))
    graph = nir.NIRGraph(
        nodes=nodes,
        edges=edges,
        metadata={
            "dt": dt,
            "producer": PRODUCER,
            "spec_dt": spec.dt,
            "convention": convention.name,
        },
    )
    if path is not None:
        with atomic_path(path, what="NIR file") as tmp:  # never a half-written file
            nir.write(str(tmp), graph)
        log.info(
            "wrote NIR graph %s (%d layers, dt=%g, %s convention)",
            path,
            spec.num_layers,
            dt,
            convention.name,
        )
    return graph


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


_WEIGHTS = (nir.Affine, nir.Linear)
_NEURONS = (nir.LIF, nir.CubaLIF)


def _successors(graph: nir.NIRGraph) -> dict[str, list[str]]:
    nxt: dict[str, list[str]] = {}
    for a, b in graph.edges:
        if b not in nxt.get(a, []):
            nxt.setdefault(a, []).append(b)
    return nxt


def _chain(graph: nir.NIRGraph) -> tuple[list[str], dict[str, str]]:
    """The chain of node keys from the Input, and ``{neuron key: recurrent weight key}`` for the
    flat cycles ``neuron → weights → neuron`` (the weights feeding nothing else)."""
    nxt = _successors(graph)
    starts = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    if len(starts) != 1:
        raise SpecFormatError(f"import_nir expects one Input node; found {len(starts)}.")
    order, node, loops = [], starts[0], {}
    while True:
        order.append(node)
        outs = nxt.get(node, [])
        if isinstance(graph.nodes[node], _NEURONS):
            back = [
                o for o in outs if isinstance(graph.nodes[o], _WEIGHTS) and nxt.get(o) == [node]
            ]
            if len(back) == 1:
                loops[node] = back[0]
                outs = [o for o in outs if o != back[0]]
        if not outs:
            return order, loops
        if len(outs) > 1 or len(order) > len(graph.nodes):
            raise SpecFormatError(
                f"import_nir reads feed-forward chains; node '{node}' has {len(outs)} successors "
                f"({outs}). Fix: export a sequential network."
            )
        node = outs[0]


def _subgraph_parts(key: str, sub: nir.NIRGraph) -> tuple[nir.NIRNode, nir.NIRNode]:
    """``(neuron, recurrent weights)`` of a recurrent-layer subgraph (snnTorch's structure)."""
    neurons = [k for k, v in sub.nodes.items() if isinstance(v, _NEURONS)]
    weights = [k for k, v in sub.nodes.items() if isinstance(v, _WEIGHTS)]
    ins = [k for k, v in sub.nodes.items() if isinstance(v, nir.Input)]
    outs = [k for k, v in sub.nodes.items() if isinstance(v, nir.Output)]
    ok = len(neurons) == len(weights) == len(ins) == len(outs) == 1 and len(sub.nodes) == 4
    if ok:
        lif, w = neurons[0], weights[0]
        want = {(ins[0], lif), (lif, w), (w, lif), (lif, outs[0])}
        ok = {tuple(e) for e in sub.edges} == want
    if not ok:
        raise SpecFormatError(
            f"NIR node '{key}' is a subgraph but not a recurrent layer; import_nir reads subgraphs "
            "of the nodes input, a LIF/CubaLIF, one Affine/Linear and output with the edges "
            "input -> neuron -> weights -> neuron -> output (snnTorch's RLeaky/RSynaptic)."
        )
    return sub.nodes[lif], sub.nodes[w]


def import_nir(source, *, dt: float | None = None) -> NetworkSpec:
    """Read a NIR graph (path or ``nir.NIRGraph``) of Affine/Linear + LIF/CubaLIF layers.

    Args:
        source: A path to a NIR HDF5 file, or a ``nir.NIRGraph``.
        dt: The time step; default the graph's ``metadata["dt"]``, else 1e-4 (snnTorch's
            exporter writes no dt and means 1e-4; for norse's ``to_nir`` pass its dt, 1e-3).

    Returns:
        A float :class:`~lava_bridge.spec.NetworkSpec`.

    Raises:
        SpecFormatError: The graph is not such a chain, or a neuron has ``v_leak`` / ``v_reset``
            other than 0 (no counterpart in snnTorch's Leaky/Synaptic or Lava's LIF).
    """
    if isinstance(source, (str, Path)):
        try:
            graph = nir.read(str(source))
        except FileNotFoundError:
            raise SpecFormatError(
                f"NIR file '{source}' does not exist. Fix: check the path."
            ) from None
        except (OSError, KeyError, ValueError, TypeError) as e:
            raise SpecFormatError(
                f"NIR file '{source}' cannot be read as a NIR graph: it is truncated, damaged or not "
                f"a NIR HDF5 file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
                "Fix: pass a file written by nir.write / lava_bridge.export_nir."
            ) from None
    else:
        graph = source
    meta_dt = (graph.metadata or {}).get("dt")
    if dt is None and meta_dt is None:
        dt = SNNTORCH_DT
        log.info(
            "import_nir: the graph has no 'dt' in its metadata; reading it with snnTorch's "
            "convention dt=%g (pass dt=... for another writer, e.g. norse: 1e-3).",
            dt,
        )
    elif dt is None:
        dt = float(np.asarray(meta_dt).reshape(-1)[0])
    order, loops = _chain(graph)
    input_node = graph.nodes[order[0]]
    input_shape = tuple(int(s) for s in np.asarray(input_node.input_type["input"]).reshape(-1))
    layers: list[LayerSpec] = []
    pending = None
    for key in order[1:]:
        node = graph.nodes[key]
        if isinstance(node, (nir.Flatten, nir.Output)):
            continue
        rec_node = graph.nodes[loops[key]] if key in loops else None
        if isinstance(node, nir.NIRGraph):
            node, rec_node = _subgraph_parts(key, node)
        if isinstance(node, (nir.Affine, nir.Linear)):
            if pending is not None:
                raise SpecFormatError(
                    f"NIR node '{key}': two weight nodes in a row; expected weights then a neuron."
                )
            pending = (key, node)
            continue
        if not isinstance(node, (nir.LIF, nir.CubaLIF)):
            raise SpecFormatError(
                f"NIR node '{key}' is a {type(node).__name__}; import_nir reads Affine/Linear, "
                "LIF, CubaLIF (alone or in a recurrent subgraph), Flatten, Input and Output nodes."
            )
        if pending is None:
            raise SpecFormatError(f"NIR neuron '{key}' has no weight node before it.")
        wkey, wnode = pending
        pending = None
        w = np.asarray(wnode.weight, dtype=np.float64)
        b = np.asarray(wnode.bias, dtype=np.float64) if isinstance(wnode, nir.Affine) else None
        n = w.shape[0]
        rec = rec_form = None
        if rec_node is not None:
            rec = np.asarray(rec_node.weight, dtype=np.float64)
            if rec.shape != (n, n):
                raise SpecFormatError(
                    f"NIR node '{key}': its recurrent weights have shape {list(rec.shape)}; "
                    f"expected [{n}, {n}] (from the layer's {n} neurons back to them)."
                )
            if isinstance(rec_node, nir.Affine):  # a constant current per step: the layer bias
                rb = np.asarray(rec_node.bias, dtype=np.float64).reshape(-1)
                b = rb.copy() if b is None else b + rb
            rec_form = _text((rec_node.metadata or {}).get("recurrent", "all-to-all"))

        def vec(a) -> np.ndarray:
            return np.broadcast_to(
                (
                    np.asarray(a, dtype=np.float64).reshape(-1)
                    if np.ndim(a)
                    else np.asarray(a, dtype=np.float64)
                ),
                (n,),
            ).copy()

        if np.any(vec(node.v_leak) != 0) or (
            node.v_reset is not None and np.any(vec(node.v_reset) != 0)
        ):
            raise SpecFormatError(
                f"NIR neuron '{key}' has v_leak or v_reset other than 0; snnTorch's Leaky/Synaptic "
                "and Lava's LIF leak to 0 and reset to 0. Fix: export with v_leak = v_reset = 0."
            )
        if isinstance(node, nir.LIF):
            tau = vec(node.tau)
            dv = dt / tau
            gain = vec(node.r) * dt / tau
            du = np.ones(n)
            kind = "leaky"
        else:
            tau_mem, tau_syn = vec(node.tau_mem), vec(node.tau_syn)
            dv, du = dt / tau_mem, dt / tau_syn
            gain = np.where(np.isinf(tau_syn), 1.0, vec(node.w_in) * dt / tau_syn) * (
                vec(node.r) * dt / tau_mem
            )
            kind = "synaptic"
        gain = np.where(np.isfinite(gain), gain, 1.0)  # r = tau = inf (beta = 1): gain 1
        if not np.allclose(gain, 1.0, rtol=1e-12, atol=0):
            w = w * gain[:, None]
            b = None if b is None else b * gain
            rec = None if rec is None else rec * gain[:, None]  # every input of the neuron
        meta = node.metadata or {}
        wmeta = wnode.metadata or {}
        delay = wmeta.get("delay")
        layers.append(
            LayerSpec(
                name=_text(wmeta.get("name", key.rsplit(".", 1)[0])),
                weight=w,
                bias=b,
                delay=None if delay is None else np.asarray(delay).astype(np.int64),
                neuron=NeuronSpec(
                    du=du,
                    dv=dv,
                    vth=vec(node.v_threshold),
                    kind=kind,
                    source_reset=_text(meta.get("reset_mechanism", "zero")),
                    source_reset_delay=bool(meta.get("reset_delay", False)),
                ),
                shape=(n,),
                source=_text(wmeta.get("source", "dense")),
                bias_timing=_text(wmeta.get("bias_timing", "synaptic")),
                recurrent=rec,
                meta={} if rec is None else {"recurrent": rec_form},
            )
        )
    if not layers:
        raise SpecFormatError("The NIR graph has no Affine/Linear + LIF/CubaLIF layers.")
    spec_dt = (graph.metadata or {}).get("spec_dt")
    spec_dt = dt if spec_dt is None else float(np.asarray(spec_dt).reshape(-1)[0])
    return NetworkSpec(layers=tuple(layers), input_shape=input_shape, dt=spec_dt)


def model_from_spec(spec: NetworkSpec):
    """The snnTorch ``nn.Sequential`` of a float spec (runs in snntorch-async and snnTorch).

    ``nn.Linear`` (``DelayedLinear`` with delays) + ``snn.Leaky``/``snn.Synaptic`` with per-neuron
    ``beta = 1 - dv``, ``alpha = 1 - du``, ``threshold = vth`` and the spec's source reset rule;
    a recurrent layer gets ``snn.RLeaky``/``snn.RSynaptic`` (``meta["recurrent"]``: one-to-one
    ``V = diag(recurrent)``, else all-to-all with the recurrent matrix and a zero recurrent bias,
    the spec's bias being on the ``nn.Linear``). A multi-dimensional input is flattened first.
    Parameters are float32.
    """
    import snntorch as snn
    import torch
    from torch import nn

    from snntorch_async.delays import DelayedLinear

    if spec.fixed_point:
        raise SpecFormatError("model_from_spec() builds float models; got a fixed-point spec.")
    mods: list[nn.Module] = [nn.Flatten()] if len(spec.input_shape) > 1 else []
    for i, layer in enumerate(spec.layers):
        bias = layer.bias is not None
        if layer.delay is not None:
            lin = DelayedLinear(
                layer.in_size, layer.out_size, bias=bias, delays=torch.tensor(layer.delay)
            )
        else:
            lin = nn.Linear(layer.in_size, layer.out_size, bias=bias)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(layer.weight))
            if bias:
                lin.bias.copy_(torch.tensor(layer.bias))
        n = layer.neuron
        kw = dict(
            beta=torch.as_tensor(1.0 - n.dv, dtype=torch.float32),
            threshold=torch.tensor(n.vth, dtype=torch.float32),
            reset_mechanism=n.source_reset,
            reset_delay=n.source_reset_delay,
            init_hidden=True,
            output=i == spec.num_layers - 1,
        )
        if layer.recurrent is not None:
            neuron = _recurrent_module(layer, kw)
        elif n.kind == "synaptic":
            neuron = snn.Synaptic(alpha=torch.as_tensor(1.0 - n.du, dtype=torch.float32), **kw)
        else:
            neuron = snn.Leaky(**kw)
        mods += [lin, neuron]
    return nn.Sequential(*mods)


def _recurrent_module(layer: LayerSpec, kw: dict):
    """``snn.RLeaky``/``snn.RSynaptic`` of a recurrent layer (see :func:`model_from_spec`)."""
    import snntorch as snn
    import torch

    n, r = layer.out_size, layer.recurrent
    if layer.meta.get("recurrent") == "one-to-one":
        form = dict(all_to_all=False, V=torch.tensor(np.diag(r).copy(), dtype=torch.float32))
    else:
        form = dict(all_to_all=True, linear_features=n)
    if layer.neuron.kind == "synaptic":
        alpha = torch.as_tensor(1.0 - layer.neuron.du, dtype=torch.float32)
        m = snn.RSynaptic(alpha=alpha, **form, **kw)
    else:
        m = snn.RLeaky(**form, **kw)
    if form["all_to_all"]:
        with torch.no_grad():
            m.recurrent.weight.copy_(torch.tensor(r))
            m.recurrent.bias.zero_()  # the spec's bias (recurrent bias included) is on the Linear
    return m
