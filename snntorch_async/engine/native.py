"""The native backend: the asynchronous engine's forward steps in C (optional, CPU inference).

The asynchronous engine's inner loop (select, deliver, integrate, fire — once per forward step,
about one hundred times per time step at ``F = 1``) is bound by per-operation overhead when written
with torch tensors. For the common case — every spiking layer one ``nn.Linear`` feeding
``snn.Leaky`` neurons, float32 on the CPU, no gradient needed — a small C kernel
(``_native/async_kernel.c``, part of this package) runs that loop per sample instead. It computes
exactly what the torch code computes, bit for bit (tested in ``tests/test_native.py``).

Where the kernel comes from (:func:`library_origin` says which, :class:`KernelOrigin`):

* **prebuilt** — a wheel (or an editable install) carries it compiled, as
  ``engine/_async_kernel.so`` (``setup.py``; flags and name in :mod:`.kernel_build`). It is used
  when it was built from the ``async_kernel.c`` beside it (the digest it returns from
  ``sa_source_digest()``); no C compiler is needed.
* **compiled on first use** — otherwise (a source checkout, or a C file edited since the build)
  the system C compiler (``$CC``, else ``cc``/``gcc``/``clang``) compiles the source into a
  per-user cache (``$SNNTORCH_ASYNC_CACHE``, default ``~/.cache/snntorch_async``), in well under
  a second; one log line (``logging``, logger ``snntorch_async.engine.native``) says why.
* **unavailable** — neither: everything still works through the torch code, only slower; one
  warning says so.

Set ``SNNTORCH_ASYNC_NATIVE=0`` to switch the kernel off (or use :func:`use_native`).

The boundary: ``plan.choose_backend`` decides once per simulation (in ``build_plan``) which
backend runs it, asking :func:`refusal`; :class:`KernelPlan` (fixed per simulation) and :class:`KernelStep` (one time
step's arrays) are ``ctypes.Structure`` mirrors of the C structs ``sa_plan`` and ``sa_step``,
field by field and by name (``tests/test_native.py`` compares the two declarations). A backward
kernel or a CUDA backend would add its own structs and a backend class beside
:class:`NativeBackend`, and one more branch in ``plan.choose_backend``.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..neurons import SUBTRACT, ZERO, LeakyNeuron, SynapticNeuron
from ..recurrent import RLeakyNeuron, RSynapticNeuron, is_recurrent
from ..context import SimContext
from . import kernel_build
from .currents import layer_current, received_count
from .orderings import Ordering

if TYPE_CHECKING:  # pragma: no cover
    from .plan import AsyncPlan
    from .step import StepWork

__all__ = [
    "use_native",
    "enabled",
    "available",
    "library",
    "library_origin",
    "KernelOrigin",
    "threading",
    "refusal",
    "NativeBackend",
    "KernelPlan",
    "KernelStep",
]

SOURCE = kernel_build.SOURCE
#: The library built into the package at install time (a wheel, or an editable install).
PREBUILT = Path(__file__).with_name(kernel_build.LIBRARY)
FLAGS = [*kernel_build.CFLAGS, "-shared", "-fPIC"]

log = logging.getLogger(__name__)

_lib = None
_tried = False
_origin: "KernelOrigin | None" = None
_enabled: bool | None = None  # None: follow the environment variable


@dataclass(frozen=True)
class KernelOrigin:
    """Where the native kernel came from: ``kind`` is one of

    * ``"prebuilt"`` — the library built into the package at install time (:data:`PREBUILT`);
    * ``"compiled-on-first-use"`` — compiled from :data:`SOURCE` into the cache, because the
      prebuilt library is absent (a source checkout) or unusable; ``reason`` says which;
    * ``"unavailable"`` — neither worked (``reason`` says why); the torch code runs;
    * ``"switched-off"`` — ``SNNTORCH_ASYNC_NATIVE=0`` or ``use_native(False)``.
    """

    kind: str
    path: str | None = None
    reason: str = ""

    def __str__(self) -> str:
        where = f" ({self.path})" if self.path else ""
        why = f": {self.reason}" if self.reason else ""
        return f"{self.kind}{where}{why}"


def _env_enabled() -> bool:
    value = os.environ.get("SNNTORCH_ASYNC_NATIVE", "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def enabled() -> bool:
    """Whether the engine may use the native kernel (``use_native`` or the environment)."""
    return _env_enabled() if _enabled is None else _enabled


@contextmanager
def use_native(flag: bool):
    """Context manager: run the asynchronous engine with (``True``) or without the kernel.

    Example: compare both paths, or time the torch path::

        with snntorch_async.native.use_native(False):
            r = sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=1))
    """
    global _enabled
    old = _enabled
    _enabled = bool(flag)
    try:
        yield
    finally:
        _enabled = old


def _cache_dir() -> Path:
    env = os.environ.get("SNNTORCH_ASYNC_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "snntorch_async"


def _compiler() -> str | None:
    for c in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if c and shutil.which(c):
            return c
    return None


def _compile(source: Path, out: Path, cc: str) -> None:
    """Compile ``source`` into the shared library ``out`` (atomically: written, then renamed)."""
    digest = kernel_build.source_digest(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        cmd = [cc, *FLAGS, f'-D{kernel_build.DIGEST_MACRO}="{digest}"', "-o", tmp, str(source)]
        cmd += kernel_build.LDFLAGS
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{cc} failed: {proc.stderr.strip()[:2000]}")
        os.replace(tmp, out)  # atomic: concurrent builders agree on the result
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _open(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    fn = lib.sa_async_steps
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.POINTER(KernelPlan), ctypes.POINTER(KernelStep)]
    lib.sa_use_openmp.restype = None
    lib.sa_use_openmp.argtypes = [ctypes.c_void_p] * 3
    lib.sa_tape_new.restype = ctypes.c_void_p
    lib.sa_tape_new.argtypes = [ctypes.POINTER(KernelPlan)]
    lib.sa_tape_record.restype = ctypes.c_int
    lib.sa_tape_record.argtypes = [
        ctypes.POINTER(KernelPlan),
        ctypes.POINTER(KernelStep),
        ctypes.c_void_p,
    ]
    lib.sa_tape_backward.restype = ctypes.c_int
    lib.sa_tape_backward.argtypes = [
        ctypes.POINTER(KernelPlan),
        ctypes.POINTER(KernelStep),
        ctypes.c_void_p,
        ctypes.POINTER(KernelGrad),
    ]
    lib.sa_tape_free.restype = None
    lib.sa_tape_free.argtypes = [ctypes.c_void_p]
    lib.sa_tape_bytes.restype = ctypes.c_int64
    lib.sa_tape_bytes.argtypes = [ctypes.c_void_p]
    lib.sa_tape_chunks.restype = ctypes.c_int64
    lib.sa_tape_chunks.argtypes = [ctypes.c_void_p]
    lib.sa_grad_blocks.restype = ctypes.c_int64
    lib.sa_grad_blocks.argtypes = [ctypes.c_int64]
    lib.sa_tape_count.restype = ctypes.c_int64
    lib.sa_tape_count.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64]
    for name in ("sa_tape_x", "sa_tape_sg"):
        getattr(lib, name).restype = ctypes.c_void_p
        getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64]
    lib.sa_source_digest.restype = ctypes.c_char_p
    lib.sa_source_digest.argtypes = []
    return lib


def _openmp_runtime() -> tuple[str, tuple[int, int, int]] | None:
    """torch's OpenMP runtime, if it is libgomp (the library mapped into this process that
    exports ``GOMP_parallel``): its path and the addresses of ``GOMP_parallel``,
    ``omp_get_thread_num`` and ``omp_get_num_threads``; ``None`` elsewhere (the kernel then
    starts POSIX threads of its own)."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({ln.split()[-1] for ln in f if "libgomp" in ln and "/" in ln})
    except OSError:
        return None
    for path in paths:
        try:
            gomp = ctypes.CDLL(path)  # already loaded by torch: the same library, not a second one
            fns = (gomp.GOMP_parallel, gomp.omp_get_thread_num, gomp.omp_get_num_threads)
        except (OSError, AttributeError):
            continue
        return path, tuple(ctypes.cast(f, ctypes.c_void_p).value for f in fns)
    return None


