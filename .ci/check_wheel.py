"""CI stage 3: the installed wheel runs the native kernel with no C compiler on PATH.

Run by ``.ci/run`` with the wheel environment's python, ``PATH`` holding only that environment's
``bin`` and ``CC`` unset, from outside the repository (so the installed package is imported), with
``SNNTORCH_ASYNC_CACHE`` an empty folder (so nothing compiled earlier can stand in for the wheel's
library). Checks: no compiler is reachable; the kernel is the wheel's prebuilt library; an
asynchronous inference runs through it and equals the torch code bit for bit; one training step
runs through the native training path, with the same spikes as the torch code and gradients
within 1e-5; nothing was compiled.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import snntorch as snn
import snntorch.functional as SF
import torch
from torch import nn

import snntorch_async as sa
from snntorch_async import native

found = {c: shutil.which(c) for c in ("cc", "gcc", "clang", os.environ.get("CC") or "cc")}
assert not any(found.values()), f"a C compiler is reachable, the check needs none: {found}"
assert native._compiler() is None
site = Path(sa.__file__).resolve().parent
assert "site-packages" in site.parts, f"snntorch_async imported from {site}, not the wheel"
cache = Path(os.environ["SNNTORCH_ASYNC_CACHE"])
print(f"no C compiler on PATH ({os.environ['PATH']}); snntorch_async from {site}")

origin = native.library_origin()
print(f"native kernel: {origin}")
assert origin.kind == "prebuilt", origin
assert Path(origin.path).resolve().parent == site / "engine", origin.path

torch.manual_seed(0)
model = nn.Sequential(
    nn.Linear(20, 32),
    snn.Leaky(beta=0.9, init_hidden=True),
    nn.Linear(32, 5),
    snn.Leaky(beta=0.9, init_hidden=True, output=True),
)
with torch.no_grad():
    for m in model:
        if isinstance(m, nn.Linear):
            m.weight.mul_(4.0)
x = (torch.rand(10, 8, 20) < 0.3).float()
sched = sa.RandomAsync(forward_group_size=8, seed=0)
with torch.no_grad():
    r = sa.simulate(model, x, scheduler=sched)
    with native.use_native(False):
        ref = sa.simulate(model, x, scheduler=sched)
assert r.backend == "native", r.backend
assert ref.backend == "torch", ref.backend
assert r.spikes.sum() > 0, "no output spikes: the check would be vacuous"
assert torch.equal(r.spikes, ref.spikes) and torch.equal(r.synops, ref.synops)
print(
    f"inference (RandomAsync F=8): backend {r.backend}, {int(r.spikes.sum())} output spikes, "
    "identical to the torch code"
)

y = torch.randint(0, 5, (8,))


def grads(kernel: bool):
    model.zero_grad()
    with native.use_native(kernel):
        res = sa.simulate(model, x, scheduler=sched)
    SF.ce_rate_loss()(res.spikes, y).backward()
    return res, [p.grad.clone() for p in model.parameters()]


(rn, gn), (rt, gt) = grads(True), grads(False)
assert rn.backend == "native" and rt.backend == "torch", (rn.backend, rt.backend)
assert torch.equal(rn.spikes, rt.spikes)
worst = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)) for a, b in zip(gn, gt))
assert worst <= 1e-5 and any(float(g.abs().max()) > 0 for g in gt), worst
opt = torch.optim.SGD(model.parameters(), lr=0.05)
before = [p.detach().clone() for p in model.parameters()]
stats = sa.train_step(model, (x, y), scheduler=sched, optimizer=opt, loss_fn=SF.ce_rate_loss())
assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters())), "no update"
print(
    f"training step (RandomAsync F=8): backend native, loss {stats.loss:.4f}, spikes identical "
    f"to the torch code, gradients within {worst:.1e} relative; kernel threads: {native.threading()}"
)

left = sorted(p.name for p in cache.iterdir()) if cache.exists() else []
assert not left, f"something was compiled into {cache}: {left}"
print(f"wheel check: ok (python {sys.version.split()[0]})")
