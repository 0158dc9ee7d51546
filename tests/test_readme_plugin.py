"""The README's "Writing a plugin" example, installed exactly as printed (its module and its entry point,
as ``pip install`` would lay them out) and checked as the README says: listed, built, class-conditional
(the same vector gives the same face, different vectors different faces), usable by ``generate``, its
command runs, and a misspelt name gets the printed suggestion."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facebench.cli import create_cli
from facebench.config import tomllib
from facebench.pluginmanager import reset_plugins

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(text: str, first_line: str) -> str:
    """The fenced code block of the README whose first line is ``first_line``."""
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        if block.startswith(first_line + "\n"):
            return block
    raise AssertionError(f"README.md has no code block starting with {first_line!r}")


@pytest.fixture
def hello_installed(tmp_path, monkeypatch):
    """``pip install ./facebench-hello``: the package as printed plus the metadata its pyproject declares."""
    text = README.read_text(encoding="utf-8")
    project = tomllib.loads(_block(text, "# pyproject.toml"))["project"]
    site = tmp_path / "site"
    (site / "facebench_hello").mkdir(parents=True)
    (site / "facebench_hello" / "__init__.py").write_text(_block(text, "# facebench_hello/__init__.py"))
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    entry_points = "".join(f"{k} = {v}\n" for k, v in project["entry-points"]["facebench"].items())
    (info / "entry_points.txt").write_text("[facebench]\n" + entry_points)
    monkeypatch.syspath_prepend(str(site))
    reset_plugins()
    yield site
    reset_plugins()


def test_the_readme_plugin_works_as_the_readme_says(hello_installed, tmp_path, monkeypatch):
    import facebench

    listed = json.loads(CliRunner().invoke(create_cli(), ["plugins", "--kind", "generator", "--json"]).output)
    noise = next(row for row in listed if row["name"] == "noise")
    assert (noise["plugin"], noise["version"]) == ("hello", "0.1.0")

    gen = facebench.load_generator("noise")
    rng = np.random.default_rng(0)
    vectors = torch.from_numpy(rng.standard_normal((4, 512)).astype(np.float32))
    batch = torch.cat([vectors, vectors[:2]])  # the first two vectors again
    images = gen.generate(batch)
    assert images.shape == (6, 3, 112, 112) and images.min() >= -1 and images.max() <= 1
    assert torch.allclose(images[4:], images[:2], atol=1e-5)  # same vector, same face (up to rounding)
    again = facebench.load_generator("noise").generate(vectors)
    assert torch.allclose(again, images[:4], atol=1e-5)  # and from a new generator of the same seed
    for i in range(4):
        for j in range(i + 1, 4):  # different vectors, clearly different faces
            assert (images[i] - images[j]).abs().mean() > 0.1

    ids = tmp_path / "ids.npy"
    np.save(ids, vectors.numpy() * 20)
    monkeypatch.chdir(tmp_path)
    made = CliRunner().invoke(create_cli(), ["generate", "--generator", "noise", "--ids", "ids.npy",
                                             "--images-per-id", "3", "--out", "runs/noise-hello"])
    assert made.exit_code == 0, made.output
    card = json.loads((tmp_path / "runs" / "noise-hello" / "dataset.json").read_text())
    assert (card["generator"], card["identities"], card["images"]) == ("noise", 4, 12)

    hello = CliRunner().invoke(create_cli(), ["hello"])
    assert hello.exit_code == 0 and hello.output.strip() == "hello from facebench-hello"
    misspelt = CliRunner().invoke(create_cli(), ["generate", "--generator", "nosie", "--ids", "ids.npy",
                                                 "--out", "runs/x"])
    assert misspelt.exit_code == 2
    assert "unknown generator 'nosie'; did you mean 'noise'? available: " in misspelt.output