def threading() -> str:
    """How the kernel runs samples in parallel: ``"openmp (<libgomp path>)"`` (torch's own
    thread pool) or ``"pthreads"``; the thread count is torch's (``torch.set_num_threads``)."""
    runtime = _openmp_runtime()
    return f"openmp ({runtime[0]})" if runtime else "pthreads"


def _build() -> Path:
    """Compile :data:`SOURCE` into the cache once per source text and compiler (the fallback)."""
    src = SOURCE.read_bytes()
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (looked for $CC, cc, gcc, clang)")
    tag = hashlib.sha256(
        src
        + " ".join(
            [cc, *FLAGS, *kernel_build.LDFLAGS, sys.platform, sysconfig.get_platform()]
        ).encode()
    ).hexdigest()[:16]
    lib_path = _cache_dir() / f"async_kernel_{tag}.so"
    if not lib_path.exists():
        _compile(SOURCE, lib_path, cc)
    return lib_path


def _prebuilt() -> tuple[ctypes.CDLL | None, str]:
    """The prebuilt library, or ``None`` and why it is not used."""
    if not PREBUILT.exists():
        where = "a source checkout, or an install from source without a C compiler"
        return None, f"no prebuilt {PREBUILT.name} in {PREBUILT.parent} ({where})"
    try:
        lib = _open(PREBUILT)
        built_from = lib.sa_source_digest().decode()
    except (OSError, AttributeError) as e:
        return None, f"the prebuilt {PREBUILT} cannot be loaded ({e})"
    if SOURCE.exists() and built_from != kernel_build.source_digest(SOURCE):
        return None, (
            f"the prebuilt {PREBUILT} was built from another {SOURCE.name} (digest {built_from}, "
            f"the source is {kernel_build.source_digest(SOURCE)}); reinstall (pip install -e .) "
            "to rebuild it"
        )
    return lib, ""


