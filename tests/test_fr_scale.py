"""The FR trainer as a multi-GPU job needs it, on CPU with gloo: plain log lines in a redirected log, a
rank 0 that is slow before the first collective, the sharded head in a 2-rank run (equal to the full
head on one process, and resumable), and the batch named per GPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner
from conftest import one_thread, torchrun, write_pack, write_train_folder  # noqa: F401 (fixture)

from facebench.cli import create_cli
from facebench.errors import ConfigError
from facebench.fr.recipe import resolve_recipe
from facebench.fr.trainer import batch_warnings

pytestmark = pytest.mark.usefixtures("one_thread")


def _sets(items):
    return [x for item in items for x in ("--set", item)]


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env.pop("FACEBENCH_PLUGINS", None)
    env.pop("FACEBENCH_QUIET", None)  # the log must be what a user gets
    return env


def _torchrun(*args: str) -> list[str]:
    return torchrun("-m", "facebench", *args)


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_a_redirected_log_has_loss_lr_and_images_per_s_every_epoch(tmp_path):
    data = write_train_folder(tmp_path / "toy" / "train", identities=6, per_identity=4)
    write_pack(tmp_path / "toy" / "toy_lfw.bin", pairs=20)
    log = tmp_path / "log.txt"
    args = [sys.executable, "-m", "facebench", "train-fr", "--recipe", "tiny-arcface", "--data", str(data),
            "--val", "toy_lfw", "--out", str(tmp_path / "run"), "--device", "cpu",
            *_sets(["optim.batch_per_gpu=8", "optim.epochs=3", "train.log_every=2", "data.workers=0"])]
    with open(log, "w") as fh:  # train-fr > log.txt 2>&1
        done = subprocess.run(args, stdout=fh, stderr=subprocess.STDOUT, env=_env(), timeout=300)
    text = log.read_text()
    assert done.returncode == 0, text[-3000:]
    step_lines = [line for line in text.splitlines() if re.search(r"step \d+/3 .*loss [\d.]+ .*lr [\d.e-]+ .*images/s", line)]
    assert len(step_lines) == 4  # steps 2, 4, 6, 8 of 9 (3 per epoch)
    for epoch in (1, 2, 3):
        [line] = [x for x in text.splitlines() if x.startswith(f"epoch {epoch}/3 done")]
        assert re.search(r"loss [\d.]+ .*lr [\d.e-]+ .*images/s [\d.]+ .*val toy_lfw [\d.]+%", line), line
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r["loss"] for r in rows if r["event"] == "train"]
    printed = [float(re.search(r"loss ([\d.]+)", x).group(1)) for x in step_lines]
    assert printed == pytest.approx(logged, abs=1e-4)  # the printed loss is the logged (windowed) mean


_SLOW_HASH = '''
import os, time
if os.environ.get("RANK") == "0":
    import facebench.provenance as provenance
    _real = provenance.sha256_path
    def _slow(*args, **kwargs):
        time.sleep(float(os.environ["SLOW_HASH_S"]))
        return _real(*args, **kwargs)
    provenance.sha256_path = _slow
'''


def test_two_ranks_finish_when_rank_0_hashes_longer_than_the_collective_timeout(tmp_path):
    """Rank 0 hashes the validation pack and the training set (made 12 s slow each) while the collective
    timeout is 5 s: the pack is hashed while the other rank waits in the long wait barrier, the training
    set on a background thread, so the job finishes and records both hashes."""
    data = write_train_folder(tmp_path / "toy" / "train", identities=6, per_identity=4)
    write_pack(tmp_path / "toy" / "toy_lfw.bin", pairs=10)
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(_SLOW_HASH)
    args = ["train-fr", "--recipe", "tiny-arcface", "--data", str(data), "--val", "toy_lfw", "--device", "cpu",
            "--out", str(tmp_path / "run"),
            *_sets(["optim.batch_per_gpu=4", "optim.epochs=1", "train.log_every=1", "data.workers=0"])]
    env = _env(PYTHONPATH=os.pathsep.join([str(inject), os.environ.get("PYTHONPATH", "")]),
               SLOW_HASH_S="12", FACEBENCH_DIST_TIMEOUT="5")
    start = time.monotonic()
    done = subprocess.run(_torchrun(*args), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert time.monotonic() - start > 12  # the delay really happened
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    card = json.loads((tmp_path / "run" / "model.json").read_text())
    assert card["dataset"]["sha256"] == prov["inputs"]["dataset"]["sha256"]
    assert len(prov["inputs"]["val:toy_lfw"]["sha256"]) == 64


_CRASH = '''
import os
if os.environ.get("CRASH_AT_STEP"):
    import facebench.fr.trainer as trainer
    _real, _calls = trainer.StepRunner.step, [0]
    def _step(self, *args, **kwargs):
        _calls[0] += 1
        if _calls[0] == int(os.environ["CRASH_AT_STEP"]):
            os._exit(3)
        return _real(self, *args, **kwargs)
    trainer.StepRunner.step = _step
'''


def test_the_sharded_head_trains_like_the_full_head_and_resumes(tmp_path):
    """2 ranks with ``partial_fc`` (4 images each) train like 1 process with ``arcface`` (8 images); a
    2-rank run that dies after its first epoch and is resumed ends with the uninterrupted run's weights
    (every rank's shard of the centres and its momentum come back from the checkpoint)."""
    data = write_train_folder(tmp_path / "train", identities=7, per_identity=4)
    base = ["train-fr", "--recipe", "tiny-arcface", "--data", str(data), "--device", "cpu",
            *_sets(["optim.epochs=2", "optim.micro_batch=4", "train.log_every=1", "data.workers=0",
                    "model.dropout=0.0"])]  # BatchNorm sees 4 images per pass in both
    res = CliRunner().invoke(create_cli(), [*base, "--set", "optim.batch_per_gpu=8", "--out", str(tmp_path / "one")])
    assert res.exit_code == 0, res.output
    sharded = [*base, "--set", "optim.batch_per_gpu=4", "--set", 'head.name="partial_fc"',
               "--set", "head.options={scale=32.0, margin=0.3}"]
    done = subprocess.run(_torchrun(*sharded, "--out", str(tmp_path / "two")), env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # Same losses while the runs are close; later rounding differences (1e-7 after a step) grow through the
    # 4-image BatchNorm of this tiny model (8e-5 by the third step), so the comparison is of the first two.
    losses = [[r["loss"] for r in map(json.loads, (tmp_path / run / "metrics.jsonl").read_text().splitlines())
               if r["event"] == "train"] for run in ("one", "two")]
    assert len(losses[0]) == len(losses[1]) == 6
    assert losses[1][:2] == pytest.approx(losses[0][:2], rel=1e-5)
    two = _load(tmp_path / "two" / "backbone.pt")

    killed = tmp_path / "killed"
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(_CRASH)
    env = _env(PYTHONPATH=os.pathsep.join([str(inject), os.environ.get("PYTHONPATH", "")]), CRASH_AT_STEP="4")
    crashed = subprocess.run(_torchrun(*sharded, "--out", str(killed)), env=env, capture_output=True, text=True,
                             timeout=300)
    assert crashed.returncode != 0  # both ranks died at the first step of epoch 2
    assert (killed / "checkpoint.pt").exists() and not (killed / "backbone.pt").exists()
    shards = _load(killed / "checkpoint.pt")["extra"]["per_rank"]
    assert [tuple(s["head"]["weight"].shape) for s in shards] == [(4, 512), (3, 512)]
    again = subprocess.run(_torchrun(*sharded, "--out", str(killed), "--resume"), env=_env(), capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = _load(killed / "backbone.pt")
    for name in two:
        assert torch.equal(two[name], resumed[name]), name


def test_the_batch_is_named_per_gpu_and_small_ones_warn():
    with pytest.raises(ConfigError, match="optim.batch_size is now optim.batch_per_gpu"):
        resolve_recipe("tiny-arcface", ["optim.batch_size=64"])
    paper = resolve_recipe("se-ir50-arcface")
    assert paper.optim.batch_per_gpu == 128  # Vec2Face paper Table 10, per GPU as its trainer counts it
    assert batch_warnings(paper, 8) == []
    small = resolve_recipe("se-ir50-arcface", ["optim.batch_per_gpu=16"])
    [warning] = batch_warnings(small, 8)
    assert "16 images, fewer than 32" in warning and "global batch 128 over 8 processes" in warning
    assert batch_warnings(resolve_recipe("se-ir50-arcface", ["optim.micro_batch=16"]), 1)
    with pytest.raises(ConfigError, match="train.amp_dtype must be one of fp16, bf16"):
        resolve_recipe("tiny-arcface", ['train.amp_dtype="fp8"'])
    assert resolve_recipe("tiny-arcface", ['train.amp_dtype="bf16"']).train.amp_dtype == "bf16"


def test_resuming_on_another_number_of_processes_is_refused(tmp_path):
    data = write_train_folder(tmp_path / "train", identities=4, per_identity=4)
    args = ["train-fr", "--recipe", "tiny-arcface", "--data", str(data), "--device", "cpu", "--out",
            str(tmp_path / "run"), *_sets(["optim.batch_per_gpu=4", "optim.epochs=1", "data.workers=0"])]
    assert CliRunner().invoke(create_cli(), args).exit_code == 0
    ckpt = tmp_path / "run" / "checkpoint.pt"
    data_ = _load(ckpt)
    data_["extra"]["world_size"] = 2
    torch.save(data_, ckpt)
    (tmp_path / "run" / "backbone.pt").unlink()  # unfinished (a finished run is not resumed: nothing to do)
    res = CliRunner().invoke(create_cli(), [*args, "--resume"])
    assert res.exit_code == 2
    assert "cannot resume on 1 process: the run was started on 2" in res.output
    assert "torchrun --nproc_per_node 2" in res.output
