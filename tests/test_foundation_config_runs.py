"""Typed configs, run directories with provenance, atomic writes, resumable shard manifests."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from facebench import atomic
from facebench.config import build_config, dump_toml, load_config, tomllib
from facebench.errors import ConfigError, DataError, MissingFileError
from facebench.runs import Run, run_path
from facebench.shards import ShardManifest
from facebench.weights import resolve_weights


@dataclasses.dataclass
class Optim:
    lr: float = 0.1
    milestones: list[int] = dataclasses.field(default_factory=lambda: [12, 20, 24])
    fp16: bool = True


@dataclasses.dataclass
class Recipe:
    backbone: str = "se_iresnet50"
    epochs: int = 26
    optim: Optim = dataclasses.field(default_factory=Optim)
    val: list[str] | None = None


def test_toml_then_overrides(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('epochs = 4\n[optim]\nlr = 0.05\n')
    cfg = load_config(Recipe, path, ["optim.milestones=[2, 3]", "backbone=iresnet18", "optim.lr=1"])
    assert cfg == Recipe(backbone="iresnet18", epochs=4, optim=Optim(lr=1.0, milestones=[2, 3]))
    assert isinstance(cfg.optim.lr, float)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lrr=0.1"], "unknown config key 'optim.lrr' (did you mean 'optim.lr'? known keys: fp16, lr, milestones)"),
        # a key given without its table is found in the whole key tree
        (["lr=0.1"], "unknown config key 'lr' (did you mean 'optim.lr'? known keys: backbone, epochs, optim, val)"),
        (["optim.lr.x=0.1"], "config key 'optim.lr' expects float, got dict {'x': 0.1}"),
        (["backbon=x"], "unknown config key 'backbon' (did you mean 'backbone'? known keys: backbone, epochs, optim, val)"),
        (["zzz=1"], "unknown config key 'zzz' (known keys: backbone, epochs, optim, val)"),
        (["epochs=ten"], "config key 'epochs' expects int, got str 'ten'"),
        (["optim.fp16=1"], "config key 'optim.fp16' expects bool, got int 1"),
        (["optim.milestones=[1, 'a']"], "config key 'optim.milestones[1]' expects int, got str 'a'"),
        (["optim=3"], "config key 'optim' expects a table, got int 3"),
        (["noequals"], "--set expects key.sub=value, got 'noequals'"),
    ],
)
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        build_config(Recipe, {}, overrides)
    assert str(err.value) == message


def test_bad_toml_file_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("epochs = = 3")
    with pytest.raises(ConfigError, match=r"bad.toml: invalid TOML"):
        load_config(Recipe, path)
    with pytest.raises(ConfigError, match=r"missing.toml: config file not found"):
        load_config(Recipe, tmp_path / "missing.toml")


def test_run_directory_has_config_and_provenance(tmp_path):
    data = tmp_path / "train.rec"
    data.write_bytes(b"records")
    cfg = build_config(Recipe, {"epochs": 2})
    run = Run.start(tmp_path / "runs" / "exp", config=cfg, seed=7, device="cpu", command=["facebench", "train-fr"],
              inputs={"data": data})
    saved = tomllib.loads((run.path / "config.toml").read_text())
    assert build_config(Recipe, saved) == cfg
    prov = json.loads((run.path / "provenance.json").read_text())
    assert prov["seed"] == 7 and prov["device"] == "cpu" and prov["command"] == ["facebench", "train-fr"]
    assert prov["inputs"]["data"]["sha256"] == hashlib.sha256(b"records").hexdigest()
    assert prov["python"] and prov["facebench"] and "torch" in prov
    extra = tmp_path / "pack.bin"
    extra.write_bytes(b"pairs")
    run.add_input("val", extra)
    assert run.provenance()["inputs"]["val"]["sha256"] == hashlib.sha256(b"pairs").hexdigest()
    assert run_path(None, "exp") == run_path(None, "exp", root="runs")
    assert str(run_path(tmp_path / "x", "exp")) == str(tmp_path / "x")


def test_dump_toml_roundtrip():
    assert tomllib.loads(dump_toml(Recipe())) == {
        "backbone": "se_iresnet50", "epochs": 26, "optim": {"lr": 0.1, "milestones": [12, 20, 24], "fp16": True},
    }


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "results.json"
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists() and list(target.parent.iterdir()) == []
    atomic.write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}


def test_atomic_dir_appears_only_complete(tmp_path):
    target = tmp_path / "dataset"
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_dir(target) as tmp:
            (tmp / "0").mkdir()
            raise KeyboardInterrupt
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic.atomic_dir(target) as tmp:
        (tmp / "done.txt").write_text("ok")
    assert (target / "done.txt").read_text() == "ok"
    with pytest.raises(FileExistsError):
        with atomic.atomic_dir(target):
            pass
    with atomic.atomic_dir(target, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]


def test_shard_manifest_resumes_and_refuses_changed_params(tmp_path):
    path = tmp_path / "manifest.json"
    first = ShardManifest(path, {"seed": 1, "n": 10})
    first.mark_done(0, {"images": 5})
    again = ShardManifest(path, {"seed": 1, "n": 10})
    assert again.is_done(0) and not again.is_done(1) and again.done["0"] == {"images": 5}
    with pytest.raises(DataError, match=r"manifest.json: cannot resume: parameters differ .*\(seed\)"):
        ShardManifest(path, {"seed": 2, "n": 10})


def test_missing_weights_error_names_file_and_purpose(tmp_path):
    with pytest.raises(MissingFileError) as err:
        resolve_weights("vec2face_generator.pth", weights_root=tmp_path)
    assert str(err.value) == (
        "vec2face_generator.pth: weights file not found (Vec2Face generator (key 'model_vec2face'); "
        "from the Vec2Face release)"
    )
    (tmp_path / "vec2face_generator.pth").write_bytes(b"x")
    assert resolve_weights("vec2face_generator.pth", weights_root=tmp_path) == tmp_path / "vec2face_generator.pth"


def test_set_keys_of_the_commands_get_the_full_key_suggested():
    """``generate --set perturb.min_cos=0.6`` and ``train-fr --set epochs=2`` name the keys that exist."""
    from facebench.fr.recipe import resolve_recipe
    from facebench.generation.job import generate_config

    with pytest.raises(ConfigError, match=r"unknown config key 'perturb\.min_cos' \(did you mean "
                                          r"'generation\.perturb\.min_cos'\? known keys: attrop, generation\)"):
        generate_config("noise_projection", {}, ["perturb.min_cos=0.6"])
    with pytest.raises(ConfigError, match=r"unknown config key 'epochs' \(did you mean 'optim\.epochs'\?"):
        resolve_recipe("tiny-arcface", ["epochs=2"])