def _threads(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Hand torch's OpenMP runtime to the kernel when there is one (see :func:`threading`)."""
    runtime = _openmp_runtime()
    if runtime is not None:
        lib.sa_use_openmp(*runtime[1])
    return lib


def _load() -> tuple[ctypes.CDLL, KernelOrigin]:
    """The prebuilt library if it is there and current, else compile on first use (logged)."""
    lib, why = _prebuilt()
    if lib is not None:
        return _threads(lib), KernelOrigin("prebuilt", str(PREBUILT))
    # absent is the normal state of a source checkout; present but unusable is worth a warning
    level = logging.WARNING if PREBUILT.exists() else logging.INFO
    log.log(
        level, "snntorch_async: %s; compiling the native kernel from %s on first use", why, SOURCE
    )
    try:
        path = _build()
        return _threads(_open(path)), KernelOrigin("compiled-on-first-use", str(path), why)
    except Exception as e:  # noqa: BLE001 - say both why: no usable prebuilt, and no build
        raise RuntimeError(f"{why}; compiling it on first use failed: {e}") from e


def library() -> ctypes.CDLL | None:
    """The kernel, or ``None`` when it is switched off or unavailable (warned once).

    Loads the prebuilt library on first call, else compiles :data:`SOURCE`; see
    :func:`library_origin`."""
    global _lib, _tried, _origin
    if not enabled():
        return None
    if not _tried:
        _tried = True
        try:
            _lib, _origin = _load()
        except Exception as e:  # noqa: BLE001 - any failure means: use the torch path
            _lib, _origin = None, KernelOrigin("unavailable", reason=str(e))
            warnings.warn(
                f"snntorch_async: the native asynchronous kernel is unavailable ({e}); the "
                "asynchronous schedulers use the torch code instead (same results, slower at small "
                "forward_group_size). Install the snntorch-async wheel (it carries the compiled "
                "kernel) or a C compiler (e.g. apt install gcc), or set SNNTORCH_ASYNC_NATIVE=0 "
                "to silence this warning.",
                RuntimeWarning,
                stacklevel=3,
            )
    return _lib


def library_origin() -> KernelOrigin:
    """Which kernel the engine runs (loads or compiles it on first call, like :func:`available`).

    Example: ``print(snntorch_async.native.library_origin())`` ->
    ``prebuilt (.../snntorch_async/engine/_async_kernel.so)``."""
    if not enabled():
        return KernelOrigin("switched-off", reason="SNNTORCH_ASYNC_NATIVE=0 or use_native(False)")
    library()
    return _origin


def available() -> bool:
    """Whether the native kernel is enabled and loaded (loads or builds it on first call)."""
    return library() is not None


# ------------------------------------------------------------------ the C boundary
_i64, _ptr, _pptr = ctypes.c_int64, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)


