"""The snntorch-async command line: help, errors with their fix, train/evaluate, Ctrl-C, demo."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from snntorch_async.cli import main

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = ["--limit", "64", "--steps", "4", "--batch-size", "32"]


def _err(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("cmd", ["demo", "train", "evaluate", "export", "verify"])
def test_every_subcommand_has_help(capsys, cmd):
    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0
    assert f"usage: snntorch-async {cmd}" in capsys.readouterr().out


def test_python_dash_m_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "snntorch_async", "--help"], env=ENV,
                         capture_output=True, text=True, check=True).stdout
    for cmd in ("demo", "train", "evaluate", "export", "verify"):
        assert cmd in out


def test_unknown_dataset(capsys):
    err = _err(capsys, ["train", "--dataset", "cifar"])
    assert "unknown dataset 'cifar'; expected one of digits, nmnist, shd, dvsgesture" in err


def test_missing_dataset_file_says_where_to_put_it(capsys, tmp_path):
    err = _err(capsys, ["train", "--model", "nmnist_mlp", "--root", str(tmp_path)])
    assert f"place it at {tmp_path / 'NMNIST' / 'train.zip'}" in err


def test_model_file_without_model(capsys, tmp_path):
    f = tmp_path / "net.py"
    f.write_text("x = 1\n")
    err = _err(capsys, ["train", "--model-file", str(f)])
    assert "defines neither `model` nor `build_model`" in err


def test_unknown_zoo_model_and_scheduler_flags(capsys):
    assert "unknown --model 'resnet'" in _err(capsys, ["train", "--model", "resnet"])
    err = _err(capsys, ["train", "-F", "4"])
    assert "-F only apply to the asynchronous schedulers" in err
    err = _err(capsys, ["train", "--scheduler", "random", "-F", "0"])
    assert "forward_group_size must be an integer >= 1" in err


def test_resume_without_checkpoint(capsys, tmp_path):
    err = _err(capsys, ["train", "--resume", "--checkpoint", str(tmp_path / "none.pt")])
    assert "--resume: no checkpoint at" in err


def test_demo_output_folder_that_cannot_be_written(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert "exists and is a file" in _err(capsys, ["demo", "--quick", "--out", str(f)])
    assert "Cannot write the report folder" in _err(capsys, ["demo", "--out", str(f / "sub")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_train_evaluate_and_checkpoint_from_another_architecture(capsys, tmp_path):
    ck = tmp_path / "run" / "net.pt"
    assert main(["train", "--hidden", "8", "--epochs", "1", "--checkpoint", str(ck), *TINY]) == 0
    assert "checkpoint saved at" in capsys.readouterr().out
    assert main(["evaluate", str(ck), "--scheduler", "random", "-F", "4", *TINY]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "decision_forward_steps" in out and "spikes per layer" in out
    # Same file, but its metadata now names a wider hidden layer: a different architecture.
    meta_path = tmp_path / "run" / "net.pt.meta.json"
    meta = json.loads(meta_path.read_text())
    meta["model_settings"] = {"hidden": 16}
    meta_path.write_text(json.dumps(meta))
    err = _err(capsys, ["evaluate", str(ck), *TINY])
    assert "does not fit the model 'digits_mlp'" in err and "another architecture" in err
    err = _err(capsys, ["train", "--model", "digits_conv", "--resume", "--checkpoint", str(ck)])
    assert "was trained with 'digits_mlp', not 'digits_conv'" in err


def test_evaluate_missing_checkpoint_and_metadata(capsys, tmp_path):
    assert "does not exist" in _err(capsys, ["evaluate", str(tmp_path / "x.pt")])
    (tmp_path / "x.pt").write_bytes(b"")
    assert "x.pt.meta.json is missing" in _err(capsys, ["evaluate", str(tmp_path / "x.pt")])


def test_ctrl_c_saves_a_checkpoint_that_resume_continues(tmp_path):
    ck = tmp_path / "c.pt"
    cmd = [sys.executable, "-m", "snntorch_async", "train", "--hidden", "8", "--checkpoint",
           str(ck), "--limit", "256", "--steps", "4", "--batch-size", "16"]
    proc = subprocess.Popen([*cmd, "--epochs", "1000"], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        seen = ""
        while "epoch 2/" not in seen and time.monotonic() < deadline:
            seen += proc.stderr.read(64)  # tqdm writes the progress to stderr
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted: checkpoint saved at" in err and "--resume" in err
    assert ck.is_file()
    done = subprocess.run([*cmd, "--epochs", "3", "--resume"], env=ENV, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    losses = next(line for line in done.stdout.splitlines() if line.startswith("loss:"))
    assert len(losses.split()) == 1 + 3  # the resumed history covers all three epochs


def test_demo_quick_writes_the_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "| trained | executed | accuracy |" in text
    assert "Koopman et al." in text and "Measured here:" in text
    assert "## Lava" in text
    for png in ("rasters.png", "accuracy_latency.png", "spikes_per_layer.png",
                "training_curves.png"):
        assert (out / png).stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
    assert f"report written to {out / 'report.md'}" in capsys.readouterr().out


def test_export_spec_and_verify_without_lava(capsys, tmp_path, monkeypatch):
    from snntorch_async import integration

    ck = tmp_path / "net.pt"
    assert main(["train", "--hidden", "8", "--epochs", "1", "--checkpoint", str(ck), *TINY]) == 0
    assert main(["export", str(ck), "--out", str(tmp_path / "x"), "--formats", "spec"]) == 0
    assert (tmp_path / "x" / "net.npz").is_file()
    capsys.readouterr()
    monkeypatch.setattr(integration, "lava_available", lambda: False)
    assert main(["verify", str(tmp_path / "x" / "net.npz")]) == 3
    assert "pip install 'snntorch-async[lava]'" in capsys.readouterr().err


def test_export_netx_needs_lava_bias_timing_and_the_flags_reach_the_api(capsys, tmp_path):
    ck = tmp_path / "net.pt"
    assert main(["train", "--hidden", "8", "--epochs", "1", "--checkpoint", str(ck), *TINY]) == 0
    err = _err(capsys, ["export", str(ck), "--out", str(tmp_path / "x"), "--formats", "netx"])
    assert "bias_timing 'synaptic'" in err and "--bias-timing lava" in err
    assert not (tmp_path / "x" / "net.h5").exists()
    argv = ["export", str(ck), "--out", str(tmp_path / "y"), "--formats", "netx", "spec",
            "--bias-timing", "lava", "--approximate-reset"]
    assert main(argv) == 0 and (tmp_path / "y" / "net.h5").is_file()
    from lava_bridge import load

    assert load(tmp_path / "y" / "net.npz").bias_timing == "lava"


@pytest.mark.lava
@pytest.mark.timeout(240)
def test_verify_checkpoint_on_lava(capsys, tmp_path):
    pytest.importorskip("lava", reason="Lava needs Python 3.10 and the [lava] extra: run `make "
                        "test`, or pip install 'snntorch-async[lava]' on Python 3.10")
    ck = tmp_path / "net.pt"
    assert main(["train", "--hidden", "8", "--epochs", "1", "--checkpoint", str(ck), *TINY]) == 0
    capsys.readouterr()
    assert main(["verify", str(ck), "--samples", "1", "--steps", "4"]) == 0
    out = capsys.readouterr().out
    assert "Lava (float) vs" in out and "Lava (fixed point) vs emulate: 0 mismatching" in out
