"""The rerun contract (:mod:`facebench.rerun`), command by command, as a Makefile or a retried cluster job
runs facebench: the same command again on the same output.

Each case runs one command on tiny inputs, then

* reruns it with the same parameters (and an option that does not change the result, where it has one):
  exit 0, "already complete", and no file under the test's folder changed (bytes or mtime), none appeared;
* reruns it with one result-affecting option changed: exit 2, one line naming the key and ``--overwrite``,
  still nothing changed;
* kills it with SIGKILL (``tests/rerun_kill.py``) right after a seeded random atomic write, right after
  its last one, and once it has returned but before the process exits; after each kill the same command
  finishes the output, which is then byte-identical to the uninterrupted run's (records and logs compared
  without their dates, command lines and timings), and a further rerun finds it complete.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import conftest as fx
import numpy as np
import pytest
from click.testing import CliRunner

from facebench.cli import create_cli
from facebench.data import encode_image, open_writer
from facebench.pluginmanager import build_plugin_set

KILLER = Path(__file__).with_name("rerun_kill.py")
#: Keys of JSON records that differ between two runs of the same command by nature (when, how invoked,
#: how fast), left out of the byte comparison.
VOLATILE = {"created", "command", "seconds", "images_per_s"}


def _plugins():
    return build_plugin_set(extra_plugins={"gentest": fx.plugin, "test-extractors": fx._plugin()})


def cli_for_kill():
    """The CLI of a killed subprocess: the real plugins plus the test generator, format and extractors."""
    from facebench import pluginmanager

    plugins = _plugins()
    pluginmanager.get_plugin_set = lambda: plugins
    return create_cli(plugins)


@pytest.fixture
def cli(monkeypatch):
    import facebench.pluginmanager as pm

    plugins = _plugins()

    def current():
        return plugins

    current.cache_clear = lambda: None  # conftest resets the cache before monkeypatch restores the original
    monkeypatch.setattr(pm, "get_plugin_set", current)
    return create_cli(plugins)


# --------------------------------------------------------------------------------------------- inputs


def _faces(root: Path, identities: int = 4, per_identity: int = 4, size: int = 56) -> Path:
    rng = np.random.default_rng(0)
    with open_writer(root, "folder") as writer:
        for label in range(identities):
            for _ in range(per_identity):
                writer.add(encode_image(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "png"), label)
    return root


def _pixels_weights(inp: Path) -> Path:
    return fx.write_weights(inp / "pixels.pt")


def _setup_nothing(inp: Path) -> None:
    inp.mkdir(parents=True, exist_ok=True)


def _setup_train(inp: Path) -> None:
    fx.write_train_folder(inp / "train", identities=4, per_identity=8, size=56)


def _setup_pixels(inp: Path) -> None:
    inp.mkdir(parents=True, exist_ok=True)
    fx.write_train_folder(inp / "train", identities=6, per_identity=4, size=fx.PIXEL_SIZE)
    _pixels_weights(inp)
    (inp / "packs").mkdir()
    fx.make_pack(inp / "packs" / "toy_lfw.bin", 60, 0)
    fx.make_pack(inp / "packs" / "toy_cfp_fp.bin", 40, 1)


def _setup_photos(inp: Path) -> None:
    rng = np.random.default_rng(1)
    for person in ("ada", "bob", "cy"):
        for k in range(3):
            image = fx.identity_pattern(rng, 96).astype(np.uint8)
            path = inp / "photos" / person / f"{k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode_image(image, "png"))


def _setup_lfw(inp: Path) -> None:
    from test_data_pack import lfw_world

    lfw_world(inp)


def _setup_generator(inp: Path) -> None:
    inp.mkdir(parents=True, exist_ok=True)
    np.save(inp / "ids.npy", np.random.default_rng(0).standard_normal((12, fx.DIM)).astype(np.float32))


def _setup_features(inp: Path) -> None:
    inp.mkdir(parents=True, exist_ok=True)
    np.save(inp / "feats.npy", np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32))


def _setup_v2f(inp: Path) -> None:
    _faces(inp / "faces")
    np.save(inp / "feats.npy", np.random.default_rng(0).standard_normal((16, 512)).astype(np.float32) * 20)


def _setup_runs(inp: Path) -> None:
    fx.eval_run(inp, "eval-a", "set-a", {"lfw": 0.91, "cfp_fp": 0.83})
    fx.eval_run(inp, "eval-b", "set-b", {"lfw": 0.95, "cfp_fp": 0.88})


def _setup_arc2face(inp: Path) -> None:
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    _setup_nothing(inp)


def _setup_onnx(inp: Path) -> None:
    pytest.importorskip("onnx")
    import zoo_files as zf

    inp.mkdir(parents=True, exist_ok=True)
    zf.export_onnx(zf.randomised("mbf_tiny"), inp / "m.onnx")


EXPERIMENT = """
[experiment]
name = "rerun"