class KernelPlan(ctypes.Structure):
    """Mirror of the C struct ``sa_plan``: what stays fixed during one simulation."""

    _fields_ = [
        ("B", _i64),
        ("L", _i64),
        ("N", _i64),
        ("S", _i64),
        ("lay_off", _ptr),
        ("grp_off", _ptr),
        ("tgt_grp", _ptr),
        ("lay_grp", _ptr),
        ("wt", _pptr),
        ("bias", _pptr),
        ("lay_sub", _ptr),
        ("lay_zero", _ptr),
        ("lay_syn", _ptr),
        ("lay_rec", _ptr),
        ("lay_zmul", _ptr),
        ("sg_kind", _ptr),
        ("sg_param", _ptr),
        ("sync_thr", _ptr),
        ("fan", _ptr),
        ("thr", _ptr),
        ("mode", _i64),
        ("F", _i64),
        ("max_fs", _i64),
        ("stop_k", _i64),
        ("full_eval", _i64),
        ("threads", _i64),
        ("per_eval", _i64),
        ("layer_carriers", _i64),
    ]


class KernelStep(ctypes.Structure):
    """Mirror of the C struct ``sa_step``: one time step's arrays (``NULL`` where absent)."""

    _fields_ = [
        ("cand", _ptr),
        ("frame_cur", _ptr),
        ("decayed", _ptr),
        ("syn_decayed", _ptr),
        ("sub", _ptr),
        ("zero_reset", _ptr),
        ("recurrent", _ptr),
        ("sync_counts", _ptr),
        ("acc", _ptr),
        ("fired", _ptr),
        ("evald", _ptr),
        ("spikes", _ptr),
        ("pend", _ptr),
        ("key", _ptr),
        ("prio", _ptr),
        ("noise", _ptr),
        ("clock", _ptr),
        ("reached", _ptr),
        ("synops", _ptr),
        ("fsteps", _ptr),
        ("out_at", _ptr),
        ("queued", _ptr),
    ]


class KernelGrad(ctypes.Structure):
    """Mirror of the C struct ``sa_grad``: one time step's adjoints (backward pass)."""

    _fields_ = [
        ("g_acc", _ptr),
        ("g_spikes", _ptr),
        ("g_pend", _ptr),
        ("g_queued", _ptr),
        ("g_carried", _ptr),
        ("g_x", _ptr),
        ("g_pend_in", _ptr),
        ("g_queued_in", _ptr),
        ("g_frame", _ptr),
        ("g_wt", _pptr),
        ("g_bias", _pptr),
    ]


def _heaviside_forward(neuron) -> bool:
    """Whether the neuron's ``spike_grad`` is a plain Heaviside step forward (``x > 0`` -> 1)."""
    fn = neuron.module.spike_grad
    hit = neuron.__dict__.get("_heaviside")
    if hit is None or hit[0] is not fn:
        probe = torch.tensor([-1.0, -1e-30, 0.0, 1e-30, 1.0, 3.0])
        with torch.no_grad():
            try:
                out = neuron.spike_fn(probe)
                ok = bool(torch.equal(out, torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])))
            except Exception:  # noqa: BLE001 - anything unusual: use the torch path
                ok = False
        hit = neuron.__dict__["_heaviside"] = (fn, ok)
    return hit[1]


