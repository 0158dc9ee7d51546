"""What every parity script does around its comparison: find the release, skip politely, measure differences.

The scripts run as ``python benchmarks/parity/NAME.py``, so this folder is on ``sys.path`` and they
``import _common``. Nothing here is a release's code: these are the steps each script would otherwise
repeat (a missing checkout or import skips with one line and exit status 0, so a run without the
references stays green).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import subprocess
import sys
import types
import warnings
from pathlib import Path


def max_diff(a, b, *, double: bool = False, same_shape: bool = False) -> float:
    """The largest absolute difference over all elements (0 when there are none), the figure the
    comparisons print. ``double`` subtracts in float64 (exact for float32 inputs); ``same_shape`` stops the
    run when the shapes differ instead of comparing the elements in order."""
    import torch  # on use: sotafr_twins.py takes only load_file_module from here

    a, b = torch.as_tensor(a).detach(), torch.as_tensor(b).detach()
    a, b = (a.double(), b.double()) if double else (a.float(), b.float())
    if same_shape and a.shape != b.shape:
        raise SystemExit(f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a.reshape(-1) - b.reshape(-1)).abs().max()) if a.numel() else 0.0


def release_parser(doc: str, repo: str, n: int, n_help: str) -> argparse.ArgumentParser:
    """The options every Vec2Face comparison takes (release, batch, seed); each script adds its own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--release", help=f"Checkout of github.com/{repo}.")
    parser.add_argument("--n", type=int, default=n, help=n_help)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def commit_of(path: Path) -> str:
    """The release's commit, printed beside the figures so that a run can be tied to the code it compared."""
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=30)
    except OSError:
        return "unknown (git not found)"
    return out.stdout.strip() if out.returncode == 0 else "unknown (not a git checkout)"


def importable(name: str) -> bool:
    """Whether ``name`` can be imported, without importing it (the releases' dependencies are heavy)."""
    return importlib.util.find_spec(name) is not None


def release_checkout(root: Path | None, name: str, *markers: str) -> bool:
    """Whether ``root`` holds every marker file; if not, prints the skip line (the scripts then exit 0:
    the references are optional, so a run without them is not a failure)."""
    if root is not None and all((root / marker).is_file() for marker in markers):
        return True
    holding = " and ".join(markers)
    print(f"skipped: no {name} release checkout at {root} (pass --release PATH holding {holding})")
    return False


def release_imports_missing(*modules: str) -> bool:
    """Whether any of the release's own imports is missing (none is a facebench dependency); if so, prints
    the skip line with the ``pip install`` that fixes it."""
    missing = [m for m in modules if not importable(m)]
    if missing:
        print(f"skipped: the release's code imports {', '.join(missing)}: pip install {' '.join(missing)}")
    return bool(missing)


def stub_sixdrepnet() -> None:
    """Empty ``sixdrepnet`` modules: Vec2Face's model files import it for AttrOP's pose model only, which no
    comparison runs, so it need not be installed."""
    sys.modules.setdefault("sixdrepnet", types.ModuleType("sixdrepnet"))
    sys.modules.setdefault("sixdrepnet.model", types.ModuleType("sixdrepnet.model"))
    sys.modules["sixdrepnet.model"].utils = types.ModuleType("sixdrepnet.model.utils")
    sys.modules.setdefault("sixdrepnet.model.utils", sys.modules["sixdrepnet.model"].utils)


def vec2face_release(path: str | None, name: str, markers: tuple[str, ...],
                     modules: tuple[str, ...]) -> Path | None:
    """The Vec2Face (or Vec2Face+) checkout at ``path``, made importable, or None after the skip line when it
    or one of ``modules`` is missing. Its folder goes first on ``sys.path`` (its packages have plain names:
    ``models``, ``lpips``), ``sixdrepnet`` is stubbed and warnings are silenced (the release's
    ``torch.cuda.amp`` calls are deprecated in torch 2.x)."""
    root = Path(path).resolve() if path else None
    if not release_checkout(root, name, *markers) or release_imports_missing(*modules):
        return None
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(root))
    stub_sixdrepnet()
    return root


@contextlib.contextmanager
def inside(path: Path):
    """Work in ``path`` for a while: the releases read files relative to the working directory (Vec2Face's
    ``configs/vec2face/vqgan.yaml``)."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def random_iresnet(release_models, path: Path, seed: int) -> None:
    """The Vec2Face releases' iresnet100 (``models.iresnet``) with random weights, scaled to keep activations
    finite over 100 layers, saved to ``path``: the identity model both sides read (no weights offline)."""
    import torch

    torch.manual_seed(seed)
    net = release_models.iresnet("100")
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.normal_(0, 0.5 / m.weight[0].numel() ** 0.5)
            elif isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    torch.save(net.state_dict(), path)


def load_file_module(name: str, path: Path) -> types.ModuleType:
    """One file of a reference imported as module ``name`` straight from its path: no package around it and
    no ``sys.path`` entry needed."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
