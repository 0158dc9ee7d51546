"""Registers the built-in dataset formats (lazily: nothing heavy is imported until a format is used)."""

from __future__ import annotations

from facebench import hookimpl


@hookimpl
def register_formats(register):
    register("folder", "facebench_plugins.formats.folder:ImageFolderFormat",
             "image folder root/<identity>/<image>.{jpg,png}; labels from sorted folder names")
    register("bin", "facebench_plugins.formats.binpack:BinPackFormat",
             "insightface verification pack <name>.bin (pickled images + same/different flags)")
    register("rec", "facebench_plugins.formats.recordio:RecordIOFormat",
             "insightface RecordIO train.rec + train.idx (+ property), read without MXNet")
    register("lmdb", "facebench_plugins.formats.lmdbformat:LMDBFormat",
             "Vec2Face/HSFace LMDB (msgpack records; HSFace and WebFace4M-with-features layouts)")
    register("pairlist", "facebench_plugins.formats.pairlist:PairListFormat",
             "pair-list test set: image root + LFW-style pairs.txt or CSV path_a,path_b,same")
    register("sotafr", "facebench_plugins.formats.sotafr:SotaFrFormat",
             "SOTA-FR prepared test folder NAME/NAME.npy (uint8 2N x 3 x H x W) + NAME/issame.txt (ND-Twins, Hadrian)")
