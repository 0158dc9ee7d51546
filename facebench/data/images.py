"""Encoded face images in and out: every format stores JPEG/PNG bytes, every consumer wants RGB arrays.

Decoding validates as it goes (a truncated or foreign file becomes a :class:`DataError` naming where it
sits) so that a bad image deep inside a 15M-image set is reported, not silently skipped.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import DataError, first_line

#: File extensions the image-folder format treats as images.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def image_kind(data: bytes) -> str | None:
    """``"jpg"`` or ``"png"`` from the magic bytes, ``None`` for anything else."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return None


#: The most pixels an image may declare in its header (Pillow's own warning limit, 89.5M: a 9,500 x 9,500
#: photo). A header declaring more (a 30,000 x 30,000 "decompression bomb" of a few kB) is refused before
#: any pixel memory is allocated.
MAX_PIXELS = 89_478_485


def _reason(exc: Exception) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not a JPEG/PNG image"
    return first_line(exc)


@contextlib.contextmanager
def _opened(data: bytes, path: str | os.PathLike, where: str | None) -> Iterator[Any]:
    """A Pillow image of ``data`` whose header was checked (an image, at most :data:`MAX_PIXELS`); any
    failure inside the block, Pillow's decompression-bomb errors included, is one :class:`DataError`."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise DataError(path, "empty image record", where)
    try:
        with warnings.catch_warnings():  # the size check below refuses what Pillow only warns about
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(bytes(data))) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise DataError(path, f"image declares {width} x {height} pixels, more than the "
                                          f"{MAX_PIXELS:,} facebench decodes (a decompression bomb?)", where)
                yield img
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise DataError(path, f"image refused as a decompression bomb ({first_line(exc)})", where) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise DataError(path, f"undecodable image ({_reason(exc)})", where) from None


def decode_image(data: bytes, *, path: str | os.PathLike = "<bytes>", where: str | None = None) -> np.ndarray:
    """RGB ``uint8`` HxWx3 array from encoded bytes; a broken image is a one-line :class:`DataError`."""
    with _opened(data, path, where) as img:
        img.load()
        rgb = img.convert("RGB")
    return np.asarray(rgb, dtype=np.uint8)


def image_size(data: bytes, *, path: str | os.PathLike = "<bytes>", where: str | None = None) -> tuple[int, int]:
    """``(width, height)`` read from the header only (cheap: used by ``data info``)."""
    with _opened(data, path, where) as img:
        return img.size


def encode_image(image: np.ndarray, kind: str = "jpg", quality: int = 95) -> bytes:
    """Encode an RGB ``uint8`` array as JPEG (quality 95, insightface's choice) or PNG (lossless)."""
    from PIL import Image

    array = np.ascontiguousarray(image, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB array, got shape {array.shape}")
    buf = io.BytesIO()
    pil = Image.fromarray(array, "RGB")
    if kind in ("jpg", "jpeg"):
        pil.save(buf, format="JPEG", quality=quality)
    elif kind == "png":
        pil.save(buf, format="PNG", compress_level=1)
    else:
        raise ValueError(f"unknown image encoding {kind!r}; use 'jpg' or 'png'")
    return buf.getvalue()
