"""The snntorch-async command line: help, errors with their fix, train/evaluate, Ctrl-C, demo."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from snntorch_async.app.cli import main

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = ["--limit", "64", "--steps", "4", "--batch-size", "32"]


def _err(capsys, argv) -> str:
    """The last stderr line of a failing command (exit status 2, no traceback)."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "error: " in last, err
    return last


@pytest.mark.parametrize("cmd", ["demo", "train", "evaluate", "export", "verify"])
def test_every_subcommand_has_help(capsys, cmd):
    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0
    assert f"usage: snntorch-async {cmd}" in capsys.readouterr().out


def test_python_dash_m_help_lists_subcommands():
    out = subprocess.run(
        [sys.executable, "-m", "snntorch_async", "--help"],
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
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
    assert "--model: unknown model 'resnet'" in _err(capsys, ["train", "--model", "resnet"])
    err = _err(capsys, ["train", "-F", "4"])
    assert "-F only apply to the asynchronous schedulers" in err
    err = _err(capsys, ["train", "--scheduler", "random", "-F", "0"])
    assert "argument -F/--forward-group-size: expected a whole number >= 1, got 0" in err


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
    assert sorted(p.name for p in ck.parent.iterdir()) == ["net.pt"]  # one file, no sidecar
    # Same file, but its recipe now names a wider hidden layer: a different architecture.
    ckd = torch.load(ck, weights_only=True)
    ckd["metadata"]["model_settings"] = {"hidden": 16}
    torch.save(ckd, ck)
    err = _err(capsys, ["evaluate", str(ck), *TINY])
    assert "do not fit the model 'digits_mlp'" in err and "Fix: use the model it was trained" in err
    err = _err(capsys, ["train", "--model", "digits_conv", "--resume", "--checkpoint", str(ck)])
    assert "was trained with 'digits_mlp', not 'digits_conv'" in err


def test_evaluate_missing_empty_and_old_sidecar_checkpoints(capsys, tmp_path):
    x = tmp_path / "x.pt"
    assert "does not exist" in _err(capsys, ["evaluate", str(x)])
    x.write_bytes(b"")
    err = _err(capsys, ["evaluate", str(x)])
    assert f"CHECKPOINT {x}:" in err and "empty (0 bytes)" in err
    # A checkpoint of the old layout (recipe in a .meta.json sidecar) is refused clearly.
    import snntorch_async as sa

    model = torch.nn.Sequential(torch.nn.Linear(64, 10))
    sa.fit  # noqa: B018 - imported
    from snntorch_async.checkpoint import FORMAT, architecture, fingerprint

    arch = architecture(model)
    torch.save(
        {
            "format": FORMAT,
            "fingerprint": fingerprint(arch),
            "architecture": arch,
            "model": model.state_dict(),
        },
        x,
    )
    (tmp_path / "x.pt.meta.json").write_text(json.dumps({"model": "digits_mlp"}))
    err = _err(capsys, ["evaluate", str(x)])
    assert "older snntorch-async" in err and "x.pt.meta.json" in err and "retrain" in err


def test_ctrl_c_saves_a_checkpoint_that_resume_continues(tmp_path):
    ck = tmp_path / "c.pt"
    cmd = [
        sys.executable,
        "-m",
        "snntorch_async",
        "train",
        "--hidden",
        "8",
        "--checkpoint",
        str(ck),
        "--limit",
        "256",
        "--steps",
        "4",
        "--batch-size",
        "16",
    ]
    proc = subprocess.Popen(
        [*cmd, "--epochs", "1000"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
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
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temp, lock or sidecar
    done = subprocess.run(
        [*cmd, "--epochs", "3", "--resume"], env=ENV, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    losses = next(line for line in done.stdout.splitlines() if line.startswith("loss:"))
    assert len(losses.split()) == 1 + 3  # the resumed history covers all three epochs


def test_demo_quick_writes_the_report(tmp_path, capsys, monkeypatch):
    import numpy as np

    from snntorch_async.app import demo
    from snntorch_async.app.figures import raster_points

    seen = []
    write = demo.write_report
    monkeypatch.setattr(demo, "write_report", lambda res, out: seen.append(res) or write(res, out))
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    # rasters.png: LayerSync vs RandomAsync of one sample, each spike at its forward step's share
    (sync_title, sync), (async_title, asyn) = seen[0].rasters.items()
    assert "LayerSync" in sync_title and "RandomAsync" in async_title
    assert not np.array_equal(sync.spikes, asyn.spikes)  # the panels show a difference
    (xs, ys), (xa, _) = raster_points(sync), raster_points(asyn)
    hidden = sync.sizes[0]
    assert set((xs - np.floor(xs))[ys < hidden].tolist()) == {0.25}  # layer 1 of 2, then output
    assert set((xs - np.floor(xs))[ys >= hidden].tolist()) == {0.75}
    assert len(set((xa - np.floor(xa)).round(6).tolist())) > 2  # spread over forward steps
    text = (out / "report.md").read_text()
    assert "| trained | executed | accuracy |" in text
    assert "Koopman et al." in text and "Measured here:" in text
    assert "## Lava" in text
    for png in (
        "rasters.png",
        "accuracy_latency.png",
        "spikes_per_layer.png",
        "training_curves.png",
    ):
        assert (out / png).stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
    assert f"report written to {out / 'report.md'}" in capsys.readouterr().out


def test_export_spec_and_verify_without_lava(capsys, tmp_path, monkeypatch):
    import lava_bridge

    ck = tmp_path / "net.pt"
    assert main(["train", "--hidden", "8", "--epochs", "1", "--checkpoint", str(ck), *TINY]) == 0
    assert main(["export", str(ck), "--out", str(tmp_path / "x"), "--formats", "spec"]) == 0
    assert (tmp_path / "x" / "net.npz").is_file()
    capsys.readouterr()
    monkeypatch.setattr(lava_bridge, "lava_available", lambda: False)
    assert main(["verify", str(tmp_path / "x" / "net.npz")]) == 3
    assert "pip install 'snntorch-async[lava]'" in capsys.readouterr().err


def test_export_netx_needs_lava_bias_timing_and_the_flags_reach_the_api(capsys, tmp_path):
    ck = tmp_path / "net.pt"
    assert main(["train", "--hidden", "8", "--epochs", "1", "--checkpoint", str(ck), *TINY]) == 0
    err = _err(capsys, ["export", str(ck), "--out", str(tmp_path / "x"), "--formats", "netx"])
    assert "--bias-timing synaptic" in err and "add --bias-timing lava" in err
    assert not (tmp_path / "x" / "net.h5").exists()
    # the default formats: refused before the spec is written, so nothing is left half-done
    err = _err(capsys, ["export", str(ck), "--out", str(tmp_path / "z")])
    assert "add --bias-timing lava" in err
    assert not list((tmp_path / "z").glob("*"))
    argv = [
        "export",
        str(ck),
        "--out",
        str(tmp_path / "y"),
        "--formats",
        "netx",
        "spec",
        "--bias-timing",
        "lava",
        "--approximate-reset",
    ]
    assert main(argv) == 0 and (tmp_path / "y" / "net.h5").is_file()
    from lava_bridge import load

    assert load(tmp_path / "y" / "net.npz").bias_timing == "lava"


@pytest.mark.lava
@pytest.mark.timeout(240)
def test_verify_checkpoint_on_lava(capsys, tmp_path):
    pytest.importorskip(
        "lava",
        reason="Lava needs Python 3.10 and the [lava] extra: run `make "
        "test`, or pip install 'snntorch-async[lava]' on Python 3.10",
    )
    ck = tmp_path / "net.pt"
    assert main(["train", "--hidden", "8", "--epochs", "1", "--checkpoint", str(ck), *TINY]) == 0
    capsys.readouterr()
    assert main(["verify", str(ck), "--samples", "1", "--steps", "4"]) == 0
    out = capsys.readouterr().out
    assert "Lava (float) vs" in out and "Lava (fixed point) vs emulate: 0 mismatching" in out


# ------------------------------------------------------------------------------------------
# First contact: fast help, one error style, every bad input refused, nothing lost.
# ------------------------------------------------------------------------------------------
def test_help_and_argument_errors_do_not_import_torch():
    code = (
        "import sys, time; t = time.perf_counter(); from snntorch_async.app.cli import main\n"
        "for argv in (['--help'], ['train', '--help'], ['train', '--epochs', '0']):\n"
        "    try: main(argv)\n"
        "    except SystemExit: pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', time.perf_counter() - t)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60
    )
    flag, seconds = res.stdout.split()[-2:]
    assert flag == "NO-TORCH", res.stdout
    assert float(seconds) < 0.5  # generous: it takes ~0.05 s without torch
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "snntorch_async", "--help"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0 and time.perf_counter() - t0 < 5  # interpreter start included


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "--epochs", "0"], "argument --epochs: expected a whole number >= 1, got 0"),
        (["train", "--epochs", "-1"], "argument --epochs: expected a whole number >= 1, got -1"),
        (["train", "--lr", "-0.1"], "argument --lr: expected a finite number > 0, got -0.1"),
        (["train", "--batch-size", "0"], "argument --batch-size: expected a whole number >= 1"),
        (["train", "--steps", "0"], "argument --steps: expected a whole number >= 1, got 0"),
        (["train", "--hidden", "0"], "argument --hidden: expected a whole number >= 1, got 0"),
        (["train", "--limit", "0"], "argument --limit: expected a whole number >= 1, got 0"),
        (["demo", "--epochs", "0"], "argument --epochs: expected a whole number >= 1, got 0"),
        (["verify", "x.npz", "--samples", "0"], "argument --samples: expected a whole number >= 1"),
        (["evaluate", "x.pt", "--limit", "0"], "argument --limit: expected a whole number >= 1"),
        (
            ["train", "--scheduler", "layersync", "-F", "4"],
            "-F only apply to the asynchronous schedulers (random, momentum, layerordered)",
        ),
    ],
)
def test_bad_values_are_refused_before_anything_runs(capsys, tmp_path, monkeypatch, argv, expected):
    monkeypatch.chdir(tmp_path)
    assert expected in _err(capsys, argv)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_model_file_with_an_unsupported_module(capsys, tmp_path):
    f = tmp_path / "net.py"
    f.write_text("import torch\nmodel = torch.nn.Sequential(torch.nn.LSTM(64, 10))\n")
    ck = tmp_path / "c.pt"
    err = _err(capsys, ["train", "--model-file", str(f), "--checkpoint", str(ck), *TINY])
    assert "LSTM" in err and "Fix" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.py"]  # no checkpoint, no lock


