"""The FR trainer end to end on CPU: training, validation, outputs, exact resume after a kill, and
the same result under torchrun with 2 processes (gloo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import array_reader, one_thread, torchrun, write_pack, write_train_folder  # noqa: F401

import facebench
from facebench.cli import create_cli
from facebench.fr.recipe import resolve_recipe
from facebench.fr.trainer import train_fr

SMALL = ["optim.batch_per_gpu=8", "optim.epochs=2", "train.log_every=1", "data.workers=0"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _sets(items):
    return [x for item in items for x in ("--set", item)]


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_train_fr_api_writes_a_loadable_model(tmp_path):
    reader = array_reader(identities=6, per_identity=4)
    recipe = resolve_recipe("tiny-arcface", SMALL)
    result = train_fr(recipe, reader, tmp_path / "run", dataset_info={"path": "memory"})
    assert result.global_step == 2 * (24 // 8)
    state = _load(tmp_path / "run" / "backbone.pt")
    model = facebench.create_backbone("se_iresnet_tiny", input_size=56)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state, strict=True)
    assert not torch.equal(initial["conv1.weight"], state["conv1.weight"])  # it trained
    card = json.loads((tmp_path / "run" / "model.json").read_text())
    assert card["backbone"] == "se_iresnet_tiny" and card["recipe"] == "tiny-arcface"
    assert card["num_classes"] == 6 and card["num_images"] == 24 and card["steps"] == 6
    assert card["dataset"] == {"path": "memory"}
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["event"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [r["epoch"] for r in rows if r["event"] == "epoch"] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in rows)


def test_train_fr_cli_reaches_high_accuracy_on_unseen_identities(tmp_path):
    data = write_train_folder(tmp_path / "toy" / "train", identities=24, per_identity=6)
    write_pack(tmp_path / "toy" / "toy_lfw.bin", pairs=60)
    out = tmp_path / "run"
    args = ["train-fr", "--recipe", "tiny-arcface", "--data", str(data), "--val", "toy_lfw", "--out", str(out),
            "--device", "cpu", *_sets(["optim.batch_per_gpu=24", "optim.epochs=3", "data.workers=2"])]
    result = CliRunner().invoke(create_cli(), args)
    assert result.exit_code == 0, result.output
    card = json.loads((out / "model.json").read_text())
    assert card["accuracies"]["toy_lfw"] > 0.85, card["accuracies"]
    assert "toy_lfw" in result.output
    prov = json.loads((out / "provenance.json").read_text())
    assert card["dataset"]["sha256"] == prov["inputs"]["dataset"]["sha256"]
    assert "val:toy_lfw" in prov["inputs"]
    # the run directory can be used as a feature extractor at once
    ext = facebench.registry("feature_extractor").create("fr-run", weights=str(out))
    assert ext.input_size == 56 and ext.flip_test
    # the same command again finds the model there and touches nothing; another recipe value is refused
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = CliRunner().invoke(create_cli(), args)
    assert again.exit_code == 0 and f"{out}: already complete (tiny-arcface, " in again.output, again.output
    other = CliRunner().invoke(create_cli(), [*args, "--set", "optim.lr=0.05"])
    assert other.exit_code == 2 and "(config.optim.lr); pass --overwrite" in " ".join(other.output.split())
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_train_fr_user_errors_are_one_line(tmp_path):
    data = write_train_folder(tmp_path / "train", identities=4, per_identity=2)
    cli = create_cli()
    res = CliRunner().invoke(cli, ["train-fr", "--recipe", "tiny-arcfac", "--data", str(data)])
    assert res.exit_code == 2 and "unknown recipe 'tiny-arcfac'; did you mean 'tiny-arcface'?" in res.output
    res = CliRunner().invoke(cli, ["train-fr", "--recipe", "tiny-arcface", "--data", str(data),
                                   "--set", "optim.lr_max=3"])
    assert res.exit_code == 2 and "unknown config key 'optim.lr_max'" in res.output
    res = CliRunner().invoke(cli, ["train-fr", "--recipe", "tiny-arcface", "--data", str(data), "--val", "nope"])
    assert res.exit_code == 2 and (
        f"error: verification pack 'nope' not found: looked for nope.bin and a folder nope in the training set's "
        f"folder ({data.resolve()}); the folder above it ({tmp_path.resolve()}); the current directory") in res.output
    assert "--data-root DIR or $FACEBENCH_DATA adds a folder" in res.output
    res = CliRunner().invoke(cli, ["train-fr", "--recipe", "tiny-arcface", "--data", str(data), "--val", "toy-five"])
    assert res.exit_code == 2 and ("suite 'toy-five': pack(s) toy_lfw.bin, toy_cfp_fp.bin, toy_cplfw.bin, "
                                   "toy_agedb_30.bin, toy_calfw.bin not found: looked for toy_lfw.bin, ") in res.output
    res = CliRunner().invoke(cli, ["train-fr", "--recipe", "tiny-arcface", "--data", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "missing: dataset not found" in res.output
    res = CliRunner().invoke(cli, ["train-fr", "--recipe", "tiny-arcface", "--data", str(data),
                                   "--out", str(tmp_path / "r"), "--set", "optim.batch_per_gpu=64"])
    assert res.exit_code == 2 and ("8 images, fewer than one batch of 64 (recipe tiny-arcface); pass --set "
                                   "optim.batch_per_gpu=2") in res.output
    assert not (tmp_path / "r").exists()  # a refused command leaves no run folder
    pack = write_pack(tmp_path / "p.bin", pairs=20)
    res = CliRunner().invoke(cli, ["train-fr", "--recipe", "tiny-arcface", "--data", str(pack)])
    assert res.exit_code == 2 and ("p.bin: not a recognised training-set format (tried: folder, lmdb, rec); it is a "
                                   "verification pack (format bin): training takes it with --val") in res.output


def test_val_packs_are_found_under_data_root_and_facebench_data(tmp_path, monkeypatch):
    from facebench.evaluation.suites import resolve_validation

    data = write_train_folder(tmp_path / "sets" / "train", identities=4, per_identity=2)
    packs = tmp_path / "packs"
    write_pack(packs / "toy_lfw.bin", pairs=20)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FACEBENCH_DATA", raising=False)
    assert resolve_validation(["toy_lfw"], str(data), data_root=str(packs)) == {"toy_lfw": packs / "toy_lfw.bin"}
    monkeypatch.setenv("FACEBENCH_DATA", str(packs))
    assert resolve_validation(["toy_lfw"], str(data)) == {"toy_lfw": packs / "toy_lfw.bin"}
    (tmp_path / "toy_lfw.bin").write_bytes((packs / "toy_lfw.bin").read_bytes())  # the current directory first
    assert resolve_validation(["toy_lfw"], str(data)) == {"toy_lfw": tmp_path / "toy_lfw.bin"}


def test_validation_on_a_registered_suite(tmp_path):
    data = write_train_folder(tmp_path / "toy" / "train", identities=4, per_identity=2)
    names = ["toy_lfw", "toy_cfp_fp", "toy_cplfw", "toy_agedb_30", "toy_calfw"]
    for k, name in enumerate(names):
        write_pack(tmp_path / "toy" / f"{name}.bin", pairs=20, seed=k)
    out = tmp_path / "run"
    res = CliRunner().invoke(create_cli(), ["train-fr", "--recipe", "tiny-arcface", "--data", str(data), "--val",
                                            "toy-five", "--out", str(out), *_sets(["optim.batch_per_gpu=8",
                                                                                   "optim.epochs=1"])])
    assert res.exit_code == 0, res.output
    card = json.loads((out / "model.json").read_text())
    assert sorted(card["accuracies"]) == sorted(names)
    assert all(0 <= v <= 1 for v in card["accuracies"].values())


def _env():
    env = dict(os.environ, FACEBENCH_QUIET="1", OMP_NUM_THREADS="1")
    env.pop("FACEBENCH_PLUGINS", None)
    return env


def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path):
    data = write_train_folder(tmp_path / "train", identities=8, per_identity=4)
    write_pack(tmp_path / "toy_lfw.bin", pairs=20)
    sets = ["optim.batch_per_gpu=8", "optim.epochs=5", "train.log_every=1", "train.checkpoint_every=1",
            "data.workers=0", "data.random_erasing=true", "model.dropout=0.2"]
    base = ["train-fr", "--recipe", "tiny-arcface", "--data", str(data), "--val", "toy_lfw", "--device", "cpu",
            *_sets(sets)]
    straight = tmp_path / "straight"
    res = CliRunner().invoke(create_cli(), [*base, "--out", str(straight)])
    assert res.exit_code == 0, res.output

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "facebench", *base, "--out", str(killed)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = killed / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and any(json.loads(x).get("step", 0) >= 3 for x in log.read_text().splitlines() if x):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (killed / "checkpoint.pt").exists() and not (killed / "backbone.pt").exists()

    res = CliRunner().invoke(create_cli(), [*base, "--out", str(killed), "--resume"])
    assert res.exit_code == 0, res.output
    a, b = _load(straight / "backbone.pt"), _load(killed / "backbone.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    rows = lambda p: [(r["step"], r["loss"]) for r in map(json.loads, (p / "metrics.jsonl").read_text().splitlines())]  # noqa: E731
    assert rows(straight) == rows(killed)
    assert json.loads((straight / "model.json").read_text())["accuracies"] == \
        json.loads((killed / "model.json").read_text())["accuracies"]


def test_torchrun_two_processes_match_one_process(tmp_path):
    data = write_train_folder(tmp_path / "train", identities=8, per_identity=4)
    sets = ["optim.micro_batch=4", "optim.epochs=1", "train.log_every=1", "data.workers=0"]
    args = ["train-fr", "--recipe", "tiny-arcface", "--data", str(data), "--device", "cpu", *_sets(sets)]
    # one process with 8 images per step, or two with 4 each: the same global batch of 8
    res = CliRunner().invoke(create_cli(), [*args, "--set", "optim.batch_per_gpu=8", "--out", str(tmp_path / "one")])
    assert res.exit_code == 0, res.output
    cmd = torchrun("-m", "facebench", *args, "--set", "optim.batch_per_gpu=4", "--out", str(tmp_path / "two"))
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    prov = json.loads((tmp_path / "two" / "provenance.json").read_text())
    assert prov["world_size"] == 2 and prov["global_batch"] == 8
    assert json.loads((tmp_path / "two" / "model.json").read_text())["global_batch"] == 8
    one, two = _load(tmp_path / "one" / "backbone.pt"), _load(tmp_path / "two" / "backbone.pt")
    model = facebench.create_backbone("se_iresnet_tiny")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    start = model.state_dict()
    for name in trainable:
        assert not torch.equal(one[name], start[name]) or name.startswith("features")
        assert torch.allclose(one[name], two[name], rtol=1e-4, atol=1e-5), name
    loss = lambda p: [r["loss"] for r in map(json.loads, (p / "metrics.jsonl").read_text().splitlines())  # noqa: E731
                      if r["event"] == "train"]
    assert np.allclose(loss(tmp_path / "one"), loss(tmp_path / "two"), rtol=1e-4)
