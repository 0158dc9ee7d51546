"""Hostile photo folders given to ``embed --align`` and ``generate --ref-images``: files that are not photos
(text, a decompression bomb, a truncated file, a FIFO, a file of gigabytes), links leading out of the folder,
names that would break the error line, layouts that would silently change an identity, and a pickle given
as the reference extractor's weights.

Each is one ``error:`` line naming the entry at fault, with nothing written and no run folder left; the
hostile extras that change nothing (hidden files, links that stay inside, an EXIF orientation) give the
vectors of the clean folder.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import test_ref_images as ref
from PIL import Image

from facebench.data import photos as photo_module

from .conftest import Payload, bomb_png, files_under, invoke, refused, succeeded


@pytest.fixture
def cli(monkeypatch):
    return ref.ref_cli(monkeypatch)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    import torch
    from facebench_plugins.fr.backbones.iresnet import iresnet_tiny

    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("fr") / "ir-tiny.pth"
    torch.save(iresnet_tiny().state_dict(), path)
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    """A clean identity-folder tree of two people (ann: 2 photos, ben: 1)."""
    root = tmp_path / "people"
    ref.write_tree(root, {"ann": 2, "ben": 1})
    return root


def embed(cli, root, weights, out, *extra):
    return invoke(cli, ["embed", "--align", "--detector", "known-faces", "--extractor", "iresnet_tiny", "--weights",
                        weights, root, "--out", out, "--raw", "--device", "cpu", *extra])


def refused_embed(cli, root, weights, tmp_path, *names) -> str:
    """The command refused naming ``names``, and wrote nothing anywhere under the test's folder."""
    before = files_under(tmp_path)
    line = refused(embed(cli, root, weights, tmp_path / "out" / "refs.npy"), *names)
    assert files_under(tmp_path) == before
    assert not (tmp_path / "out").exists()
    return line


def test_text_named_as_a_photo_is_refused(cli, folder, weights, tmp_path):
    bad = folder / "ann" / "01.png"
    bad.write_text("<html>not an image</html>")
    line = refused_embed(cli, folder, weights, tmp_path, bad)
    assert "undecodable image" in line


def test_a_decompression_bomb_is_refused_before_decoding(cli, folder, weights, tmp_path):
    bad = folder / "ben" / "00.png"
    bad.write_bytes(bomb_png())
    line = refused_embed(cli, folder, weights, tmp_path, bad)
    assert "decompression bomb" in line


def test_a_truncated_photo_is_refused(cli, folder, weights, tmp_path):
    bad = folder / "ann" / "00.png"
    bad.write_bytes(bad.read_bytes()[:300])
    line = refused_embed(cli, folder, weights, tmp_path, bad)
    assert "undecodable image" in line


def test_a_file_of_gigabytes_is_refused_before_it_is_read(cli, folder, weights, tmp_path, monkeypatch):
    bad = folder / "ann" / "huge.jpg"
    with open(bad, "wb") as fh:  # sparse: no disk used
        fh.truncate(photo_module.MAX_PHOTO_BYTES + 1)
    line = refused_embed(cli, folder, weights, tmp_path, bad)
    assert "larger than the" in line


def test_a_fifo_named_as_a_photo_is_refused_without_blocking(cli, folder, weights, tmp_path):
    bad = folder / "ben" / "pipe.jpg"
    os.mkfifo(bad)
    line = refused_embed(cli, folder, weights, tmp_path, bad)
    assert "is not a regular file" in line


def test_a_link_leading_out_of_the_folder_is_refused(cli, folder, weights, tmp_path):
    secret = tmp_path / "elsewhere" / "secret.png"
    ref.save_photo(secret, *ref.toy_photo(9, 0))
    link = folder / "ben" / "01.png"
    link.symlink_to(secret)
    line = refused_embed(cli, folder, weights, tmp_path, link)
    assert "symbolic link leading out of the photo folder" in line
    # an identity folder that is a link out of the folder, too
    shutil.rmtree(folder / "ben")
    (folder / "ben").symlink_to(secret.parent, target_is_directory=True)
    refused_embed(cli, folder, weights, tmp_path, folder / "ben")


def test_a_broken_link_is_refused(cli, folder, weights, tmp_path):
    link = folder / "ann" / "02.png"
    link.symlink_to(tmp_path / "gone.png")
    line = refused_embed(cli, folder, weights, tmp_path, link)
    assert "broken symbolic link" in line


def test_a_name_with_control_characters_stays_on_one_escaped_line(cli, folder, weights, tmp_path):
    (folder / "ann" / "x\nerror: fake.txt").write_text("hello")
    line = refused_embed(cli, folder, weights, tmp_path, "x\\nerror: fake.txt")
    assert "is not a photo (extension '.txt'" in line


