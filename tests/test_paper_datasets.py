"""The paper's datasets (N-MNIST, SHD) in the reproduction: the documented commands run offline
on synthetic events, their tables name the data, and missing recordings say where they go."""

import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from snntorch_async.app.sweep_run import _draw, load_job_data, prepare_data, run_job
from snntorch_async.app.sweep_spec import parse_spec
from snntorch_async.data import DatasetNotFoundError
from snntorch_async.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "paper_claim.py"
#: What shrinks a documented command to a few seconds (appended, so it overrides).
TINY = ["--synthetic", "--quick", "--serial", "--limit", "8", "--steps", "8", "--hidden", "16"]


def _paper_claim():
    spec = importlib.util.spec_from_file_location("paper_claim", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def documented(name: str) -> list[str]:
    """The command for ``--dataset name`` that README.md and docs/training.md both show."""
    pattern = rf"^python benchmarks/paper_claim\.py --dataset {name} [^\n`#]*"
    found = [
        {m.strip() for m in re.findall(pattern, (ROOT / doc).read_text(), flags=re.M)}
        for doc in ("README.md", "docs/training.md")
    ]
    real = [c for c in found[0] & found[1] if "--synthetic" not in c]
    assert len(real) == 1, f"expected one shared {name} command, found {found}"
    return shlex.split(real[0])[2:]  # without `python benchmarks/paper_claim.py`


def _tiny_spec(tmp_path, **data):
    return parse_spec(
        {
            "sweep": {"out": str(tmp_path), "seeds": [0]},
            "model": {"zoo": data.pop("zoo", "nmnist_mlp"), "hidden": 4},
            "data": {"steps": 3, **data},
            "train": {"max_batches": 1, "scheduler": [{"name": "s", "type": "LayerSync"}]},
            "eval": [{"name": "e", "type": "LayerSync"}],
        }
    )


@pytest.mark.slow
@pytest.mark.parametrize("name, zoo", [("nmnist", "nmnist_mlp"), ("shd", "shd_mlp")])
def test_documented_command_runs_offline_on_synthetic_events(tmp_path, name, zoo):
    argv = documented(name) + TINY + ["--out", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "FAILED" not in proc.stdout and f"SYNTHETIC {name}-like events" in proc.stdout
    for regime in ("reference", "contrast"):
        md = (tmp_path / f"paper_claim_{name}-synthetic_{regime}.md").read_text()
        assert md.startswith(f"# Sync-trained vs async-trained, {regime} regime ({name}, SYNTHETIC")
        assert "not a measurement of" in md and "Failed jobs" not in md
        rows = [line for line in md.splitlines() if line.startswith("| ") and "trained (" in line]
        assert len(rows) == 15  # 3 trained x 5 executed
        assert all(r.startswith(f"| {name} (SYNTHETIC events) | ") for r in rows)
        table = json.loads((tmp_path / f"paper_claim_{name}-synthetic_{regime}.json").read_text())
        assert all(len(v["accuracy"]) == 1 for v in table.values()) and len(table) == 15
        records = list((tmp_path / "sweep" / f"{name}-synthetic-{regime}" / "jobs").glob("*.json"))
        assert len(records) == 3
        for rec in map(json.loads, (p.read_text() for p in records)):
            job = rec["job"]
            assert job["data"]["dataset"] == name and job["data"]["synthetic"] is True
            assert job["data"]["limit"] == 8 and job["model"]["zoo"] == zoo
            assert job["model"]["bias"] is (regime == "contrast")


def test_reproduction_on_synthetic_shd_in_process(tmp_path, capsys):
    """The fast twin of the test above (one regime, in this process)."""
    pc = _paper_claim()
    pc.main(documented("shd") + TINY + ["--regime", "reference", "--out", str(tmp_path)])
    md = (tmp_path / "paper_claim_shd-synthetic_reference.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| shd (SYNTHETIC events) | ")]
    assert len(rows) == 15 and "Failed jobs" not in md
    assert "zoo.shd_mlp (700-16-20 Leaky" in md and "--dataset shd --root data --synthetic" in md
    assert "| spike density at random F=8 <= 0.5x |" in md
    assert "SYNTHETIC shd-like events" in capsys.readouterr().out


def test_missing_recordings_stop_the_script_and_say_where_they_go(tmp_path):
    pc = _paper_claim()
    with pytest.raises(SystemExit) as err:
        pc.main(["--dataset", "shd", "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    msg = str(err.value)
    assert f"place it at {tmp_path / 'SHD' / 'shd_train.h5.zip'}" in msg and "--synthetic" in msg
    assert not (tmp_path / "o").exists()  # stopped before any job ran
    # a sweep job (snntorch-async sweep) raises the same error
    spec = _tiny_spec(tmp_path / "out", dataset="nmnist", root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"place it at .*NMNIST[/\\]train\.zip"):
        run_job(spec.jobs[0], spec.out)


def test_digits_jobs_keep_their_keys_and_tonic_options_need_a_tonic_dataset(tmp_path):
    pc = _paper_claim()
    args = lambda *a: pc.argparse.Namespace(  # noqa: E731
        **{
            **dict(
                forward_group_size=8,
                gradient_rule=None,
                out=tmp_path,
                seeds=1,
                hidden=64,
                steps=20,
                epochs=1,
                max_batches=0,
                root="data",
                synthetic=False,
                limit=0,
            ),
            **dict(a),
        }
    )
    digits = parse_spec(pc.spec_dict(args(("dataset", "digits")), "reference"))
    # exactly the data and model settings of the digits jobs before tonic came in
    assert digits.jobs[0].data == {
        "dataset": "digits",
        "steps": 20,
        "batch_size": 32,
        "test_batch_size": 128,
    }
    assert set(digits.jobs[0].model) == {"zoo", "hidden", "beta", "threshold", "bias", "init"}
    assert digits.jobs[0].model["zoo"] == "digits_mlp2" and digits.out == tmp_path / "sweep" / (
        "reference"
    )
    real = parse_spec(pc.spec_dict(args(("dataset", "nmnist")), "reference"))
    synth = parse_spec(pc.spec_dict(args(("dataset", "nmnist"), ("synthetic", True)), "reference"))
    assert (
        real.jobs[0].model["zoo"] == "nmnist_mlp" and Path(real.jobs[0].data["root"]).is_absolute()
    )
    # synthetic records can never stand in for real ones: other keys, another folder
    assert real.jobs[0].key != synth.jobs[0].key and real.out != synth.out
    with pytest.raises(ConfigError, match="`synthetic` only apply to the tonic datasets"):
        _tiny_spec(tmp_path, dataset="digits", synthetic=True)
    with pytest.raises(ConfigError, match=r"dataset 'dvs' is not one a sweep job loads"):
        _tiny_spec(tmp_path, dataset="dvs")
    with pytest.raises(SystemExit):  # argparse: --synthetic is for nmnist / shd
        pc.main(["--synthetic", "--out", str(tmp_path)])


def test_a_model_that_does_not_fit_the_data_names_the_one_that_does(tmp_path):
    spec = _tiny_spec(tmp_path, zoo="digits_mlp2", dataset="shd", synthetic=True, limit=2)
    with pytest.raises(
        ConfigError, match=r"takes per-step inputs \[64\].*gives \[1, 700\].*'shd_mlp'"
    ):
        run_job(spec.jobs[0], spec.out)


@pytest.mark.parametrize(
    "name, shape, classes", [("nmnist", (2, 34, 34), 10), ("shd", (1, 700), 20)]
)
def test_synthetic_data_has_the_sensor_size_and_classes(name, shape, classes):
    data = {"dataset": name, "steps": 5, "root": "nowhere", "synthetic": True, "limit": 0}
    train, test = load_job_data(data, seed=0)
    assert (len(train), len(test)) == (2000, 500)
    x, y = train[classes + 1]
    assert x.shape == (5, *shape) and y == 1 and set(x.unique().tolist()) == {0.0, 1.0}
    small, _ = load_job_data({**data, "limit": 2 * classes}, seed=0)
    assert len(small) == 2 * classes
    assert sorted({small[i][1] for i in range(len(small))}) == list(range(classes))
    assert torch.equal(small[3][0], train[3][0])  # the same recordings, only fewer
    assert not torch.equal(test[3][0], train[3][0])  # another stream for the test split


def test_limit_on_recordings_draws_across_classes_not_the_first_ones():
    ds = [(i, i // 10) for i in range(100)]  # listed class by class, as tonic lists N-MNIST
    pick = _draw(ds, 20)
    assert len(pick) == 20 and pick.indices == _draw(ds, 20).indices  # seeded
    assert len({ds[i][1] for i in pick.indices}) >= 5
    assert _draw(ds, 0) is ds and _draw(ds, 100) is ds


def test_recordings_are_opened_once_before_parallel_jobs(tmp_path, monkeypatch):
    """tonic extracts an archive on first opening: once in the driver, not in every job at once."""
    import snntorch_async.data.tonic as tonic_data

    for f in ("train.zip", "test.zip"):  # present (their content is never read here)
        (tmp_path / "NMNIST").mkdir(exist_ok=True)
        (tmp_path / "NMNIST" / f).write_bytes(b"")
    opened = []
    monkeypatch.setattr(tonic_data, "load_tonic", lambda *a, **k: opened.append((a, k)))

    def spec(**data):
        return parse_spec(
            {
                "sweep": {"out": str(tmp_path / "out"), "seeds": [0, 1]},
                "model": {"zoo": "nmnist_mlp"},
                "data": data,
                "train": {
                    "scheduler": [
                        {"name": "a", "type": "LayerSync"},
                        {"name": "b", "type": "RandomAsync"},
                    ]
                },
                "eval": [{"name": "e", "type": "LayerSync"}],
            }
        )

    prepare_data(spec(dataset="nmnist", root=str(tmp_path), steps=7).jobs, echo=lambda m: None)
    assert [(a, k["train"]) for a, k in opened] == [
        (("nmnist", str(tmp_path)), True),
        (("nmnist", str(tmp_path)), False),
    ]  # 4 jobs, one opening per split
    opened.clear()
    prepare_data(spec(dataset="nmnist", synthetic=True).jobs, echo=lambda m: None)
    prepare_data(spec(dataset="shd", root=str(tmp_path)).jobs, echo=lambda m: None)  # missing
    assert opened == []