#: The neuron kernels the native kernel runs (recurrent ones with ``RecurrentTiming.NEXT_STEP``:
#: their recurrent current is part of the step's base, see ``engine/step.py``).
KERNEL_NEURONS = (LeakyNeuron, SynapticNeuron, RLeakyNeuron, RSynapticNeuron)


def _synaptic(layer) -> bool:
    return layer.neuron.has_syn


def _zero_by_product(layer) -> bool:
    """Zero reset applied as ``U - U·r`` in the membrane (Leaky's is in its decayed term)."""
    return layer.neuron.reset == ZERO and not isinstance(layer.neuron, LeakyNeuron)


def _subtracts(layer) -> bool:
    return layer.neuron.reset == SUBTRACT


def layer_refusal(ctx: SimContext) -> str | None:
    """Why the kernel cannot run this network's layers (``None``: it can): every layer must be
    one ``nn.Linear`` (no delays) feeding ``snn.Leaky``, ``snn.Synaptic``, ``snn.RLeaky`` or
    ``snn.RSynaptic`` neurons with a Heaviside forward, in float32."""
    if ctx.dtype != torch.float32:
        return f"dtype {ctx.dtype} (the kernel runs float32)"
    for layer in ctx.graph.layers:
        lin = layer.lone_linear
        where = f"layer {layer.index} ({layer.neuron.path})"
        if lin is None or lin.stateful:
            return f"{where} is not one nn.Linear feeding its neurons"
        if type(layer.neuron) not in KERNEL_NEURONS:
            return (
                f"{where} is {type(layer.neuron.module).__name__}, not snn.Leaky, snn.Synaptic, "
                "snn.RLeaky or snn.RSynaptic"
            )
        if lin.module.weight.dtype != torch.float32:
            return f"{where} has {lin.module.weight.dtype} weights"
        if not _heaviside_forward(layer.neuron):
            return f"{where}: its spike_grad is not a Heaviside step forward"
    return None


def refusal(
    ctx: SimContext, ordering: Ordering, *, delays: bool, lateral: bool, dropout: bool
) -> str | None:
    """Why the kernel cannot run this simulation (``None``: it can; inference also needs the
    exact arithmetic, ``AsyncPlan.exact``). The one definition of what the kernel runs, for
    inference (``NativeBackend``) and training (``native_grad.NativeTraining``); see
    docs/async.md, "The native kernel"."""
    if not enabled():
        return "the native kernel is switched off (SNNTORCH_ASYNC_NATIVE=0 or use_native(False))"
    if ctx.device.type != "cpu":
        return f"device {ctx.device} (the kernel runs on the CPU)"
    if ordering.kernel_mode is None:
        return (
            f"ordering {type(ordering).__name__} "
            "(the kernel knows RandomRace, MembranePriority, IndexOrder)"
        )
    for flag, what in (
        (delays, "synaptic delays (DelayedLinear)"),
        (lateral, "recurrent layers with RecurrentTiming.IMMEDIATE (lateral spikes)"),
        (
            dropout,
            "spike or input dropout in training mode (the torch code draws its masks delivery "
            "by delivery)",
        ),
        (ctx.record.spike_forward_steps, "Record(spike_forward_steps=True)"),
    ):
        if flag:
            return what
    return layer_refusal(ctx)


def thread_count(batch: int) -> int:
    """The kernel's worker threads: torch's intra-op thread count (``torch.set_num_threads``),
    at most one per sample."""
    return max(1, min(int(torch.get_num_threads()), int(batch), 64))


@dataclass(eq=False)
class KernelArrays:
    """A :class:`KernelPlan` and the tensors and ctypes arrays its pointers point into (kept
    alive with it)."""

    plan: KernelPlan
    lay_off: list[int]
    keep: tuple


