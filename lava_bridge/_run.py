"""Run built Lava networks safely: always stop, never hang, leave no child processes behind.

Lava's simulator runs every process in a forked child process and talks to it through shared
memory. Forgetting ``stop()`` hangs interpreter exit, an exception inside a process model makes
``run()``/``stop()`` wait forever, and a killed run leaves children and shared memory behind.
:func:`run` is a context manager that guards all of it::

    from lava_bridge import build, run
    net = build(spec, x)                       # x: one sample [T, *input_shape]
    with run(net, timeout=60) as session:
        session.run()                          # net.num_steps steps (timeout -> LavaTimeoutError)
        spikes = session.spikes()              # output layer [num_steps, C]
    # here stop() has been called, also after an error or Ctrl-C

Every blocking Lava call runs in a helper thread joined with a timeout; when it does not come
back, or ``stop()`` fails, the Lava child processes started during the session are killed (by
their process object, only those this session started) and the shared-memory manager is shut
down, and a :class:`~lava_bridge.errors.LavaTimeoutError` / :class:`LavaRunError` says so.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from ._build import BuiltNetwork, build
from .errors import LavaRunError, LavaTimeoutError
from .spec import NetworkSpec

__all__ = ["LavaRun", "LavaOutput", "run", "run_spec"]

log = logging.getLogger(__name__)

#: Default limit (seconds) for one ``run`` of the network, and for ``stop()``.
RUN_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


def _timed(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    """Call ``fn`` in a daemon thread; return its result, re-raise its error, or time out."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    th = threading.Thread(target=target, name=f"lava-{what}", daemon=True)
    th.start()
    th.join(timeout)
    if th.is_alive():
        raise LavaTimeoutError(
            f"Lava {what} did not finish within {timeout:g} s (a Lava process is stuck, e.g. an "
            "exception inside a process model, or a synaptic delay above 62). lava_bridge.run "
            "kills the Lava child processes it started. Fix: check the network, or raise the "
            "timeout for long runs."
        )
    if "error" in box:
        raise box["error"]
    return box.get("value")


class LavaRun:
    """A running Lava session (made by :func:`run`; use it inside the ``with`` block only).

    Attributes:
        net: The built network.
        steps_run: Time steps executed so far.
    """

    def __init__(self, net: BuiltNetwork, timeout: float) -> None:
        self.net = net
        self.timeout = float(timeout)
        self.steps_run = 0
        self.started = False
        self.closed = False
        self.stuck = False

    def run(self, num_steps: int | None = None) -> None:
        """Run ``num_steps`` more steps (default: all of ``net.num_steps``), blocking, with timeout."""
        from lava.magma.core.run_conditions import RunSteps

        self._check_open()
        n = self.net.num_steps - self.steps_run if num_steps is None else int(num_steps)
        if n <= 0 or self.steps_run + n > self.net.num_steps:
            raise LavaRunError(
                f"Cannot run {n} more steps: the network was built for {self.net.num_steps} "
                f"steps and {self.steps_run} have run. Fix: build(..., num_steps=...) larger."
            )
        self.started = True
        anchor = self.net.anchor
        try:
            _timed(
                lambda: anchor.run(condition=RunSteps(num_steps=n), run_cfg=self.net.run_cfg),
                self.timeout,
                "run",
            )
        except LavaTimeoutError:
            self.stuck = True  # stop() would wait on the stuck process too: kill instead
            raise
        except LavaRunError:
            raise
        except Exception as e:
            raise LavaRunError(
                f"Lava run failed after {self.steps_run} steps: {type(e).__name__}: {e}. The "
                "processes are stopped on leaving the `with` block."
            ) from e
        self.steps_run += n

    def spikes(self, layer: int = -1) -> np.ndarray:
        """Recorded spikes of ``layer`` (default: output) so far, ``[steps_run, n]`` float 0/1."""
        self._check_open()
        sink = self.net.sinks[layer]
        if sink is None:
            raise LavaRunError(
                f"Layer {layer}'s spikes were not recorded. Fix: build(..., record_layers=True)."
            )
        data = self._call(sink.data.get, "read of the spike sink")
        return np.asarray(data, dtype=np.float64).T[: self.steps_run].copy()

    def get(self, var) -> np.ndarray:
        """Read a Lava ``Var`` (costly: ~20 µs per element; read only what you need)."""
        self._check_open()
        return np.asarray(self._call(var.get, f"read of Var '{var.name}'"))

    def _call(self, fn: Callable[[], Any], what: str) -> Any:
        try:
            return _timed(fn, self.timeout, what)
        except LavaTimeoutError:
            self.stuck = True
            raise

    def _check_open(self) -> None:
        if self.closed:
            raise LavaRunError(
                "This Lava session has been stopped; use it inside its `with` block."
            )


def _runtime_internals(net: BuiltNetwork):
    rt = getattr(net.anchor, "runtime", None)
    mi = getattr(rt, "_messaging_infrastructure", None) if rt is not None else None
    return rt, mi


