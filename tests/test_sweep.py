"""Sweeps: the spec, one job alone, and the same jobs as Ray tasks (skipped without Ray)."""

import json
import sys

import pytest

from snntorch_async.app import cli
from snntorch_async.app.sweep_run import (
    RayEngine,
    SerialEngine,
    gather_table,
    job_paths,
    run_job,
    run_sweep,
)
from snntorch_async.app.sweep_spec import parse_spec
from snntorch_async.errors import ConfigError

try:
    import ray
except ImportError:  # the [cluster] extra is not installed
    ray = None
needs_ray = [
    pytest.mark.ray,
    pytest.mark.skipif(
        ray is None, reason="Ray is not installed (pip install 'snntorch-async[cluster]')"
    ),
]


def tiny(out, trains=None, seeds=(0, 1)):
    """2 training schedulers x 2 seeds = 4 jobs, each a few seconds."""
    trains = trains or [
        {"name": "sync", "type": "LayerSync"},
        {"name": "async F=4", "type": "RandomAsync", "forward_group_size": 4},
    ]
    return parse_spec(
        {
            "sweep": {"name": "tiny", "out": str(out), "seeds": list(seeds)},
            "model": {"zoo": "digits_mlp", "hidden": 8},
            "data": {"dataset": "digits", "steps": 4, "batch_size": 32, "test_batch_size": 400},
            "train": {"epochs": 2, "lr": 5e-3, "max_batches": 2, "scheduler": trains},
            "eval": [
                {"name": "LayerSync", "type": "LayerSync"},
                {
                    "name": "RandomAsync F=2",
                    "type": "RandomAsync",
                    "forward_group_size": 2,
                    "seed": 123,
                },
            ],
        }
    )


def _same(a: dict, b: dict) -> bool:
    return json.dumps(a["metrics"], sort_keys=True) == json.dumps(b["metrics"], sort_keys=True)


def test_spec_expands_to_the_grid_and_bad_specs_say_what_to_fix(tmp_path):
    spec = tiny(tmp_path)
    assert [(j.train_name, j.seed) for j in spec.jobs] == [
        ("sync", 0),
        ("async F=4", 0),
        ("sync", 1),
        ("async F=4", 1),
    ]
    assert len({j.key for j in spec.jobs}) == 4
    bad = {
        "model": {"zoo": "digits_mlp"},
        "train": {"scheduler": [{"name": "a", "type": "Fast"}]},
        "eval": [{"name": "e", "type": "LayerSync"}],
    }
    with pytest.raises(ConfigError, match=r"unknown type 'Fast'; expected one of LayerSync"):
        parse_spec(bad)
    with pytest.raises(ConfigError, match=r"\[model\]: missing `zoo`"):
        parse_spec({"train": {"scheduler": [{"name": "a", "type": "LayerSync"}]}})
    dup = dict(bad, train={"scheduler": [{"name": "a", "type": "LayerSync"}] * 2})
    with pytest.raises(ConfigError, match="share a name"):
        parse_spec(dup)
    with pytest.raises(ConfigError, match="`seeds` must be a non-empty list of ints"):
        parse_spec(dict(bad, sweep={"seeds": "0"}))


def test_cli_without_ray_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(
        '[model]\nzoo = "digits_mlp"\n[[train.scheduler]]\nname = "s"\ntype = "LayerSync"\n'
        '[[eval]]\nname = "e"\ntype = "LayerSync"\n'
    )
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert cli.main(["sweep", str(spec)]) == 2
    assert "pip install 'snntorch-async[cluster]'" in capsys.readouterr().err


def test_cli_serial_sweep_writes_the_table(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(
        f'[sweep]\nname = "one"\nout = "{tmp_path / "out"}"\nseeds = [3]\n'
        '[model]\nzoo = "digits_mlp"\nhidden = 8\n[data]\nsteps = 4\n'
        '[train]\nmax_batches = 1\n[[train.scheduler]]\nname = "sync"\ntype = "LayerSync"\n'
        '[[eval]]\nname = "LayerSync"\ntype = "LayerSync"\n'
    )
    assert cli.main(["sweep", str(spec), "--serial"]) == 0
    md = (tmp_path / "out" / "one.md").read_text()
    assert "| sync | LayerSync | " in md and " ± 0.000 |" in md
    assert set(json.loads((tmp_path / "out" / "one.json").read_text())) == {"sync | LayerSync"}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_sweep_equals_the_jobs_run_one_by_one_and_resumes(tmp_path, local_ray):
    spec = tiny(tmp_path / "ray")
    outcomes = run_sweep(spec, RayEngine())
    assert all(o.record is not None and not o.skipped for o in outcomes)
    alone = [run_job(job, tmp_path / "alone") for job in spec.jobs]  # in this process
    for o, a in zip(outcomes, alone):
        assert _same(o.record, a), o.job.key
    # the grid really differs between jobs (seeds and schedulers matter)
    assert len({json.dumps(a["metrics"], sort_keys=True) for a in alone}) == 4
    table = gather_table(spec, outcomes, title="t", preamble="p")
    assert (
        "| async F=4 | RandomAsync F=2 | " in table[0]
        and len(table[1]["sync | LayerSync"]["accuracy"]) == 2
    )

    # a killed sweep: job 1 died before its record (its checkpoint survived), job 2 before anything
    p1, p2 = job_paths(spec.jobs[1], spec.out), job_paths(spec.jobs[2], spec.out)
    p1["record"].unlink()
    p2["record"].unlink()
    p2["checkpoint"].unlink()
    again = run_sweep(spec, RayEngine())
    assert [o.skipped for o in again] == [True, False, False, True]
    for k in (0, 3):  # finished jobs were not run again
        assert job_paths(spec.jobs[k], spec.out)["attempts"].read_text().count("\n") == 1
    for o, a in zip(again, alone):
        assert _same(o.record, a), o.job.key
    ck = json.loads(p1["record"].read_text())
    assert ck["key"] == spec.jobs[1].key


def test_ray_job_that_raises_is_retried_once_then_reported(tmp_path, local_ray):
    spec = tiny(
        tmp_path,
        seeds=(0,),
        trains=[
            {"name": "broken", "type": "RandomAsync", "forward_group_size": 0},
            {"name": "sync", "type": "LayerSync"},
        ],
    )
    outcomes = run_sweep(spec, RayEngine())
    broken, good = outcomes
    assert broken.record is None and "forward_group_size must be an integer >= 1" in broken.error
    assert good.record is not None and good.error is None  # the others went on
    paths = job_paths(broken.job, spec.out)
    assert paths["attempts"].read_text().count("\n") == 2  # tried, then retried once
    err = json.loads(paths["error"].read_text())
    assert "ConfigError" in err["error"] and "in __post_init__" in err["traceback"]
    text, _ = gather_table(spec, outcomes, title="t", preamble="p")
    assert "Failed jobs (1" in text and "broken, seed 0: ConfigError" in text
    # the serial engine follows the same policy
    serial = run_sweep(
        tiny(
            tmp_path / "serial",
            seeds=(0,),
            trains=[{"name": "broken", "type": "RandomAsync", "forward_group_size": 0}],
        ),
        SerialEngine(),
    )
    assert "forward_group_size must be" in serial[0].error


for _t in (
    test_ray_sweep_equals_the_jobs_run_one_by_one_and_resumes,
    test_ray_job_that_raises_is_retried_once_then_reported,
):
    for _m in needs_ray:
        _m(_t)
del _t, _m
