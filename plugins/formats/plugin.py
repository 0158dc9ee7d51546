"""Registers the built-in dataset formats (lazily: nothing heavy is imported until a format is used)."""

from __future__ import annotations

from facebench import hookimpl


@hookimpl
def register_formats(register):
    register("folder", "facebench_plugins.formats.folder:ImageFolderFormat",
             "image folder root/<identity>/<image>.{jpg,png}; labels from sorted folder names")
    register("bin", "facebench_plugins.formats.binpack:BinPackFormat",
             "insightface verification pack <name>.bin (pickled images + same/different flags)")