def kernel_plan(
    plan: "AsyncPlan",
    ctx: SimContext,
    wts: list[Tensor],
    thr: Tensor,
    forward_group_size: int,
    per_eval: bool = False,
    surrogates: list[tuple[int, float]] | None = None,
    layer_carriers: bool = False,
) -> KernelArrays:
    """The kernel's fixed arrays: transposed weights ``wts`` (``[in, out]`` contiguous float32,
    per layer), the flat thresholds ``thr`` ``[N]`` and the forward group size (``>= S``:
    everything pending at once); training adds ``per_eval`` (output neurons' silent evaluations
    carry gradient), per layer the kernel's surrogate ``(kind, parameter)``
    (``native_grad.surrogate_of``; default: none) and ``layer_carriers`` (the ``LayerCarriers``
    rule's riding zeros)."""
    layers, layout = ctx.graph.layers, plan.layout
    L = len(layers)
    lay_off = [0]
    for layer in layers:
        lay_off.append(lay_off[-1] + layer.neuron.numel)
    groups = layout.groups
    grp_off = [g.start for g in groups] + [layout.total]
    lins = plan.lone_linear
    biases = [
        None if op.module.bias is None else op.module.bias.detach().contiguous() for op in lins
    ]
    fan = torch.cat(
        [lins[g.target].fanout((g.size,), torch.float32).reshape(-1) for g in groups]
        + [torch.zeros(0)]
    ).contiguous()
    feeding = [layout.feeding(l) for l in range(L)]

    def flags(fn):
        return (ctypes.c_uint8 * L)(*[int(fn(layer)) for layer in layers])

    arrays = dict(
        lay_off=(ctypes.c_int64 * (L + 1))(*lay_off),
        grp_off=(ctypes.c_int64 * len(grp_off))(*grp_off),
        tgt_grp=(ctypes.c_int64 * L)(*[-1 if g is None else g.index for g in feeding]),
        lay_grp=(ctypes.c_int64 * L)(
            *[layout.hidden[l].index if l < L - 1 else -1 for l in range(L)]
        ),
        wt=(ctypes.c_void_p * L)(*[t.data_ptr() for t in wts]),
        bias=(ctypes.c_void_p * L)(*[None if t is None else t.data_ptr() for t in biases]),
        lay_sub=flags(_subtracts),
        lay_zero=flags(lambda layer: layer.neuron.reset == ZERO),
        lay_syn=flags(_synaptic),
        lay_rec=flags(is_recurrent),
        lay_zmul=flags(_zero_by_product),
        sg_kind=(ctypes.c_int64 * L)(*[k for k, _ in surrogates or [(0, 0.0)] * L]),
        sg_param=(ctypes.c_double * L)(*[p for _, p in surrogates or [(0, 0.0)] * L]),
    )
    st = plan.sync_threshold
    sync = None
    if st is not None:  # per neuron, as SyncThreshold.allows broadcasts it
        per_layer = st if isinstance(st, (list, tuple)) else [st] * L
        sync = torch.cat(
            [
                torch.broadcast_to(
                    torch.as_tensor(per_layer[l]).detach().to(torch.float32), layer.shape
                ).reshape(-1)
                for l, layer in enumerate(layers)
            ]
        ).contiguous()
    stops = plan.stops
    kplan = KernelPlan(
        B=ctx.batch,
        L=L,
        N=lay_off[-1],
        S=layout.total,
        **{k: ctypes.cast(v, _pptr if k in ("wt", "bias") else _ptr) for k, v in arrays.items()},
        fan=fan.data_ptr(),
        thr=thr.data_ptr(),
        mode=plan.ordering.kernel_mode,
        F=forward_group_size,
        max_fs=-1 if stops.max_forward_steps is None else stops.max_forward_steps,
        stop_k=-1 if stops.stop_on_output is None else stops.stop_on_output,
        full_eval=int(plan.full_layer_evaluation),
        threads=thread_count(ctx.batch),
        per_eval=int(per_eval),
        layer_carriers=int(layer_carriers),
        sync_thr=ptr(sync),
    )
    return KernelArrays(kplan, lay_off, (wts, biases, fan, thr, arrays, sync))


def flat_thresholds(ctx: SimContext) -> Tensor:
    """Every neuron's threshold ``[N]`` in kernel order (differentiable)."""
    return torch.cat(
        [
            torch.broadcast_to(ctx.params[l].threshold, layer.shape).reshape(-1)
            for l, layer in enumerate(ctx.graph.layers)
        ]
    ).to(torch.float32)