[vars]
seed = "0"

[[steps]]
name = "build"
command = ["toyfaces", "build", "${out}/toy", "--identities", "4", "--images-per-identity", "2", "--size", "24",
           "--pairs", "20", "--packs", "toy_lfw", "--workers", "1", "--seed", "${seed}"]
outputs = ["${out}/toy/dataset.json"]

[[steps]]
name = "convert"
command = ["data", "convert", "${out}/toy/train", "${out}/train.lmdb", "--to", "lmdb"]
outputs = ["${out}/train.lmdb"]
needs = ["build"]
"""


def _setup_experiment(inp: Path) -> None:
    inp.mkdir(parents=True, exist_ok=True)
    (inp / "exp.toml").write_text(EXPERIMENT)


# ---------------------------------------------------------------------------------------------- cases


def _sets(*items: str) -> list[str]:
    return [x for item in items for x in ("--set", item)]


@dataclass
class Case:
    """One command: its inputs, its command line (outputs under ``work``), a change of one parameter and
    the key the refusal must name, and options that must not count as a change."""

    name: str
    setup: Callable[[Path], None]
    args: Callable[[Path, Path], list[str]]
    changed: list[str]
    key: str
    same: list[str] = field(default_factory=list)
    random_kills: int = 1


CASES = [
    Case("toyfaces-build", _setup_nothing,
         lambda i, w: ["toyfaces", "build", w / "toy", "--identities", "40", "--images-per-identity", "2", "--size",
                       "24", "--pairs", "20", "--packs", "toy_lfw", "--workers", "1"],
         ["--seed", "1"], "config.seed", same=["--workers", "2"], random_kills=2),
    Case("toyfaces-protocols", _setup_nothing,
         lambda i, w: ["toyfaces", "protocols", w / "p", "--size", "24",
                       *_sets("ijb_identities=4", "templates_per_identity=2", "rfw_pairs=20", "twins_pairs=20",
                              "tinyface_identities=2", "tinyface_distractors=2", "tinyface_side=8")],
         ["--seed", "1"], "config.seed"),
    Case("toyfaces-pose-model", _setup_nothing,
         lambda i, w: ["toyfaces", "pose-model", w / "pose", "--size", "32", "--images", "64", "--epochs", "1",
                       *_sets("val_images=8", "batch_size=32")],
         ["--seed", "1"], "config.seed"),
    Case("data-convert", _setup_train,
         lambda i, w: ["data", "convert", i / "train", w / "train.lmdb", "--to", "lmdb"],
         ["--to", "rec"], "config.to"),
    Case("data-align", _setup_photos,
         lambda i, w: ["data", "align", i / "photos", "--detector", "retinaface_tiny", "--detector-option",
                       "score_threshold=0.0", "--out", w / "aligned", "--photos-per-shard", "2", "--encoding", "png",
                       "--device", "cpu"],
         ["--size", "96"], "config.size", same=["--keep-shards"], random_kills=2),
    Case("data-grid", _setup_train,
         lambda i, w: ["data", "grid", i / "train", "--out", w / "grid.png", "--identities", "2", "--per-identity",
                       "2", "--size", "16"],
         ["--size", "20"], "config.size"),
    Case("data-pack", _setup_lfw,
         lambda i, w: ["data", "pack", "lfw", i / "lfw", i / "pairs.txt", "--landmarks", i / "lfw_landmarks.txt",
                       "--out", w / "lfw.bin"],
         ["--encoding", "png"], "config.encoding", same=["--device", "cpu"]),
    Case("train-generator", _setup_v2f,
         lambda i, w: ["train-generator", "--config", "tiny", "--data", i / "faces", "--features", i / "feats.npy",
                       "--out", w / "v2f", "--device", "cpu",
                       *_sets("losses.identity=0", "batch_size=8", "epochs=2", "grid_samples=2", "log_every=1",
                              "eval_samples=0", "num_workers=0")],
         _sets("seed=1"), "config.seed", same=_sets("num_workers=1")),
    Case("train-fr", _setup_train,
         lambda i, w: ["train-fr", "--recipe", "tiny-arcface", "--data", i / "train", "--out", w / "fr",
                       "--device", "cpu",
                       *_sets("optim.batch_per_gpu=8", "optim.epochs=2", "train.log_every=1", "data.workers=0",
                              "train.fp16=false", "train.checkpoint_every=2")],
         _sets("train.seed=1"), "config.train.seed", same=_sets("data.workers=1"), random_kills=2),
    Case("arc2face-make-tiny", _setup_arc2face,
         lambda i, w: ["arc2face", "make-tiny", w / "a2f", "--size", "16"],
         ["--encoder-format", "safetensors"], "config.encoder_format"),
    Case("dcface-make-tiny", _setup_nothing,
         lambda i, w: ["dcface", "make-tiny", w / "dcface"],
         ["--spatial-dim", "5"], "config.spatial_dim"),
    Case("idiff-face-make-tiny", _setup_nothing,
         lambda i, w: ["idiff-face", "make-tiny", w / "idiff"],
         ["--seed", "1"], "config.seed"),
    Case("generate", _setup_generator,
         lambda i, w: ["generate", "--generator", "tinygen", "--ids", i / "ids.npy", "--images-per-id", "4",
                       "--ids-per-shard", "2", "--batch-size", "3", "--out", w / "gen", "--format", "testfolder",
                       "--device", "cpu"],
         ["--seed", "7"], "config.seed", random_kills=2),
    Case("sample-ids", _setup_features,
         lambda i, w: ["sample-ids", "--features", i / "feats.npy", "--n", "20", "--out", w / "ids.npy",
                       "--save-stats", w / "pca.npz", "--device", "cpu"],
         ["--tau", "0.5"], "config.tau"),
    Case("embed", _setup_pixels,
         lambda i, w: ["embed", i / "train", "--extractor", "pixels", "--weights", i / "pixels.pt", "--out",
                       w / "feats.npy", "--batch-size", "4"],
         ["--raw"], "config.raw", same=["--device", "cpu"]),
    Case("evaluate", _setup_pixels,
         lambda i, w: ["evaluate", "--suite", "toy-five", "--model", i / "pixels.pt", "--backbone", "pixels",
                       "--data-root", i / "packs", "--out", w / "eval", "--bootstrap", "0"],
         ["--bootstrap", "5"], "config.bootstrap", same=["--device", "cpu"]),
    Case("analyze", _setup_pixels,
         lambda i, w: ["analyze", i / "train", "--extractor", "pixels", "--weights", i / "pixels.pt", "--out",
                       w / "an", "--only", "separability", "--only", "class-noise", "--batch-size", "8"],
         ["--seed", "1"], "config.seed", same=["--device", "cpu"]),
    Case("report", _setup_runs,
         lambda i, w: ["report", i / "eval-a", i / "eval-b", "--out", w / "report.html"],
         ["--title", "another"], "config.title"),
    Case("weights-import", _setup_onnx,
         lambda i, w: ["weights", "import", i / "m.onnx", "--arch", "mbf_tiny", "--out", w / "mbf.pth"],
         ["--bgr"], "config.bgr"),
    Case("run", _setup_experiment,
         lambda i, w: ["run", i / "exp.toml", "--out", w / "exp"],
         _sets("vars.seed=1"), "steps.build.command", random_kills=2),
]


# ------------------------------------------------------------------------------------------- helpers


def _invoke(cli, args: list) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _state(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file and link under ``root`` with its mtime and bytes (what "touch nothing" is checked on)."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or path.is_file():
            st = path.lstat()
            state[path.relative_to(root).as_posix()] = (st.st_mtime_ns, b"" if path.is_symlink() else path.read_bytes())
        elif path.is_dir():
            state[path.relative_to(root).as_posix() + "/"] = (path.lstat().st_mtime_ns, b"")
    return state


def _without(value, keys=VOLATILE):
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value


def _content(path: Path, data: bytes):
    """A file as the byte comparison sees it: JSON records and logs without their volatile keys."""
    if path.suffix == ".json":
        return _without(json.loads(data))
    if path.suffix == ".jsonl":
        return [_without(json.loads(line)) for line in data.decode().splitlines() if line]
    return data


def _tree(root: Path) -> dict[str, object]:
    return {p.relative_to(root).as_posix(): _content(p, p.read_bytes()) for p in sorted(root.rglob("*"))
            if p.is_file()}


def _counted_run(cli, args: list) -> tuple[object, int]:
    """Run ``args`` in-process, counting its atomic renames (the kill points of a subprocess)."""
    count = [0]
    real = os.replace

    def counted(*a, **kw):
        real(*a, **kw)
        count[0] += 1

    os.replace = counted
    try:
        return _invoke(cli, args), count[0]
    finally:
        os.replace = real


def _kill(args: list, k: int, cwd: Path) -> None:
    env = dict(os.environ, FACEBENCH_QUIET="1", OMP_NUM_THREADS="1")
    env.pop("FACEBENCH_PLUGINS", None)
    done = subprocess.run([sys.executable, str(KILLER), str(k), *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert "error:" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]


# ---------------------------------------------------------------------------------------------- test


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rerun_contract(case, tmp_path, cli, monkeypatch, one_thread):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # the report's date: a report made again is the same
    monkeypatch.chdir(tmp_path)
    inp, work, ref = tmp_path / "in", tmp_path / "work", tmp_path / "ref"
    case.setup(inp)
    work.mkdir()
    args = case.args(inp, work)

    first, total = _counted_run(cli, args)
    assert first.exit_code == 0, first.output
    before = _state(tmp_path)

    again = _invoke(cli, [*args, *case.same])
    assert again.exit_code == 0, again.output
    said = " ".join(again.output.split())
    assert "already complete" in said and "nothing to do" in said, again.output
    assert _state(tmp_path) == before

    changed = _invoke(cli, [*args, *case.changed])
    assert changed.exit_code == 2, changed.output
    line = " ".join(changed.output.split())
    assert line.startswith("error: ") and case.key in line and "--overwrite" in line and "another --out" in line, line
    assert _state(tmp_path) == before

    work.rename(ref)
    expected = _tree(ref)
    rng = random.Random(case.name)
    points = sorted(rng.sample(range(1, total), min(case.random_kills, total - 1))) + [total, 0]
    for k in points:
        work.mkdir()
        _kill(args, k, tmp_path)
        resumed = _invoke(cli, args)
        assert resumed.exit_code == 0, f"killed after write {k} of {total}: {resumed.output}"
        assert _tree(work) == expected, f"killed after write {k} of {total}"
        final = _invoke(cli, args)
        assert final.exit_code == 0 and "already complete" in " ".join(final.output.split()), final.output
        shutil.rmtree(work)


# ------------------------------------------------------------------------------------- --help and rules

COMMANDS = [["toyfaces", "build"], ["toyfaces", "protocols"], ["toyfaces", "pose-model"], ["data", "convert"],
            ["data", "align"], ["data", "grid"], ["data", "pack", "lfw"], ["data", "pack", "cfp"], ["train-generator"], ["train-fr"],
            ["generate"], ["sample-ids"], ["embed"], ["evaluate"], ["analyze"], ["report"], ["weights", "import"],
            ["run"], ["arc2face", "make-tiny"], ["dcface", "make-tiny"], ["idiff-face", "make-tiny"]]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_help_says_what_a_rerun_does(command, cli):
    result = _invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "Rerun: the same command again does nothing once" in said and "--overwrite" in said, said


def _toy(out: Path, *extra: str) -> list:
    return ["toyfaces", "build", out, "--identities", "2", "--images-per-identity", "1", "--size", "16", "--pairs",
            "20", "--packs", "toy_lfw", "--workers", "1", *extra]


def test_overwrite_replaces_other_parameters_and_keeps_the_same(cli, tmp_path):
    out = tmp_path / "toy"
    assert _invoke(cli, _toy(out)).exit_code == 0
    before = _state(tmp_path)
    same = _invoke(cli, _toy(out, "--overwrite"))  # a retried job that always passes --overwrite
    assert same.exit_code == 0 and "already complete" in same.output and _state(tmp_path) == before
    other = _invoke(cli, _toy(out, "--seed", "3", "--overwrite"))
    assert other.exit_code == 0 and f"wrote {out}" in other.output, other.output
    assert json.loads((out / "dataset.json").read_text())["seed"] == 3
    fresh = tmp_path / "fresh"
    assert _invoke(cli, _toy(fresh, "--seed", "3")).exit_code == 0
    assert _tree(out) == _tree(fresh)  # the replaced world is the one a fresh build makes


def test_a_finished_output_that_changed_is_made_again(cli, tmp_path):
    out = tmp_path / "toy"
    assert _invoke(cli, _toy(out)).exit_code == 0
    expected = _tree(out)
    (out / "toy_lfw.bin").write_bytes(b"edited")  # no longer the sha256 its record holds: unfinished
    again = _invoke(cli, _toy(out))
    assert again.exit_code == 0 and "already complete" not in again.output, again.output
    assert _tree(out) == expected


def test_a_folder_of_other_files_is_refused_and_left_alone(cli, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    result = _invoke(cli, ["sample-ids", "--features", _features(tmp_path), "--n", "3", "--out", out / "ids.npy"])
    assert result.exit_code == 0, result.output  # a single output only looks at its own name and record
    fx.write_train_folder(tmp_path / "train", identities=4, per_identity=2, size=56)
    res = _invoke(cli, ["train-fr", "--recipe", "tiny-arcface", "--data", tmp_path / "train", "--out", out,
                        "--set", "optim.batch_per_gpu=8", "--device", "cpu"])
    line = " ".join(res.output.split())
    assert res.exit_code == 2 and f"error: {out}: exists but holds no record of the parameters" in line, line
    assert "pass --overwrite to replace it, or choose another --out" in line
    assert (out / "notes.txt").read_text() == "my notes" and not (out / "provenance.json").exists()
    assert sorted(p.name for p in out.iterdir()) == ["ids.npy", "ids.npy.json", "notes.txt"]


def _features(tmp_path: Path) -> Path:
    path = tmp_path / "feats.npy"
    np.save(path, np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32))
    return path


def test_overwrite_never_removes_the_current_folder(cli, tmp_path, monkeypatch):
    from facebench.rerun import Rerun, RerunRefused

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_text("keep")
    rerun = Rerun(tmp_path, command="x", params={}, overwrite=True)
    with pytest.raises(RerunRefused, match="will not remove the current folder"):
        rerun.check()
    assert (tmp_path / "mine.txt").read_text() == "keep"


def test_a_changed_input_is_named(cli, tmp_path):
    feats = _features(tmp_path)
    args = ["sample-ids", "--features", feats, "--n", "3", "--out", tmp_path / "ids.npy"]
    assert _invoke(cli, args).exit_code == 0
    np.save(feats, np.random.default_rng(1).standard_normal((40, 8)).astype(np.float32))
    again = _invoke(cli, args)
    assert again.exit_code == 2 and "made with other parameters (inputs.features)" in " ".join(again.output.split())
