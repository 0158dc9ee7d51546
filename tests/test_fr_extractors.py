"""Feature extractors and ``facebench embed``: preprocessing contract, strict safe loading, outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from conftest import array_reader, one_thread, write_train_folder  # noqa: F401

import facebench
from facebench.cli import create_cli
from facebench.data import open_dataset
from facebench.errors import ConfigError, DataError, MissingFileError
from facebench.fr.recipe import resolve_recipe
from facebench.fr.trainer import train_fr

pytestmark = pytest.mark.usefixtures("one_thread")


def _extractors():
    return facebench.registry("feature_extractor")


def _saved_weights(tmp_path, name="iresnet_tiny", prefix=""):
    torch.manual_seed(0)
    model = facebench.create_backbone(name)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_var.uniform_(0.5, 2.0)
    path = tmp_path / f"{name}.pt"
    torch.save({prefix + k: v for k, v in model.state_dict().items()}, path)
    return model.eval(), path


def test_embed_is_the_normalised_flip_sum(tmp_path):
    model, path = _saved_weights(tmp_path, prefix="module.")  # DDP-style names load too
    ext = _extractors().create("iresnet_tiny", weights=str(path))
    assert (ext.input_size, ext.mean, ext.std, ext.flip_test, ext.feature_dim) == (56, (0.5,) * 3, (0.5,) * 3, True, 512)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 56, 56, 3), dtype=np.uint8)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    with torch.no_grad():
        expected = F.normalize(model(x) + model(x.flip(-1)), dim=1).numpy()
        plain = F.normalize(model(x), dim=1).numpy()
    assert np.allclose(ext.embed(images), expected, atol=1e-5)
    no_flip = _extractors().create("iresnet_tiny", weights=str(path), flip_test=False, batch_size=2)
    assert np.allclose(no_flip.embed(images), plain, atol=1e-5)
    # larger images are resized to the model's input size
    assert ext.embed(rng.integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)).shape == (2, 512)


def test_forward_tensor_is_differentiable_and_frozen(tmp_path):
    _, path = _saved_weights(tmp_path)
    ext = _extractors().create("iresnet_tiny", weights=str(path))
    x = (torch.rand(2, 3, 56, 56) * 2 - 1).requires_grad_(True)
    ext.forward_tensor(x).pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in ext.model.parameters())


def test_weight_errors_name_the_file_and_the_keys(tmp_path):
    _, path = _saved_weights(tmp_path, "iresnet_tiny")
    with pytest.raises(DataError) as info:
        _extractors().create("se_iresnet_tiny", weights=str(path))
    text = str(info.value)
    assert text.startswith(str(path)) and "does not match backbone 'se_iresnet_tiny'" in text
    assert "missing (layer1.0.attn.fc1.weight" in text and "expects 123 keys" in text
    assert "\n" not in text
    with pytest.raises(MissingFileError, match="nothere.pt: weights file not found"):
        _extractors().create("iresnet_tiny", weights=str(tmp_path / "nothere.pt"))
    with pytest.raises(ConfigError, match="needs a weights file"):
        _extractors().create("iresnet_tiny")
    with pytest.raises(MissingFileError, match="arcface-r100-glint360k.pth: weights file not found"):
        _extractors().create("arcface-r100")


class Gadget:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_are_refused(tmp_path, capsys):
    bad = tmp_path / "evil.pt"
    torch.save({"conv1.weight": Gadget()}, bad)
    with pytest.raises(DataError, match="evil.pt: refused to load"):
        _extractors().create("iresnet_tiny", weights=str(bad))
    assert "must never run" not in capsys.readouterr().out


def test_fr_run_extractor_and_embed_command(tmp_path):
    data = write_train_folder(tmp_path / "train", identities=4, per_identity=3)
    recipe = resolve_recipe("tiny-arcface", ["optim.batch_per_gpu=4", "optim.epochs=1", "data.workers=0"])
    run = tmp_path / "run"
    train_fr(recipe, open_dataset(data), run)
    ext = _extractors().create("fr-run", weights=str(run))
    assert ext.input_size == 56
    out = tmp_path / "out" / "feats.npy"
    res = CliRunner().invoke(create_cli(), ["embed", "--extractor", "fr-run", "--weights", str(run), str(data),
                                            "--out", str(out), "--batch-size", "5"])
    assert res.exit_code == 0, res.output
    assert "12 unit-length features (512-d) of 4 identities" in res.output
    feats = np.load(out)
    labels = np.load(tmp_path / "out" / "feats.labels.npy")
    centers = np.load(tmp_path / "out" / "feats.centers.npy")
    reader = open_dataset(data)
    expected = ext.embed(np.stack([reader.image(i) for i in range(len(reader))]))
    assert feats.shape == (12, 512) and np.allclose(feats, expected, atol=1e-5)
    assert np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-5)
    assert labels.tolist() == reader.labels.tolist()
    for c in range(4):
        mean = feats[labels == c].mean(0)
        assert np.allclose(centers[c], mean / np.linalg.norm(mean), atol=1e-5)
    # --raw: the model's output for the image alone, and centres that are plain means (the release's scale)
    raw_out = tmp_path / "out" / "raw.npy"
    res = CliRunner().invoke(create_cli(), ["embed", "--extractor", "fr-run", "--weights", str(run), str(data),
                                            "--out", str(raw_out), "--raw"])
    assert res.exit_code == 0, res.output
    raw = np.load(raw_out)
    images = np.stack([reader.image(i) for i in range(len(reader))])
    with torch.no_grad():
        direct = ext.model(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1).numpy()
    np.testing.assert_allclose(raw, direct, atol=1e-4)
    norms = np.linalg.norm(raw, axis=1)
    assert f"12 raw features (median norm {np.median(norms):.4g})" in res.output and norms.min() > 2
    raw_centers = np.load(tmp_path / "out" / "raw.centers.npy")
    for c in range(4):
        np.testing.assert_allclose(raw_centers[c], raw[labels == c].mean(0), rtol=1e-5, atol=1e-5)
    # a mismatched weights file: one line, exit 2, nothing written
    res = CliRunner().invoke(create_cli(), ["embed", "--extractor", "se_iresnet50", "--weights",
                                            str(run / "backbone.pt"), str(data), "--out", str(tmp_path / "x.npy")])
    assert res.exit_code == 2 and res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.npy").exists()


def test_embed_resumes_after_a_crash(tmp_path, monkeypatch):
    from facebench.evaluation import features

    data = write_train_folder(tmp_path / "train", identities=4, per_identity=9)
    _, weights = _saved_weights(tmp_path)
    args = ["embed", "--extractor", "iresnet_tiny", "--weights", str(weights), str(data), "--batch-size", "1"]
    clean = CliRunner().invoke(create_cli(), [*args, "--out", str(tmp_path / "clean.npy")])
    assert clean.exit_code == 0, clean.output

    real = features.embed_images
    calls = []

    def crashing(model, source, indices, **kw):  # 36 images in shards of 16: dies on the second shard
        calls.append(len(indices))
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real(model, source, indices, **kw)

    monkeypatch.setattr(features, "embed_images", crashing)
    out = tmp_path / "feats.npy"
    first = CliRunner().invoke(create_cli(), [*args, "--out", str(out)])
    assert first.exit_code != 0 and not out.exists()
    calls.clear()
    monkeypatch.setattr(features, "embed_images", lambda model, source, indices, **kw: calls.append(len(indices))
                        or real(model, source, indices, **kw))
    second = CliRunner().invoke(create_cli(), [*args, "--out", str(out)])
    assert second.exit_code == 0, second.output
    assert calls == [16, 4]  # the finished first shard was not recomputed
    assert np.array_equal(np.load(out), np.load(tmp_path / "clean.npy"))
    assert np.array_equal(np.load(tmp_path / "feats.centers.npy"), np.load(tmp_path / "clean.centers.npy"))
    assert not list(tmp_path.glob("*.partial*"))