def test_a_name_that_is_not_utf8_is_shown_escaped(cli, folder, weights, tmp_path):
    with open(os.path.join(os.fsencode(folder / "ben"), b"\xffnotes.txt"), "wb") as fh:
        fh.write(b"x")
    line = refused_embed(cli, folder, weights, tmp_path, "\\xffnotes.txt")
    assert "\udcff" not in line


def test_layouts_that_would_change_an_identity_are_refused(cli, folder, weights, tmp_path):
    nested = folder / "ann" / "more"
    ref.save_photo(nested / "00.png", *ref.toy_photo(4, 0))
    line = refused_embed(cli, folder, weights, tmp_path, nested)
    assert "is a folder inside an identity folder" in line
    shutil.rmtree(nested)
    (folder / "carl").mkdir()
    assert "identity folder holds no photos" in refused_embed(cli, folder, weights, tmp_path, folder / "carl")


def test_two_photos_naming_one_identity_in_a_flat_folder_are_refused(cli, weights, tmp_path):
    flat = tmp_path / "flat"
    ref.save_photo(flat / "dora.png", *ref.toy_photo(1, 0))
    ref.save_photo(flat / "dora.jpg", *ref.toy_photo(2, 0))
    line = refused_embed(cli, flat, weights, tmp_path, flat / "dora.png")
    assert "same name as dora.jpg" in line


def test_hidden_files_and_links_inside_the_folder_change_nothing(cli, folder, weights, tmp_path):
    clean = tmp_path / "clean.npy"
    succeeded(embed(cli, folder, weights, clean))
    tricky = tmp_path / "tricky"
    shutil.copytree(folder, tricky)
    (tricky / ".DS_Store").write_bytes(b"\0\1\2")
    (tricky / "ann" / "._00.png").write_bytes(b"AppleDouble")
    (tricky / "ben" / "00.png").unlink()
    (tricky / "ben" / "00.png").symlink_to(tricky / "ann" / "00.png")  # a link that stays inside
    out = tmp_path / "tricky.npy"
    succeeded(embed(cli, tricky, weights, out))
    feats, want = np.load(out), np.load(clean)
    np.testing.assert_array_equal(feats[:2], want[:2])
    np.testing.assert_array_equal(feats[2], want[0])  # ben's photo is now the link to ann's first


def test_an_exif_orientation_is_applied_as_a_camera_means_it(cli, weights, tmp_path):
    upright, points = ref.toy_photo(6, 0)
    plain = tmp_path / "plain"
    ref.save_photo(plain / "eve.png", upright, points)
    turned = tmp_path / "turned" / "eve.png"
    turned.parent.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: the stored pixels are the upright photo rotated 90 degrees
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(turned, exif=exif.tobytes())
    succeeded(embed(cli, plain, weights, tmp_path / "a.npy"))
    succeeded(embed(cli, turned.parent, weights, tmp_path / "b.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_a_link_planted_at_the_photo_record_is_replaced_not_written_through(cli, folder, weights, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "o" / "refs.npy"
    out.parent.mkdir()
    (out.parent / "refs.photos.json").symlink_to(victim)
    succeeded(embed(cli, folder, weights, out))
    assert victim.read_text() == "keep me"
    assert not (out.parent / "refs.photos.json").is_symlink()


def test_a_pickle_as_the_reference_weights_is_refused_and_never_run(cli, folder, tmp_path, marker):
    payload = tmp_path / "ref.pth"
    payload.write_bytes(pickle.dumps({"conv1.weight": Payload(marker)}))
    out = tmp_path / "run"
    res = invoke(cli, ["generate", "--generator", "vec2face_tiny", "--untrained", "--ref-images", folder,
                       "--detector", "known-faces", "--generator-option", "reference_extractor=iresnet_tiny",
                       "--generator-option", f"reference_weights={payload}", "--out", out, "--device", "cpu"])
    refused(res, payload)
    assert not out.exists()


def test_missing_weights_are_named_never_fetched(cli, folder, weights, tmp_path):
    out = tmp_path / "run"
    base = ["generate", "--generator", "vec2face_tiny", "--untrained", "--ref-images", folder,
            "--generator-option", "reference_extractor=iresnet_tiny", "--out", out, "--device", "cpu"]
    line = refused(invoke(cli, [*base, "--detector", "known-faces", "--generator-option",
                                f"reference_weights={tmp_path / 'absent.pth'}"]), tmp_path / "absent.pth")
    assert "weights file not found" in line
    line = refused(invoke(cli, [*base, "--detector", "needs-weights", "--detector-weights", tmp_path / "det.pth",
                                "--generator-option", f"reference_weights={weights}"]), tmp_path / "det.pth")
    assert "weights file not found" in line
    assert not out.exists()
