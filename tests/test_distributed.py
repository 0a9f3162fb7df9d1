"""Data-parallel fit on CPU: 2 gloo processes launched through torch.distributed.run's API."""

import functools
import signal

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

import dist_workers as W
from snntorch_async import LayerSync, MomentumAsync, RandomAsync
from snntorch_async.data import collate_time_major
from snntorch_async.errors import ConfigError
from snntorch_async.schedulers.base import step_seed
from snntorch_async.training import Distributed, TrainConfig, fit, load_checkpoint
from snntorch_async.training import distributed as D

pytestmark = pytest.mark.distributed
B = 4  # per-rank batch


@functools.lru_cache(maxsize=None)
def _layersync_2ranks():
    return D.launch(W.layersync_and_sampler, B, nproc=2)


def test_reseeded_is_todays_seed_on_rank_0_and_differs_across_ranks():
    sync = LayerSync()
    assert sync.reseeded(7, 3) is sync and sync.reseeded(7) is sync  # deterministic: itself
    for cls in (RandomAsync, MomentumAsync):
        s = cls(forward_group_size=2, seed=11)
        assert s.reseeded(5).seed == (11 * 1_000_003 + 5) % 2**31  # the derivation fit always used
        assert repr(s.reseeded(5, 0)) == repr(s.reseeded(5))
        seeds = {s.reseeded(step, rank).seed for step in range(50) for rank in range(4)}
        assert len(seeds) == 200  # every (step, rank) its own spike order
    assert step_seed(11, 5, 0) == s.reseeded(5).seed


def test_two_ranks_of_batch_B_train_like_one_process_of_batch_2B():
    out = _layersync_2ranks()
    ds = W.dataset()
    # one process, batch 2B, the same permutation (DistributedSampler with a single replica)
    loader = DataLoader(
        ds,
        batch_size=2 * B,
        collate_fn=collate_time_major,
        sampler=DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=0),
    )
    model = W.net()
    h = fit(
        model,
        loader,
        scheduler=LayerSync(),
        config=TrainConfig(epochs=2, lr=5e-3, seed=0),
        progress=False,
    )
    assert len(h.step_loss) == 10  # 40 samples / 8 per step, 2 epochs
    for rank in (0, 1):
        assert out[rank]["step_loss"] == pytest.approx(h.step_loss, abs=1e-6, rel=0)
        for k, v in model.state_dict().items():
            torch.testing.assert_close(out[rank]["state"][k], v, atol=1e-6, rtol=0)
    # and training did move the weights (the comparison is not between two initial models)
    assert (out[0]["state"]["0.weight"] - W.net().state_dict()["0.weight"]).abs().max() > 1e-3


def test_sampler_visits_every_sample_exactly_once_per_epoch():
    out = _layersync_2ranks()
    for e in (0, 1):
        both = out[0]["seen"][e] + out[1]["seen"][e]
        assert sorted(both) == list(range(40))
        assert len(out[0]["seen"][e]) == len(out[1]["seen"][e]) == 20
    assert out[0]["seen"][0] != out[0]["seen"][1]  # re-seeded per epoch


def test_async_two_ranks_checkpoint_resume_and_ctrl_c(tmp_path):
    out = D.launch(W.async_resume, str(tmp_path), nproc=2)
    r0, r1 = out[0], out[1]
    assert len(r0["straight"]) == 8 and r0["straight"] == r1["straight"]  # reduced statistics
    assert r0["epoch_resumed"] == r0["straight"]
    # Ctrl-C on rank 1 (twice): both ranks stopped after the same 3 steps, rank 0 wrote it
    assert r0["interrupted"][0] == r1["interrupted"][0] == 3
    assert r0["interrupted"][1] == r1["interrupted"][1] == str(tmp_path / "mid.pt")
    assert r0["mid_ck"] == (0, 3, 2, 2)  # epoch 0, batch 3, 2 ranks, both ranks' generators
    assert r0["mid_resumed"] == r0["straight"] and r1["mid_resumed"] == r1["straight"]
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.timeout(180)
def test_a_raising_rank_ends_the_job_with_its_error():
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(ChildFailedError, match="rank 1 fails on purpose at step 2"):
        D.launch(W.raising_rank, nproc=2)
    assert signal.getsignal(signal.SIGINT) is before  # the launcher's handler is not left behind


def test_resume_with_another_world_size_is_refused(tmp_path):
    out = _layersync_2ranks()
    assert out[0]["step_loss"]  # (a 2-rank checkpoint written by hand below)
    model = W.net()
    loader = DataLoader(W.dataset(), batch_size=8, collate_fn=collate_time_major)
    fit(
        model,
        loader,
        scheduler=LayerSync(),
        config=TrainConfig(checkpoint_path=str(tmp_path / "c.pt")),
        progress=False,
    )
    ck = load_checkpoint(tmp_path / "c.pt")
    ck["world_size"], ck["rng_ranks"] = 2, [ck["rng"], ck["rng"]]
    torch.save(ck, tmp_path / "c.pt")
    with pytest.raises(Exception, match="written by 2 training process"):
        fit(
            W.net(),
            loader,
            scheduler=LayerSync(),
            resume=True,
            progress=False,
            config=TrainConfig(epochs=2, checkpoint_path=str(tmp_path / "c.pt")),
        )


def test_distributed_settings_are_checked(monkeypatch):
    with pytest.raises(ConfigError, match="rank must be an int in"):
        Distributed(world_size=2, rank=2)
    with pytest.raises(ConfigError, match="TrainConfig.distributed must be"):
        TrainConfig(distributed={"world_size": 2})
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE='two' is not an integer"):
        Distributed.from_env()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert D.join() is None  # one process: nothing to join, fit trains as always
    with pytest.raises(ConfigError, match="nproc must be an int"):
        D.launch(W.raising_rank, nproc=0)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cli_train_nproc_2_and_ctrl_c_on_the_launcher(tmp_path):
    """`snntorch-async train --nproc 2`, then Ctrl-C to the launcher (it forwards SIGINT to the
    workers, which got the terminal's already): one checkpoint, exit 130, no process left."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(
        os.environ,
        PYTHONPATH=f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        OMP_NUM_THREADS="1",
    )
    ck = tmp_path / "ck.pt"
    cmd = [
        sys.executable,
        "-m",
        "snntorch_async",
        "train",
        "--nproc",
        "2",
        "--model",
        "digits_mlp",
        "--hidden",
        "8",
        "--steps",
        "4",
        "--epochs",
        "200",
        "--checkpoint",
        str(ck),
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not ck.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        if not ck.exists():  # never wait on a run that does not get there: stop it, show why
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("no checkpoint within 180 s: " + proc.communicate(timeout=30)[1][-3000:])
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: every process
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted: checkpoint saved at" in err
    ckpt = load_checkpoint(ck)
    assert ckpt["world_size"] == 2 and ckpt["epoch"] < 200
    left = subprocess.run(
        ["ps", "-o", "pid,stat,args", "-g", str(proc.pid)], capture_output=True, text=True
    ).stdout.splitlines()[1:]
    assert not [p for p in left if " Z" not in p], left  # no worker left running
