"""Functions run inside the worker processes of tests/test_distributed.py (module level, so that
the spawned workers can import them)."""

import os
import signal

import snntorch as snn
import snntorch.functional as SF
import torch
import torch.distributed as dist
from snntorch import surrogate
from torch import nn

from snntorch_async import LayerSync, RandomAsync
from snntorch_async.data import SpikeDataset, make_loader
from snntorch_async.training import TrainConfig, TrainingInterrupted, fit, load_checkpoint
from snntorch_async.training import distributed as D

T, N_IN, N_CLASSES = 8, 12, 3


def net(seed=0, hidden=16):
    torch.manual_seed(seed)
    kw = dict(beta=0.8, threshold=0.5, init_hidden=True, spike_grad=surrogate.fast_sigmoid())
    return nn.Sequential(
        nn.Linear(N_IN, hidden),
        snn.Leaky(**kw),
        nn.Linear(hidden, N_CLASSES),
        snn.Leaky(**kw, output=True),
    )


def dataset(n=40, seed=0):
    """Class c drives inputs 4c..4c+3 at rate 0.6; the others fire at rate 0.1."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, N_CLASSES, (n,), generator=g)
    rate = torch.full((n, N_IN), 0.1)
    for c in range(N_CLASSES):
        rate[y == c, 4 * c : 4 * c + 4] = 0.6
    x = (torch.rand(n, T, N_IN, generator=g) < rate.unsqueeze(1)).to(torch.uint8)
    return SpikeDataset(x, y)


class SigintAt:
    """A loss that sends Ctrl-C to this process (``times`` times) during its n-th call on
    ``rank``: the second signal is what torchrun's forwarding of a terminal Ctrl-C looks like."""

    def __init__(self, n, rank, times=1):
        self.n, self.rank, self.times, self.calls, self.loss = n, rank, times, 0, SF.ce_rate_loss()

    def __call__(self, spk, y):
        self.calls += 1
        if self.calls == self.n and int(os.environ["RANK"]) == self.rank:
            for _ in range(self.times):
                signal.raise_signal(signal.SIGINT)
        return self.loss(spk, y)


class RaiseAt:
    def __init__(self, n, rank):
        self.n, self.rank, self.calls, self.loss = n, rank, 0, SF.ce_rate_loss()

    def __call__(self, spk, y):
        self.calls += 1
        if self.calls == self.n and int(os.environ["RANK"]) == self.rank:
            raise ValueError(f"rank {self.rank} fails on purpose at step {self.n}")
        return self.loss(spk, y)


def layersync_and_sampler(per_rank_batch):
    """fit owns the process group here (joins it from torchrun's environment)."""
    model = net()
    loader = make_loader(dataset(), batch_size=per_rank_batch, shuffle=True, seed=0)
    h = fit(
        model,
        loader,
        scheduler=LayerSync(),
        config=TrainConfig(epochs=2, lr=5e-3, seed=0),
        progress=False,
    )
    assert not dist.is_initialized()  # fit ended the group it created
    # the sampler fit uses, outside fit: which samples this rank sees in epochs 0 and 1
    group = D.Group(
        int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), torch.device("cpu"), False
    )
    sampler = D.shard(loader, group, seed=0).sampler
    seen = []
    for e in range(2):
        sampler.set_epoch(e)
        seen.append(list(sampler))
    return {
        "step_loss": h.step_loss,
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "seen": seen,
        "eval": h.eval_accuracy,
    }


def async_resume(ck_dir):
    """An existing process group (the user's) is used by fit and left running."""
    dist.init_process_group("gloo")
    sched = RandomAsync(forward_group_size=4, seed=1, spike_dropout=0.1)
    loader = lambda: make_loader(dataset(48), batch_size=6, shuffle=True, seed=2)  # noqa: E731
    cfg = lambda **kw: TrainConfig(**{"epochs": 2, "lr": 5e-3, "seed": 0, **kw})  # noqa: E731
    out = {}
    out["straight"] = fit(net(), loader(), scheduler=sched, config=cfg(), progress=False).step_loss
    ep = os.path.join(ck_dir, "epoch.pt")
    fit(net(), loader(), scheduler=sched, config=cfg(epochs=1, checkpoint_path=ep), progress=False)
    out["epoch_resumed"] = fit(
        net(seed=4),
        loader(),
        scheduler=sched,
        progress=False,
        config=cfg(checkpoint_path=ep),
        resume=True,
    ).step_loss
    # Ctrl-C on rank 1 only, twice (as torchrun forwards it): both ranks stop after the same
    # step, one checkpoint is written, every rank raises TrainingInterrupted
    mid = os.path.join(ck_dir, "mid.pt")
    try:
        fit(
            net(),
            loader(),
            scheduler=sched,
            config=cfg(checkpoint_path=mid, loss=SigintAt(3, 1, 2)),
            progress=False,
        )
        out["interrupted"] = None
    except TrainingInterrupted as e:
        out["interrupted"] = (len(e.history.step_loss), e.checkpoint_path)
    ck = load_checkpoint(mid)
    out["mid_ck"] = (ck["epoch"], ck["batch"], ck["world_size"], len(ck["rng_ranks"]))
    out["mid_resumed"] = fit(
        net(seed=5),
        loader(),
        scheduler=sched,
        progress=False,
        config=cfg(checkpoint_path=mid),
        resume=True,
    ).step_loss
    assert dist.is_initialized()
    dist.destroy_process_group()
    return out


def raising_rank():
    loader = make_loader(dataset(), batch_size=4, shuffle=True, seed=0)
    fit(
        net(),
        loader,
        scheduler=LayerSync(),
        config=TrainConfig(epochs=3, seed=0, loss=RaiseAt(2, 1)),
        progress=False,
    )
