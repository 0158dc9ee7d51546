"""Loading checkpoints and arrays without executing them.

``torch.load`` on an untrusted file can run arbitrary code; facebench always loads with
``weights_only=True`` (and ``.npy`` arrays with ``allow_pickle=False``) and turns every failure into a
one-line error naming the file.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import DataError, MissingFileError, first_line


def load_array(path: str | os.PathLike, *, what: str = "array") -> Any:
    """A plain ``.npy`` array, never unpickled. A missing, empty, truncated or pickled file, or an ``.npz``
    archive, is one error naming the file; what the array must hold is the caller's check."""
    import numpy as np

    if not os.path.isfile(path):
        raise MissingFileError(path, f"{what} file")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(path, f"cannot read {what}: {first_line(exc)}") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        data.close()
        raise DataError(path, f"{what} must be a .npy array, got an .npz archive")
    return data


def load_checkpoint(path: str | os.PathLike, *, what: str = "checkpoint", map_location: Any = "cpu") -> Any:
    import pickle

    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingFileError(path, what)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DataError(path, f"refused to load {what}: not a plain tensor checkpoint ({first_line(exc)})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise DataError(path, f"cannot read {what}: {first_line(exc)}") from None


def load_state_dict(
    path: str | os.PathLike, *, key: str | None = None, what: str = "weights", expected_keys: Any = None
) -> dict[str, Any]:
    """A state dict from ``path`` (optionally under ``key``); wrong structure is a one-line error."""
    return state_dict_in(load_checkpoint(path, what=what), path, key=key, what=what)


def state_dict_in(obj: Any, path: str | os.PathLike, *, key: str | None = None,
                  what: str = "weights") -> dict[str, Any]:
    """The state dict inside an already loaded checkpoint ``obj`` (read once, used for several things)."""
    import torch

    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            found = ", ".join(sorted(map(str, obj))[:8]) if isinstance(obj, dict) else type(obj).__name__
            raise DataError(path, f"{what}: expected a dict with key '{key}', found {found}")
        obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(path, f"{what}: expected a state dict of tensors, found {type(obj).__name__}")
    return obj


def state_dict_mismatch(expected: dict[str, Any], state: dict[str, Any], *, show: int = 3) -> str | None:
    """One line naming missing, unexpected and wrong-shape keys of ``state`` against ``expected``, or None.

    Every loader of released weights reports a layout mismatch the same way, so a user can tell at a
    glance whether a file belongs to another architecture (many missing) or another size (shapes).
    """
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = [f"{len(items)} {label} ({', '.join(items[:show])}{', ...' if len(items) > show else ''})"
             for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong))
             if items]
    return "; ".join(parts) or None
