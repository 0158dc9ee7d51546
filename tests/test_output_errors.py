"""A full disk, a read-only folder or a refused permission while writing: one ``error:`` line naming the
path and what was being written, exit 2, nothing half-written at a final name, and a rerun (from the same
or a moved run directory) that finishes byte for byte like an uninterrupted run."""

from __future__ import annotations

import errno
import os
import shutil

import conftest as fx
import numpy as np
import pytest
from click.testing import CliRunner

from facebench import atomic
from facebench.cli import create_cli


def _fail_on(monkeypatch, module, name, code, *, after=0, filename=None):
    """Make ``module.name`` raise OSError(code) from its (after+1)-th call on."""
    real = getattr(module, name)
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(code, os.strerror(code), filename if filename is not None else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)
    return calls


def _one_error_line(result, text):
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert lines[-1].startswith("error: ") and text in lines[-1], result.output
    assert "Traceback" not in result.output


def _generate(ids, out, *extra):
    return ["generate", "--generator", "tinygen", "--ids", str(ids), "--images-per-id", "4", "--ids-per-shard", "2",
            "--out", str(out), "--format", "testfolder", "--device", "cpu", *extra]


def test_a_full_disk_during_generate_is_one_line_and_a_moved_run_resumes_byte_for_byte(tmp_path, monkeypatch):
    ids = tmp_path / "ids.npy"
    np.save(ids, np.random.default_rng(0).standard_normal((12, fx.DIM)).astype(np.float32) * 1.5)
    full = tmp_path / "full"
    assert CliRunner().invoke(fx.gen_cli(monkeypatch), _generate(ids, full)).exit_code == 0

    run = tmp_path / "disk1" / "run"
    # the 3rd shard's file (and everything after it) meets a full disk
    from facebench.generation import sharded

    real_write = atomic.write_bytes
    written = []

    def full_disk(path, data, what="output"):
        if what == "generated shard":
            if len(written) >= 2:
                with atomic.atomic_path(path, what) as tmp:
                    tmp.write_bytes(data[:10])
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written.append(path)
        return real_write(path, data, what)

    monkeypatch.setattr(sharded.atomic, "write_bytes", full_disk)
    res = CliRunner().invoke(fx.gen_cli(monkeypatch), _generate(ids, run))
    _one_error_line(res, f"{run / 'shards' / 'shard-00002.msgpack'}: cannot write generated shard: "
                         "No space left on device")
    shards = sorted(p.name for p in (run / "shards").iterdir())
    assert shards == ["shard-00000.msgpack", "shard-00001.msgpack"]  # no half-written shard, no temporary
    assert not (run / "dataset.json").exists()
    monkeypatch.setattr(sharded.atomic, "write_bytes", real_write)

    moved = tmp_path / "disk2" / "run"
    moved.parent.mkdir()
    shutil.move(run, moved)
    res = CliRunner().invoke(fx.gen_cli(monkeypatch), _generate(ids, moved))
    assert res.exit_code == 0, res.output
    assert "generated 4 of 6 shards in this run" in res.output
    assert fx.tree_bytes(moved / "dataset.testfolder") == fx.tree_bytes(full / "dataset.testfolder")
    assert (moved / "dataset.json").read_bytes() == (full / "dataset.json").read_bytes()


def test_a_read_only_output_folder_is_one_line_naming_the_dataset(tmp_path, monkeypatch):
    """The final rename onto the output's name is refused (EROFS): one line naming the output, and neither
    the output nor any temporary stays."""
    src = tmp_path / "src"
    fx.write_train_folder(src, identities=3, per_identity=2)
    real_replace = os.replace
    finals = {tmp_path / "out.rec", tmp_path / "out.idx", tmp_path / "toy"}

    def read_only(src_path, dst_path):
        if atomic.Path(dst_path) in finals:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(src_path), None, str(dst_path))
        return real_replace(src_path, dst_path)

    monkeypatch.setattr(atomic.os, "replace", read_only)
    for args, target, what in (
        # a RecordIO set is renamed index first: the index is what cannot be written
        (["data", "convert", str(src), str(tmp_path / "out.rec"), "--to", "rec"], tmp_path / "out.idx",
         "dataset index"),
        (["toyfaces", "build", str(tmp_path / "toy"), "--identities", "3", "--images-per-identity", "2",
          "--pairs", "20", "--size", "32"], tmp_path / "toy", "toy world"),
    ):
        res = CliRunner().invoke(create_cli(), args)
        _one_error_line(res, f"{target}: cannot write {what}: Read-only file system")
        assert not any(p.exists() for p in finals)
        assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_permission_denied_on_the_output_folder_is_one_line(tmp_path, monkeypatch):
    src = tmp_path / "src"
    fx.write_train_folder(src, identities=3, per_identity=2)
    locked = tmp_path / "locked"
    real_mkdir = atomic.Path.mkdir

    def refuse(self, *a, **k):
        if self == locked or locked in self.parents:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(atomic.Path, "mkdir", refuse)
    res = CliRunner().invoke(create_cli(), ["data", "convert", str(src), str(locked / "out.lmdb"), "--to", "lmdb"])
    # the first thing written there is the conversion's record (the rerun contract), beside the dataset
    _one_error_line(res, f"{locked / 'out.lmdb.json'}: cannot write run record: Permission denied")


def test_a_full_disk_while_embedding_is_one_line_and_leaves_no_partial_file(tmp_path, monkeypatch):
    if not hasattr(os, "posix_fallocate"):
        pytest.skip("no posix_fallocate on this platform")
    data = fx.write_train_folder(tmp_path / "train", identities=3, per_identity=2)
    import torch

    import facebench

    weights = tmp_path / "w.pt"
    torch.save(facebench.create_backbone("iresnet_tiny").state_dict(), weights)
    _fail_on(monkeypatch, os, "posix_fallocate", errno.ENOSPC)
    out = tmp_path / "feats.npy"
    res = CliRunner().invoke(create_cli(), ["embed", str(data), "--extractor", "iresnet_tiny", "--weights",
                                            str(weights), "--out", str(out), "--device", "cpu"])
    _one_error_line(res, f"{out}: cannot write features: No space left on device")
    assert not out.exists() and not list(tmp_path.glob("feats.partial*"))


def test_an_unworded_os_error_is_still_one_line_naming_the_path(tmp_path, monkeypatch):
    """An OSError that no writer wrapped (here a failing disk under the recipe file) is one line naming
    the file, not a traceback."""
    from facebench.fr import recipe

    def failing_disk(name, overrides=()):
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(tmp_path / "recipe.toml"))

    monkeypatch.setattr(recipe, "resolve_recipe", failing_disk)
    res = CliRunner().invoke(create_cli(), ["train-fr", "--recipe", "x", "--data", str(tmp_path)])
    _one_error_line(res, f"{tmp_path / 'recipe.toml'}: Input/output error")