def membrane_terms(ctx: SimContext, work: "StepWork") -> dict[str, Tensor | None]:
    """The kernel's per-neuron membrane terms ``[B, N]`` from the step's bases: ``decayed``,
    ``syn_decayed`` (``None`` without Synaptic layers), ``sub`` (``reset * threshold`` of
    subtract-reset layers; ``None`` without any), ``zero_reset`` (the delayed reset ``r`` of
    zero-reset layers other than Leaky; ``None`` without any) and ``recurrent`` (the recurrent
    current ``V(spk[t-1])`` of recurrent layers; ``None`` without any). Differentiable where the
    bases are."""
    layers, params, B, dt = ctx.graph.layers, ctx.params, ctx.batch, ctx.dtype
    shapes = [(B, *layer.shape) for layer in layers]
    bases = work.bases

    def flat(fn, wanted):
        if not any(wanted(layer) for layer in layers):
            return None
        parts = [
            fn(l).expand(shapes[l]).reshape(B, -1)
            if wanted(layer)
            else torch.zeros((B, layer.neuron.numel), dtype=dt)
            for l, layer in enumerate(layers)
        ]
        return torch.cat(parts, 1).contiguous()

    return dict(
        decayed=flat(lambda l: bases[l].decayed, lambda layer: True),
        syn_decayed=flat(lambda l: bases[l].syn_decayed, _synaptic),
        sub=flat(lambda l: bases[l].reset * params[l].threshold, _subtracts),
        zero_reset=flat(lambda l: bases[l].reset, _zero_by_product),
        recurrent=flat(lambda l: bases[l].recurrent, is_recurrent),
    )


def sync_counts(plan: "AsyncPlan", ctx: SimContext, work: "StepWork", x: Tensor):
    """Partial synchronisation: the events each neuron receives before the forward steps
    ``[B, N]`` (the prioritised input frame into layer 0; a recurrent layer's previous spikes,
    ``RecurrentTiming.NEXT_STEP``), as the torch backend counts them; ``None`` when off."""
    if plan.sync_threshold is None:
        return None
    layers, B = ctx.graph.layers, ctx.batch
    counts = [torch.zeros((B, layer.neuron.numel), dtype=ctx.dtype) for layer in layers]
    if plan.layout.input is None:
        xin = x.flatten(1).view(B, *layers[0].in_shape)
        counts[0] = counts[0] + received_count(layers[0], xin).reshape(B, -1)
    for l, spk in (work.recurrent_spikes or {}).items():
        counts[l] = counts[l] + layers[l].neuron.recurrent_received(spk).reshape(B, -1)
    return torch.cat(counts, 1).contiguous()


def frame_current(plan: "AsyncPlan", ctx: SimContext, work: "StepWork", x: Tensor):
    """The prioritised input frame's current into layer 0 ``[B, n_0]`` (the same module call as
    LayerSync; its synapses counted), or ``None`` when input events join the pending set
    (they are added to it here)."""
    layout, layers, B = plan.layout, ctx.graph.layers, ctx.batch
    if layout.input is None:
        xin = x.flatten(1).view(B, *layers[0].in_shape)
        first = torch.ones(B, dtype=torch.bool)
        cur = layer_current(layers[0], None, xin, first, {}, work.synops[:, 0], work.weight_rows)
        return cur.reshape(B, -1).contiguous()
    work.pending[layout.input.index] = work.pending[layout.input.index] + x.flatten(1)
    return None


def step_outputs(B: int, N: int) -> dict[str, Tensor]:
    """The kernel's per-neuron outputs of one time step, empty: accumulated current, spike
    record, fired and evaluated flags ``[B, N]``."""
    f32 = torch.float32  # (the kernel's type, whatever torch's default dtype)
    return dict(
        acc=torch.zeros((B, N), dtype=f32),
        spikes=torch.zeros((B, N), dtype=f32),
        fired=torch.zeros((B, N), dtype=torch.bool),
        evald=torch.zeros((B, N), dtype=torch.bool),
    )