def _kill_children(before: set, mi) -> int:
    """Kill the Lava actors started since ``before``, then shut the shared memory down.

    The actors (Lava's process models) are killed first; the shared-memory manager is then asked
    to shut down (it unlinks every segment); only if that fails is it killed too.
    """
    killed = 0
    actors = list(getattr(mi, "actors", None) or [])
    for p in actors:
        with contextlib.suppress(Exception):  # a closed process object raises even on is_alive()
            if p.pid in before or not p.is_alive():
                continue
            p.kill()
            mp_join = multiprocessing.Process.join
            mp_join(p, 5)  # Lava's SystemProcess.join() takes no timeout
            killed += 1
    smm = getattr(mi, "smm", None) if mi is not None else None
    if smm is not None:
        with contextlib.suppress(Exception):
            _timed(smm.shutdown, 10.0, "shared-memory shutdown")
    for p in multiprocessing.active_children():
        if p.pid in before:
            continue
        with contextlib.suppress(Exception):
            p.kill()
            multiprocessing.Process.join(p, 5)
            killed += 1
    return killed


@contextlib.contextmanager
def run(
    net: BuiltNetwork, *, timeout: float = RUN_TIMEOUT, stop_timeout: float = STOP_TIMEOUT
) -> Iterator[LavaRun]:
    """Context manager around a Lava run that always stops it (see the module docstring).

    Args:
        net: A network from :func:`lava_bridge.build`.
        timeout: Seconds allowed for each blocking call (a run, a read).
        stop_timeout: Seconds allowed for ``stop()``.

    Raises:
        LavaTimeoutError: A call or ``stop()`` did not return in time (children are killed).
        LavaRunError: Lava raised while running.
    """
    if not isinstance(net, BuiltNetwork):
        raise LavaRunError(
            f"run() expected a BuiltNetwork from lava_bridge.build; got {type(net).__name__}."
        )
    before = {p.pid for p in multiprocessing.active_children()}
    session = LavaRun(net, timeout)
    failed = False
    with _children_ignore_sigint():
        try:
            yield session
        except BaseException:
            failed = True
            raise
        finally:
            session.closed = True
            _stop(net, session, before, stop_timeout, raise_errors=not failed)


@contextlib.contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Let Lava's child processes ignore Ctrl-C, while this process still gets it.

    Lava forks its processes during a run, and a forked child inherits this process's Python
    signal handlers. Ctrl-C in a terminal reaches the whole process group; the children would each
    print a ``KeyboardInterrupt`` traceback, although this process stops (or kills) them anyway.
    The handler installed here ignores SIGINT in any other process and behaves like the previous
    handler in this one; the previous handler is restored on exit.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return
    parent = os.getpid()

    def handler(signum, frame) -> None:
        if os.getpid() != parent or previous is signal.SIG_IGN:
            return
        if callable(previous):
            previous(signum, frame)
        else:  # SIG_DFL
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop(
    net: BuiltNetwork, session: LavaRun, before: set, stop_timeout: float, raise_errors: bool
) -> None:
    rt, mi = _runtime_internals(net)
    if not session.started or rt is None:
        return
    error: BaseException | None = None
    if session.stuck:
        error = LavaTimeoutError("Lava did not respond; stop() was skipped.")
    else:
        try:
            _timed(net.anchor.stop, stop_timeout, "stop()")
        except BaseException as e:  # noqa: BLE001 - cleaned up below, reported after
            error = e
    leftovers = [p for p in multiprocessing.active_children() if p.pid not in before]
    if error is not None or leftovers:
        killed = _kill_children(before, mi)
        log.warning(
            "Lava stop() %s; killed %d leftover child processes.",
            "failed" if error is not None else "left children",
            killed,
        )
    if isinstance(error, KeyboardInterrupt):  # Ctrl-C during stop(): the children were killed
        raise KeyboardInterrupt from None
    if error is not None and raise_errors:
        if isinstance(error, LavaRunError):
            raise error
        raise LavaRunError(
            f"Lava stop() failed: {type(error).__name__}: {error}. The child processes were killed."
        ) from error
    if error is not None:
        log.warning(
            "Lava stop() failed after an earlier error: %s: %s", type(error).__name__, error
        )


@dataclass(frozen=True)
class LavaOutput:
    """Spikes of one Lava run of one sample.

    Attributes:
        spikes: Output layer spikes ``[num_steps, C]`` (Lava's time axis: lags the input by L).
        layer_spikes: Every layer's spikes ``[num_steps, n_l]`` if recorded, else ``None``.
    """

    spikes: np.ndarray
    layer_spikes: tuple[np.ndarray, ...] | None


def run_spec(
    spec: NetworkSpec,
    sample,
    *,
    num_steps: int | None = None,
    record_layers: bool = False,
    timeout: float = RUN_TIMEOUT,
) -> LavaOutput:
    """Build ``spec`` for one sample ``[T, *input_shape]``, run it in Lava, stop, return the spikes."""
    net = build(spec, sample, num_steps=num_steps, record_layers=record_layers)
    with run(net, timeout=timeout) as session:
        session.run()
        layers = tuple(session.spikes(i) for i in range(spec.num_layers)) if record_layers else None
        out = layers[-1] if layers is not None else session.spikes()
    return LavaOutput(spikes=out, layer_spikes=layers)
