"""Hostile run folders given to ``--resume`` / ``--init``: ``train-fr``, ``train-generator`` and ``facebench
run``.

A checkpoint is loaded with ``weights_only=True`` and then checked against the objects it is loaded into:
a pickle payload never runs, and a truncated file, a dict missing keys, tensors of the wrong shape, a
step that is a string or a negative epoch is one ``error:`` line naming the file and the part, before
any training step (never a traceback from inside torch later). ``metrics.jsonl`` with garbage lines and
an experiment's ``steps.json`` of the wrong types are refused the same way. Each case trains nothing
new: the runs are built once (a few steps each) and copied.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import conftest as fx
import numpy as np
import pytest
import torch

from facebench.cli import create_cli
from facebench.data import encode_image, open_writer

from .conftest import Payload, invoke, refused, succeeded

FR_SETS = ["optim.batch_per_gpu=32", "optim.epochs=2", "train.log_every=1", "data.workers=0", "train.fp16=false"]
V2F_SETS = ["losses.identity=0", "batch_size=8", "epochs=1", "max_steps=1", "grid_samples=2", "log_every=1",
            "eval_samples=0"]


def sets(items):
    return [x for item in items for x in ("--set", item)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished tiny FR run (2 epochs of 1 step) and one Vec2Face run stopped after one step, each with
    its checkpoint and metrics log; every case copies one and tampers with it."""
    root = tmp_path_factory.mktemp("trained")
    fx.write_train_folder(root / "train", identities=4, per_identity=8, size=56)  # one batch of 32
    rng = np.random.default_rng(0)
    with open_writer(root / "faces", "folder") as writer:
        for label in range(4):
            for _ in range(4):
                writer.add(encode_image(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8), "png"), label)
    np.save(root / "feats.npy", rng.standard_normal((16, 512)).astype(np.float32) * 20)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEBENCH_QUIET", "1")
        mp.setenv("FACEBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "facebench-cache"))
        succeeded(invoke(create_cli(), fr_args(root, root / "fr")))
        succeeded(invoke(create_cli(), v2f_args(root, root / "v2f")))
    return root


def fr_args(root: Path, out: Path, *extra) -> list:
    return ["train-fr", "--recipe", "tiny-arcface", "--data", root / "train", "--out", out, "--device", "cpu",
            *sets(FR_SETS), *extra]


def v2f_args(root: Path, out: Path, *extra) -> list:
    return ["train-generator", "--config", "tiny", "--data", root / "faces", "--features", root / "feats.npy",
            "--out", out, "--device", "cpu", *sets(V2F_SETS), *extra]


#: The output whose absence makes a copied run unfinished, as a kill before the end leaves it: the rerun
#: contract then resumes it from its checkpoint (a finished run is not resumed: nothing is read or written).
FINAL = {"fr": "backbone.pt", "v2f": "generator.pth"}


def copy_run(trained: Path, name: str, tmp_path: Path) -> Path:
    run = Path(shutil.copytree(trained / name, tmp_path / name, symlinks=True))
    (run / FINAL[name]).unlink()
    return run


def edit(path: Path, change) -> None:
    """Load a checkpoint (safely), change it in place (or replace it: :func:`whole`), save it back."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    result = change(data)
    torch.save(result if getattr(change, "whole", False) else data, path)


def whole(change):
    """A change that returns the whole new content of the checkpoint."""
    change.whole = True
    return change


def _set(data, keys: str, value):
    *head, last = keys.split(".")
    node = data
    for key in head:
        node = node[int(key) if isinstance(node, list) else key]
    node[int(last) if isinstance(node, list) else last] = value


def setting(keys: str, value):
    return lambda d: _set(d, keys, value)


def first_key(data, key: str) -> str:
    return next(iter(data[key]))


def _shape(data, key: str):
    data[key][first_key(data, key)] = torch.zeros(3)


def _drop_half(data, key: str):
    for k in list(data[key])[::2]:
        del data[key][k]


def _optimizer_buffer(data, key: str, name: str):
    data[key]["state"][0][name] = torch.zeros(7, 7)


def _payload(path: Path, marker: Path) -> None:
    torch.save({"format": 1, "position": Payload(marker)}, path)


def _truncate(path: Path, marker: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# ------------------------------------------------------------------------------------------ train-fr

FR_CHECKPOINT = [
    # (id, tamper(path, marker) or change(data), fragment of the error line)
    pytest.param(_payload, "holds a Python object", id="pickle-payload"),
    pytest.param(_truncate, "cannot read training checkpoint", id="truncated"),
    pytest.param(lambda p, m: p.write_bytes(b""), "cannot read training checkpoint", id="empty"),
    pytest.param(whole(lambda d: [1, 2]), "not a facebench training checkpoint", id="a-list"),
    pytest.param(lambda d: d.pop("position"), "not a facebench training checkpoint", id="no-position"),
    pytest.param(setting("format", torch.zeros(2)), "not a facebench training checkpoint", id="format-a-tensor"),
    pytest.param(setting("position", [2, 0, 4]), "position must be an object with epoch", id="position-a-list"),
    pytest.param(lambda d: d["position"].pop("global_step"), "position must be an object with epoch",
                 id="position-missing-a-field"),
    pytest.param(setting("position.global_step", "4"), "position.global_step must be an integer, found a string",
                 id="step-a-string"),
    pytest.param(setting("position.epoch", -1), "position.epoch is negative", id="negative-epoch"),
    pytest.param(setting("position.step_in_epoch", 1.5), "position.step_in_epoch must be an integer",
                 id="step-a-float"),
    pytest.param(setting("position.epoch", 99), "does not fit this run's 2 epochs of 1 steps", id="epoch-past-the-run"),
    pytest.param(lambda d: d["position"].update(epoch=0, step_in_epoch=3, global_step=3),
                 "does not fit this run's 2 epochs of 1 steps", id="step-past-the-epoch"),
    pytest.param(lambda d: d.pop("extra"), "extra must be an object, found null", id="no-extra"),
    pytest.param(setting("model", "weights"), "model must be an object or null, found a string",
                 id="model-a-string"),
    pytest.param(lambda d: _shape(d, "model"), "'model' does not match the model layout: 1 shape mismatch",
                 id="model-tensor-wrong-shape"),
    pytest.param(lambda d: _drop_half(d, "model"), "'model' does not match the model layout", id="model-missing-keys"),
    pytest.param(lambda d: _set(d, "model", {**d["model"], "extra.weight": torch.zeros(2)}), "1 unexpected",
                 id="model-extra-key"),
    pytest.param(lambda d: _set(d, "model", {k: 1.0 for k in d["model"]}), "'model' is not a state dict of tensors",
                 id="model-numbers"),
    pytest.param(lambda d: _optimizer_buffer(d, "optimizer", "momentum_buffer"),
                 "'optimizer' state momentum_buffer of parameter 0 has shape (7, 7)", id="optimizer-buffer-shape"),
    pytest.param(lambda d: _set(d["optimizer"]["state"][0], "momentum_buffer", "fast"),
                 "must be a tensor or a number, found a string", id="optimizer-buffer-a-string"),
    pytest.param(setting("optimizer.param_groups.0.lr", "fast"),
                 "optimizer.param_groups[0].lr must be a number, found a string", id="optimizer-lr-a-string"),
    pytest.param(setting("optimizer.param_groups.0.params", [0]), "does not list this run's", id="optimizer-params"),
    pytest.param(setting("optimizer.param_groups", []), "'optimizer' has 0 parameter groups", id="optimizer-no-groups"),
    pytest.param(setting("optimizer", {"lr": 0.1}), "'optimizer' is not an optimizer state", id="optimizer-a-dict"),
    pytest.param(setting("scheduler.last_epoch", "4"), "scheduler.last_epoch must be an integer, found a string",
                 id="scheduler-step-a-string"),
    pytest.param(lambda d: d["scheduler"]["lr_lambdas"][0].update(total_steps=10**9),
                 "another learning-rate schedule", id="scheduler-another-schedule"),
    pytest.param(lambda d: d["scheduler"]["lr_lambdas"][0].update(warmup_steps=torch.zeros(2)),
                 "scheduler.lr_lambdas[0].warmup_steps must be", id="scheduler-schedule-a-tensor"),
    pytest.param(setting("rng", "seed"), "rng must be an object or a list or null, found a string", id="rng-a-string"),
    pytest.param(setting("rng", [{"python": "abc"}]), "'rng' does not fit this run", id="rng-garbage"),
    pytest.param(lambda d: d["rng"][0].update(torch=torch.zeros(3, dtype=torch.uint8)), "'rng' does not fit this run",
                 id="rng-torch-state-short"),
    pytest.param(lambda d: d["rng"][0]["numpy"].update(has_gauss=10**14), "'rng' does not fit this run",
                 id="rng-numpy-flag-beyond-c-long"),
    pytest.param(setting("extra.per_rank", [{"window": {"sums": {"loss": "x"}, "count": 1}, "epoch": {}}]),
                 "'extra.per_rank' does not fit this run", id="running-means-garbage"),
    pytest.param(setting("extra.per_rank", "all"), "extra.per_rank must be a list", id="per-rank-a-string"),
    pytest.param(setting("extra.world_size", "1"), "extra.world_size must be an integer", id="world-size-a-string"),
    pytest.param(lambda d: d["extra"]["recipe"]["optim"].update(lr=5.0), "the recipe differs",
                 id="recipe-differs"),
]


@pytest.mark.parametrize(("tamper", "fragment"), FR_CHECKPOINT)
def test_train_fr_resume_refuses_a_tampered_checkpoint(trained, tmp_path, marker, tamper, fragment):
    run = copy_run(trained, "fr", tmp_path)
    ckpt = run / "checkpoint.pt"
    if tamper.__code__.co_argcount == 2:
        tamper(ckpt, marker)
    else:
        edit(ckpt, tamper)
    refused(invoke(create_cli(), fr_args(trained, run, "--resume")), ckpt, fragment)
    assert (run / "model.json").read_bytes() == (trained / "fr" / "model.json").read_bytes()


def _log(lines: list[str]):
    def write(run: Path) -> None:
        (run / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    return write


GOOD = json.dumps({"event": "train", "epoch": 1, "step": 1, "loss": 1.0})

LOGS = [
    pytest.param(_log([GOOD, "garbage", GOOD]), "not a JSON line at line 2", id="garbage-line"),
    pytest.param(_log([GOOD, "[1, 2]", GOOD]), "a record must be an object, found a list at line 2",
                 id="line-a-list"),
    pytest.param(_log([GOOD, json.dumps({"step": "2"})]), "step must be an integer, found a string at line 2",
                 id="step-a-string"),
    pytest.param(_log([GOOD, '{"step": ' + "9" * 5000 + "}", GOOD]), "not a JSON line at line 2",
                 id="step-of-5000-digits"),
    pytest.param(_log([json.dumps({"step": None}), GOOD]), "step must be an integer, found null at line 1",
                 id="step-null"),
    pytest.param(lambda r: (r / "metrics.jsonl").write_bytes(GOOD.encode() + b"\n\xff\xfe\n"), "not UTF-8",
                 id="not-utf8"),
    pytest.param(lambda r: ((r / "metrics.jsonl").unlink(), (r / "metrics.jsonl").mkdir()), "is a folder",
                 id="a-folder"),
]


@pytest.mark.parametrize(("tamper", "fragment"), LOGS)
def test_train_fr_resume_refuses_a_tampered_metrics_log(trained, tmp_path, tamper, fragment):
    run = copy_run(trained, "fr", tmp_path)
    tamper(run)
    refused(invoke(create_cli(), fr_args(trained, run, "--resume")), run / "metrics.jsonl", fragment)


def test_a_metrics_line_cut_short_by_a_kill_is_dropped_on_resume(trained, tmp_path):
    run = copy_run(trained, "fr", tmp_path)
    whole = (run / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text(whole + '{"event": "train", "ste')
    succeeded(invoke(create_cli(), fr_args(trained, run, "--resume")))
    assert (run / "metrics.jsonl").read_text() == "".join(
        json.dumps(json.loads(line)) + "\n" for line in whole.splitlines())


# ----------------------------------------------------------------------------------- train-generator

V2F_CHECKPOINT = [
    pytest.param(_payload, "refused to load Vec2Face training checkpoint", id="pickle-payload"),
    pytest.param(_truncate, "cannot read Vec2Face training checkpoint", id="truncated"),
    pytest.param(whole(lambda d: {"epoch": 1}), "not a Vec2Face training checkpoint: no model_vec2face",
                 id="missing-keys"),
    pytest.param(setting("training_format", 1), "older facebench", id="older-format"),
    pytest.param(setting("epoch", "0"), "epoch must be an integer, found a string", id="epoch-a-string"),
    pytest.param(setting("epoch", -5), "epoch must be at least -1", id="negative-epoch"),
    pytest.param(setting("position.global_step", "1"), "position.global_step must be an integer", id="step-a-string"),
    pytest.param(lambda d: d.pop("position"), "position must be an object with epoch", id="no-position"),
    pytest.param(setting("position.step_in_epoch", 5), "step_in_epoch 5 is past global_step", id="position-inconsistent"),
    pytest.param(lambda d: _shape(d, "model_vec2face"), "'model_vec2face' does not match the vec2face_tiny layout",
                 id="generator-tensor-wrong-shape"),
    pytest.param(setting("model_disc", [1, 2]), "'model_disc' is not a state dict of tensors", id="disc-a-list"),
    pytest.param(lambda d: _optimizer_buffer(d, "optimizer_vec2face", "exp_avg"),
                 "'optimizer_vec2face' state exp_avg of parameter 0 has shape (7, 7)", id="optimizer-buffer-shape"),
    pytest.param(lambda d: _set(d["optimizer_vec2face"]["state"][0], "step", "1"),
                 "state step of parameter 0 must be a tensor or a number, found a string", id="optimizer-step-a-string"),
    pytest.param(setting("optimizer_disc", "adamw"), "'optimizer_disc' is not an optimizer state",
                 id="disc-optimizer-a-string"),
    pytest.param(setting("optimizer_vec2face.param_groups.0.betas", "fast"),
                 "optimizer_vec2face.param_groups[0].betas must be a list of 2", id="betas-a-string"),
    pytest.param(setting("scaler", "on"), "scaler must be an object, found a string", id="scaler-a-string"),
    pytest.param(setting("rng", {"python": 1}), "rng must be a list, found an object", id="rng-an-object"),
    pytest.param(setting("running", [{"window": {"sums": [], "count": -1}}]), "'running' does not fit this run",
                 id="running-garbage"),
]


def _apply(tamper, path: Path, marker: Path) -> None:
    if tamper.__code__.co_argcount == 2:
        tamper(path, marker)
    else:
        edit(path, tamper)


@pytest.mark.parametrize(("tamper", "fragment"), V2F_CHECKPOINT)
def test_train_generator_resume_refuses_a_tampered_checkpoint(trained, tmp_path, marker, tamper, fragment):
    run = copy_run(trained, "v2f", tmp_path)
    ckpt = run / "checkpoint.pt"
    _apply(tamper, ckpt, marker)
    refused(invoke(create_cli(), v2f_args(trained, run, "--resume")), ckpt, fragment)
    assert not (run / "generator.pth").exists() or (run / "generator.pth").read_bytes() == (
        trained / "v2f" / "generator.pth").read_bytes()


@pytest.mark.parametrize(("tamper", "fragment"), [
    p for p in V2F_CHECKPOINT if p.id in ("pickle-payload", "missing-keys", "epoch-a-string", "negative-epoch")])
def test_train_generator_init_refuses_a_tampered_checkpoint(trained, tmp_path, marker, tamper, fragment):
    init = tmp_path / "release-checkpoint.pth"
    shutil.copy(trained / "v2f" / "checkpoint.pt", init)
    _apply(tamper, init, marker)
    out = tmp_path / "new"
    refused(invoke(create_cli(), v2f_args(trained, out, "--init", init)), init, fragment)
    assert not out.exists()  # nothing to resume from: no half-made run folder


def test_train_generator_resume_refuses_a_tampered_metrics_log(trained, tmp_path):
    run = copy_run(trained, "v2f", tmp_path)
    _log([GOOD, "{not json", GOOD])(run)
    refused(invoke(create_cli(), v2f_args(trained, run, "--resume")), run / "metrics.jsonl", "line 2")


# ------------------------------------------------------------------------------------------ facebench run

EXPERIMENT = """[experiment]
name = "{name}"

[[steps]]
name = "list"
command = ["plugins"]
"""


def experiment(tmp_path: Path, name: str = "exp") -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(EXPERIMENT.format(name=name))
    return path


def _steps(text: str | bytes):
    def write(out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        data = text.encode() if isinstance(text, str) else text
        (out / "steps.json").write_bytes(data)
    return write


PARAMS = {"experiment": "exp"}

STEPS = [
    pytest.param(_steps(b'{"params": {"experiment": "\xff"}, "done": {}}'), "not UTF-8", id="not-utf8"),
    pytest.param(_steps('{"params": '), "invalid JSON", id="invalid-json"),
    pytest.param(_steps("[]"), "must hold an object", id="a-list"),
    pytest.param(_steps(json.dumps({"params": PARAMS, "done": ["list"]})), "done must be an object, found a list",
                 id="done-a-list"),
    pytest.param(_steps(json.dumps({"params": ["exp"], "done": {}})), "params must be an object, found a list",
                 id="params-a-list"),
    pytest.param(_steps(json.dumps({"params": PARAMS, "done": {"list": {"argv": 7}}})),
                 "done.list.argv must be a list, found an integer", id="argv-a-number"),
    pytest.param(_steps(json.dumps({"params": PARAMS, "done": {"list": {"argv": [1, 2]}}})),
                 "done.list.argv must be a list of strings", id="argv-numbers"),
    pytest.param(_steps(json.dumps({"params": PARAMS, "done": {"list": "yes"}})),
                 "done.list must be an object, found a string", id="step-record-a-string"),
]


@pytest.mark.parametrize(("tamper", "fragment"), STEPS)
def test_run_refuses_a_tampered_steps_manifest(tmp_path, tamper, fragment):
    out = tmp_path / "out"
    tamper(out)
    refused(invoke(create_cli(), ["run", experiment(tmp_path), "--out", out]), out / "steps.json", fragment)
    assert sorted(p.name for p in out.iterdir()) == ["steps.json"]  # refused before writing config or provenance


@pytest.mark.parametrize(("tamper", "fragment"), [p for p in STEPS if not p.values[1].startswith("done.list")])
def test_run_dry_run_refuses_a_tampered_steps_manifest(tmp_path, tamper, fragment):
    """A dry run lists which steps are done; what each records is checked when the steps run."""
    out = tmp_path / "out"
    tamper(out)
    refused(invoke(create_cli(), ["run", experiment(tmp_path), "--out", out, "--dry-run"]), out / "steps.json",
            fragment)


def test_run_refuses_an_experiment_config_that_is_not_utf8(tmp_path):
    config = experiment(tmp_path)
    config.write_bytes(config.read_bytes().replace(b"exp", b"\xe9xp"))
    refused(invoke(create_cli(), ["run", config, "--out", tmp_path / "out"]), config, "not UTF-8 text at byte")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["../escape", "/tmp/abs", "a/b", "..", ".hidden"])
def test_run_refuses_an_experiment_name_that_leaves_runs(tmp_path, name):
    refused(invoke(create_cli(), ["run", experiment(tmp_path, name)], cwd=tmp_path), "experiment.name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.toml"]


def test_train_fr_rerun_over_a_record_whose_inputs_are_not_an_object_is_refused(trained, tmp_path):
    """A finished run's ``provenance.json`` whose ``rerun.params.inputs`` is a number is a changed key, not a
    traceback from comparing the training set's hash with it."""
    run = Path(shutil.copytree(trained / "fr", tmp_path / "fr", symlinks=True))
    record = json.loads((run / "provenance.json").read_text())
    record["rerun"]["params"]["inputs"] = 7
    (run / "provenance.json").write_text(json.dumps(record))
    refused(invoke(create_cli(), fr_args(trained, run)), run, "inputs")


def _stored(key: str, value):
    return lambda d: d["vec2face_config"].update({key: value})


@pytest.mark.parametrize(("change", "fragment"), [
    pytest.param(_stored("depth", 10**14), "configuration is unusable: vec2face model 'depth' must be an integer "
                 "from 0 to 256", id="depth-that-never-builds"),
    pytest.param(_stored("feature_dim", 2.5), "'feature_dim' must be an integer", id="width-a-fraction"),
    pytest.param(_stored("attn_dropout", 3.0), "'attn_dropout' must be a number from 0 to 1", id="dropout-beyond-1"),
    pytest.param(_stored("channel_mult", "1111"), "'channel_mult' must be a list", id="channel-mult-a-string"),
    pytest.param(lambda d: d["feature_scale"].update(median_norm=torch.zeros(2)),
                 "feature_scale.median_norm must be a number or null, found Tensor", id="scale-a-tensor"),
    pytest.param(lambda d: d["feature_scale"].update(median_norm="x"), "feature_scale.median_norm must be a number",
                 id="scale-a-string"),
    pytest.param(lambda d: d.update(pose_config={"input_size": 10**14}), "configuration is unusable: pose model "
                 "input_size must be an integer from 1 to 1024", id="pose-input-that-never-builds"),
    pytest.param(lambda d: d.update(pose_config={"channels": [8, "x", 8, 8]}), "pose model channels must be a list",
                 id="pose-width-a-string"),
])
def test_generate_refuses_a_generator_file_whose_stored_configuration_is_mistyped(trained, tmp_path, change, fragment):
    """A facebench generator file carries its model configuration and feature scale: each typed (and each size
    bounded) before a model is built from it (a depth of 10**14 would build blocks forever)."""
    weights = tmp_path / "generator.pth"
    shutil.copy(trained / "v2f" / "generator.pth", weights)
    edit(weights, change)
    result = invoke(create_cli(), ["generate", "--generator", "vec2face_tiny", "--weights", weights, "--ids",
                                   trained / "feats.npy", "--images-per-id", 1, "--out", tmp_path / "gen",
                                   "--device", "cpu"])
    refused(result, weights, fragment)


def test_train_fr_refuses_a_recipe_name_that_leaves_runs(trained, tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('name = "../../escape"\n')
    args = ["train-fr", "--recipe", recipe, "--data", trained / "train", "--device", "cpu", *sets(FR_SETS)]
    refused(invoke(create_cli(), args, cwd=tmp_path), "recipe name", "../../escape")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.toml"]


def test_train_fr_resume_refuses_a_link_at_its_metrics_log(trained, tmp_path):
    run = copy_run(trained, "fr", tmp_path)
    victim = tmp_path / "victim.jsonl"
    victim.write_text(GOOD + "\n" + GOOD + "\n")
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(victim)
    refused(invoke(create_cli(), fr_args(trained, run, "--resume")), run / "metrics.jsonl", "symbolic link")
    assert victim.read_text() == GOOD + "\n" + GOOD + "\n"