def flat(ts: list[Tensor], batch: int) -> Tensor:
    """Per-layer or per-group tensors ``[B, ...]`` side by side, ``[B, total]`` (kernel order)."""
    if not ts:
        return torch.zeros((batch, 0), dtype=torch.float32)
    return torch.cat([t.reshape(batch, -1) for t in ts], 1).contiguous()


def per_layer(t: Tensor, lay_off: list[int], shapes: list[tuple[int, ...]]) -> list[Tensor]:
    """A kernel array ``[B, N]`` as one view per layer ``[B, *shape]``."""
    return [t[:, lay_off[l] : lay_off[l + 1]].reshape(shapes[l]) for l in range(len(shapes))]


def ptr(t: Tensor | None):
    """A tensor's data pointer for the kernel (``None``: ``NULL``)."""
    return None if t is None else t.data_ptr()


def kernel_step(arrays: dict, terms: dict, frame: Tensor | None) -> KernelStep:
    """The :class:`KernelStep` over one time step's tensors: ``arrays`` by field name (absent or
    ``None``: ``NULL``), the membrane terms (:func:`membrane_terms`) and the input frame's
    current."""
    return KernelStep(
        cand=ptr(arrays["cand"]),
        frame_cur=ptr(frame),
        **{k: ptr(v) for k, v in terms.items()},
        acc=ptr(arrays["acc"]),
        fired=ptr(arrays["fired"]),
        evald=ptr(arrays["evald"]),
        spikes=ptr(arrays["spikes"]),
        pend=ptr(arrays["pend"]),
        key=ptr(arrays["key"]),
        prio=ptr(arrays.get("prio")),
        noise=ptr(arrays["noise"]),
        clock=ptr(arrays.get("clock")),
        reached=ptr(arrays["reached"]),
        synops=ptr(arrays["synops"]),
        fsteps=ptr(arrays["fsteps"]),
        out_at=ptr(arrays["out_at"]),
        queued=ptr(arrays.get("queued")),
        sync_counts=ptr(arrays.get("sync_counts")),
    )


class NativeBackend:
    """Forward steps in the C kernel (inference); the plan's fixed arrays are made once, at the
    first step."""

    name = "native"

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self._arrays: KernelArrays | None = None

    def forward_steps(
        self, plan: "AsyncPlan", ctx: SimContext, work: "StepWork", x: Tensor
    ) -> None:
        if self._arrays is None:
            wts = [work.weight_rows.of(op) for op in plan.lone_linear]
            thr = flat_thresholds(ctx).detach().contiguous()
            self._arrays = kernel_plan(plan, ctx, wts, thr, plan.forward_group_size)
        kplan, lay_off = self._arrays.plan, self._arrays.lay_off
        layers, layout, B = ctx.graph.layers, plan.layout, ctx.batch
        shapes = [(B, *layer.shape) for layer in layers]
        terms = membrane_terms(ctx, work)
        counts = sync_counts(plan, ctx, work, x)
        frame = frame_current(plan, ctx, work, x)
        keys = work.keys
        prio = (
            flat(work.priority, B) if (plan.ordering.records_priority and work.priority) else None
        )
        arrays = dict(
            step_outputs(B, kplan.N),
            cand=flat(work.candidates, B),
            pend=flat(work.pending, B),
            key=keys.keys,
            prio=prio,
            noise=(
                keys.noise
                if keys.noise is not None
                else torch.zeros((B, kplan.S), dtype=torch.float32)
            ),
            clock=keys.clock,
            reached=work.reached,
            synops=work.synops,
            fsteps=work.forward_steps,
            out_at=work.output_at,
            sync_counts=counts,
        )
        step = kernel_step(arrays, terms, frame)
        if self.lib.sa_async_steps(ctypes.byref(kplan), ctypes.byref(step)) != 0:
            raise MemoryError("snntorch_async native kernel: could not allocate its work buffers")
        work.spikes = per_layer(arrays["spikes"], lay_off, shapes)
        work.current = per_layer(arrays["acc"], lay_off, shapes)
        groups = layout.groups
        work.pending = [arrays["pend"][:, g.columns] for g in groups]
        if prio is not None:
            work.priority = [prio[:, g.columns] for g in groups]