def test_debug_shows_the_traceback(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "snntorch_async", "evaluate", "--debug", str(tmp_path / "none.pt")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode != 0 and "Traceback" in res.stderr and "CliError" in res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "snntorch_async", "evaluate", str(tmp_path / "none.pt")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("snntorch-async evaluate: error: ")


def test_damaged_checkpoints_name_the_argument(capsys, tmp_path):
    ck = tmp_path / "net.pt"
    assert main(["train", "--hidden", "8", "--epochs", "1", "--checkpoint", str(ck), *TINY]) == 0
    data = ck.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    err = _err(capsys, ["evaluate", str(cut)])
    assert f"CHECKPOINT {cut}:" in err and "truncated or damaged" in err
    assert "weights_only=False" not in err and "Errno" not in err
    err = _err(capsys, ["verify", str(cut)]) if _has_lava() else "SOURCE"
    assert "SOURCE" in err


def _has_lava() -> bool:
    import lava_bridge

    return lava_bridge.lava_available()


def test_train_refuses_to_overwrite_and_two_writers(capsys, tmp_path):
    ck = tmp_path / "net.pt"
    args = ["train", "--hidden", "8", "--epochs", "1", "--checkpoint", str(ck), *TINY]
    assert main(args) == 0
    before = ck.read_bytes()
    err = _err(capsys, args)
    assert f"--checkpoint {ck} already exists. Fix: --resume to continue it, --overwrite" in err
    assert ck.read_bytes() == before
    (tmp_path / "net.pt.lock").write_text("12345")  # another run holds the path
    err = _err(capsys, [*args, "--overwrite"])
    assert "another run (pid 12345) is writing it" in err and "delete the lock file" in err
    assert ck.read_bytes() == before
    (tmp_path / "net.pt.lock").unlink()
    assert main([*args, "--overwrite", "--seed", "1"]) == 0
    assert ck.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pt"]


def test_same_command_twice_gives_the_same_checkpoint(capsys, tmp_path):
    runs = []
    for name in ("a.pt", "b.pt"):
        ck = tmp_path / name
        assert (
            main(
                [
                    "train",
                    "--hidden",
                    "8",
                    "--epochs",
                    "2",
                    "--checkpoint",
                    str(ck),
                    "--scheduler",
                    "random",
                    "-F",
                    "4",
                    "--seed",
                    "3",
                    *TINY,
                ]
            )
            == 0
        )
        runs.append(torch.load(ck, weights_only=True))
    a, b = runs
    assert a["history"] == b["history"] and a["history"]["loss"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["metadata"] == b["metadata"]
    c = tmp_path / "c.pt"  # another seed gives other weights: the test can fail
    assert (
        main(
            [
                "train",
                "--hidden",
                "8",
                "--epochs",
                "2",
                "--checkpoint",
                str(c),
                "--scheduler",
                "random",
                "-F",
                "4",
                "--seed",
                "4",
                *TINY,
            ]
        )
        == 0
    )
    other = torch.load(c, weights_only=True)
    assert not torch.equal(other["model"]["0.weight"], a["model"]["0.weight"])


def test_a_failing_writer_leaves_nothing_behind(capsys, tmp_path, monkeypatch):
    import errno

    real_save = torch.save

    def full_disk(obj, f, *a, **k):  # writes half a checkpoint, then the disk is full
        real_save(obj, f, *a, **k)
        with open(f, "r+b") as fh:
            fh.truncate(100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    ck = tmp_path / "net.pt"
    err = _err(capsys, ["train", "--hidden", "8", "--epochs", "1", "--checkpoint", str(ck), *TINY])
    assert f"Cannot write the checkpoint {ck}: No space left on device. Fix: free some" in err
    assert list(tmp_path.iterdir()) == []  # no partial file, no temporary, no lock
    monkeypatch.setattr(torch, "save", real_save)
    assert main(["train", "--hidden", "8", "--epochs", "1", "--checkpoint", str(ck), *TINY]) == 0
    import numpy as np

    def half_npz(file, *a, **k):
        Path(file).write_bytes(b"PK\x03\x04 half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", half_npz)
    out = tmp_path / "x"
    err = _err(capsys, ["export", str(ck), "--out", str(out), "--formats", "spec"])
    assert "No space left on device" in err and "Nothing was written" in err
    assert list(out.iterdir()) == []


def test_evaluate_limit_beyond_the_split_is_clipped_with_a_note(capsys, tmp_path):
    ck = tmp_path / "net.pt"
    assert main(["train", "--hidden", "8", "--epochs", "1", "--checkpoint", str(ck), *TINY]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(ck), "--steps", "4", "--limit", "100000"]) == 0
    cap = capsys.readouterr()
    assert "note: --limit 100000 is more than the 449 samples of the split; using 449." in cap.err
    assert "test (449 samples)" in cap.out


@pytest.mark.slow
def test_demo_is_deterministic_for_its_seed(tmp_path):
    from snntorch_async.app.demo import QUICK, run_demo, with_overrides

    cfg = with_overrides(QUICK, epochs=1, lava_samples=1)
    tables, before = [], torch.get_num_threads()
    try:
        for name, threads in (("a", 1), ("b", 2)):  # the caller's thread count does not matter
            torch.set_num_threads(threads)
            text = run_demo(cfg, tmp_path / name).read_text()
            assert torch.get_num_threads() == threads  # restored after the demo
            tables.append(
                [line for line in text.splitlines() if line.startswith("|")]
                + [line for line in text.splitlines() if "agree" in line]
            )
    finally:
        torch.set_num_threads(before)
    assert tables[0] == tables[1] and len(tables[0]) > 5


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_ctrl_c_during_verify_prints_one_line(tmp_path):
    pytest.importorskip("lava", reason="Lava needs Python 3.10 and the [lava] extra")
    ck = tmp_path / "net.pt"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snntorch_async",
            "train",
            "--hidden",
            "8",
            "--epochs",
            "1",
            "--checkpoint",
            str(ck),
            *TINY,
        ],
        env=ENV,
        check=True,
        capture_output=True,
    )
    # a new session, signalled as a group: like Ctrl-C in a terminal (Lava's children get it too)
    proc = subprocess.Popen(
        [sys.executable, "-m", "snntorch_async", "verify", str(ck), "--samples", "40"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        seen, deadline = "", time.monotonic() + 120
        while "sample/s" not in seen and time.monotonic() < deadline:  # Lava is running
            seen += proc.stderr.read(16)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in seen + err
    assert "interrupted (Ctrl-C)" in err
