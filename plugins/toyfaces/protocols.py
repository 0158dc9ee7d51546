"""Toy mirrors of the newer protocols, written in the real layouts: ``toy_ijb/``, ``toy_rfw_tone*.bin``,
``toy_tinyface/`` and ``toy_twins/`` (``facebench toyfaces protocols OUT``).

- ``toy_ijb`` (IJB-C layout, insightface's meta files): identities with several templates, each of one to
  three media (a "photo" or a short "video" of near-identical frames). Images are loose crops: the face is
  smaller, shifted and rolled, as a detector's crop is. Their five landmarks are where the toy world's own
  crop puts the ArcFace template's five points, moved with the loose crop (plus half a pixel of detector
  noise), so five-point alignment brings a loose crop back to the framing the toy FR models were trained
  on; faceness scores fall with the head's yaw. Pairs: every same-identity template pair and ten times as
  many different-identity pairs. 1:N: the first template of each identity is enrolled in gallery G1 (first
  half of the identities) or G2 (second half); every other template is a mixed-media probe.
- ``toy_rfw_tone1..4``: four verification packs (10 folds, half same), each of identities of one skin tone:
  the toy world's demographic groups.
- ``toy_tinyface``: probes and gallery matches rendered then shrunk to a few pixels, plus distractor
  identities, named ``<identity>_<n>.jpg``.
- ``toy_twins`` (ND-Twins in SOTA-FR's prepared layout, ``toy_twins.npy`` + ``issame.txt``): look-alike
  "twin" identities, the second of each pair the first moved a fraction ``twins_difference`` of the way to an
  unrelated identity in every facial measure, sharing its skin, hair, eye colour, hair style and age.
  10 folds of disjoint twin pairs; each fold's genuine half are two photos of one twin, its impostor half a
  photo of each twin of a pair (the twin sibling is the impostor, as in ND-Twins).

Every image is drawn from a generator keyed by (seed, stream, identity, item), so a seed gives
byte-identical files.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from facebench import atomic
from facebench.console import console
from facebench.data import encode_image, open_writer
from facebench.data.alignment import ARCFACE_SIZE, ARCFACE_TEMPLATE
from facebench.errors import ConfigError

from .packs import FOLDS, PACKS, check_pair_count, pack_identity_count, plan_pairs
from .params import SKIN_TONES, Difficulty, rng_for, sample_identity, sample_nuisance, stream_key
from .render import FACE_CENTER, render_face

CANONICAL = ARCFACE_SIZE  # the toy crop the ArcFace template's points are placed in
#: Skin tones (indices into params.SKIN_TONES) of the four toy groups, light to dark.
GROUP_TONES = {"tone1": 0, "tone2": 2, "tone3": 3, "tone4": 4}


@dataclass
class ProtocolsConfig:
    """What determines the files of the toy protocols."""

    seed: int = 0
    size: int = 112  # the toy world's face crop (match the training world's --size)
    ijb_identities: int = 40
    templates_per_identity: int = 3
    impostor_ratio: int = 10  # different-identity template pairs per same-identity pair
    rfw_pairs: int = 600  # pairs per group pack, a multiple of 20
    tinyface_identities: int = 60
    tinyface_probes: int = 2  # probes per identity
    tinyface_matches: int = 2  # gallery images per identity
    tinyface_distractors: int = 240
    tinyface_side: int = 16  # pixel side of a TinyFace image
    twins_pairs: int = 600  # pairs of toy_twins, a multiple of 20 (10 folds, half same)
    twins_difference: float = 0.25  # how far a twin's face is moved towards an unrelated face (0: identical)
    jpeg_quality: int = 95
    difficulty: Difficulty = field(default_factory=Difficulty)

    def validate(self) -> None:
        if not 16 <= self.size <= 512:
            raise ConfigError(f"size must be between 16 and 512 pixels, got {self.size}")
        if self.ijb_identities < 4 or self.templates_per_identity < 2:
            raise ConfigError("toy_ijb needs at least 4 identities and 2 templates per identity")
        if self.tinyface_identities < 2 or self.tinyface_probes < 1 or self.tinyface_matches < 1:
            raise ConfigError("toy_tinyface needs at least 2 identities, 1 probe and 1 gallery image each")
        if not 4 <= self.tinyface_side <= self.size:
            raise ConfigError(f"tinyface_side must lie in [4, size], got {self.tinyface_side}")
        for key in ("rfw_pairs", "twins_pairs"):
            try:
                check_pair_count(getattr(self, key))
            except ValueError as exc:
                raise ConfigError(str(exc).replace("--pairs", key)) from None
        if not 0 < self.twins_difference <= 1:
            raise ConfigError(f"twins_difference must lie in (0, 1], got {self.twins_difference}")


# ------------------------------------------------------------------------------------------- toy_ijb


def loose_crop_points(side: int, scale: float, dx: float, dy: float, roll: float) -> np.ndarray:
    """Where the ArcFace template's points land in a loose crop of ``side`` px rendered with this scale,
    offset and roll, when the toy crop of :data:`CANONICAL` px puts them at the template."""
    centre_canon = CANONICAL / 2 + np.array(FACE_CENTER) * CANONICAL / 2
    centre_loose = side / 2 + (np.array(FACE_CENTER) + [dx, dy]) * side / 2
    moved = (ARCFACE_TEMPLATE - centre_canon) * (scale * side / CANONICAL)
    t = math.radians(roll)  # PIL rotates counter-clockwise on screen (y down)
    rot = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
    return moved @ rot.T + centre_loose


def _ijb_image(cfg: ProtocolsConfig, ident, identity: int, template: int, media: int, frame: int) -> tuple:
    key = stream_key("toy_ijb") + 1
    base = sample_nuisance(rng_for(cfg.seed, key, identity, template, media), ident, cfg.difficulty)
    rng = rng_for(cfg.seed, key, identity, template, media, frame)
    nz = replace(base, yaw=base.yaw + float(rng.normal(0, 3)), noise_seed=int(rng.integers(2**31)),
                 scale=float(rng.uniform(0.5, 0.65)), dx=float(rng.uniform(-0.15, 0.15)),
                 dy=float(rng.uniform(-0.12, 0.12)), roll=float(rng.normal(0, 10)))
    side = 2 * cfg.size
    image = render_face(ident, nz, side)
    points = loose_crop_points(side, nz.scale, nz.dx, nz.dy, nz.roll) + rng.normal(0, 0.5, (5, 2))
    faceness = float(np.clip(1.0 - abs(nz.yaw) / 150.0 - rng.uniform(0, 0.1), 0.2, 1.0))
    return image, points, faceness


def write_toy_ijb(root: Path, cfg: ProtocolsConfig) -> dict[str, Any]:
    (root / "loose_crop").mkdir(parents=True)
    (root / "meta").mkdir()
    media_lines, landmark_lines = [], []
    templates_of: list[list[int]] = []
    count = media_id = 0
    for identity in range(cfg.ijb_identities):
        ident = sample_identity(rng_for(cfg.seed, stream_key("toy_ijb"), identity), cfg.difficulty.identity_spread)
        templates_of.append([])
        for t in range(cfg.templates_per_identity):
            template_id = 100 * (identity + 1) + t
            templates_of[-1].append(template_id)
            layout = rng_for(cfg.seed, stream_key("toy_ijb") + 2, identity, t)
            for m in range(int(layout.integers(1, 4))):
                media_id += 1
                for k in range(int(layout.integers(1, 4))):
                    image, points, faceness = _ijb_image(cfg, ident, identity, t, m, k)
                    count += 1
                    name = f"{count}.jpg"
                    atomic.write_bytes(root / "loose_crop" / name, encode_image(image, "jpg", cfg.jpeg_quality),
                                       "toy IJB image")
                    media_lines.append(f"{name} {template_id} {media_id}")
                    coords = " ".join(f"{v:.4f}" for v in points.ravel())
                    landmark_lines.append(f"{name} {coords} {faceness:.4f}")
    rng = rng_for(cfg.seed, stream_key("toy_ijb") + 3)
    pairs = [(a, b, 1) for ts in templates_of for i, a in enumerate(ts) for b in ts[i + 1:]]
    genuine = len(pairs)
    while len(pairs) < genuine * (1 + cfg.impostor_ratio):
        i, j = rng.choice(cfg.ijb_identities, 2, replace=False)
        pairs.append((int(rng.choice(templates_of[i])), int(rng.choice(templates_of[j])), 0))
    half = cfg.ijb_identities // 2
    header = "TEMPLATE_ID,SUBJECT_ID,FILENAME\n"
    files = {
        "ijbc_face_tid_mid.txt": "\n".join(media_lines) + "\n",
        "ijbc_name_5pts_score.txt": "\n".join(landmark_lines) + "\n",
        "ijbc_template_pair_label.txt": "".join(f"{a} {b} {s}\n" for a, b, s in pairs),
        "ijbc_1N_gallery_G1.csv": header + "".join(f"{templates_of[i][0]},{i},x\n" for i in range(half)),
        "ijbc_1N_gallery_G2.csv": header + "".join(f"{templates_of[i][0]},{i},x\n"
                                                   for i in range(half, cfg.ijb_identities)),
        "ijbc_1N_probe_mixed.csv": header + "".join(f"{t},{i},x\n" for i, ts in enumerate(templates_of)
                                                    for t in ts[1:]),
    }
    for name, text in files.items():
        atomic.write_text(root / "meta" / name, text, "toy IJB meta file")
    return {"images": count, "templates": cfg.ijb_identities * cfg.templates_per_identity, "media": media_id,
            "pairs": len(pairs), "same_pairs": genuine, "identities": cfg.ijb_identities}


# ------------------------------------------------------------------------------------------- toy_rfw


def write_toy_rfw(out: Path, cfg: ProtocolsConfig, group: str) -> dict[str, Any]:
    stream = f"toy_rfw_{group}"
    tone = SKIN_TONES[GROUP_TONES[group]]
    spread = cfg.difficulty.identity_spread

    def identity(i: int):
        ident = sample_identity(rng_for(cfg.seed, stream_key(stream), i), spread)
        jitter = rng_for(cfg.seed, stream_key(stream) + 3, i).normal(0, 6, 3)
        return replace(ident, skin=tuple(np.clip(tone + jitter, 0, 255)))

    n_ids = pack_identity_count(cfg.rfw_pairs)
    plan = plan_pairs(cfg.rfw_pairs, rng_for(cfg.seed, stream_key(stream) + 2), np.zeros((n_ids, 1)), False)
    nuisance = PACKS["toy_lfw"].nuisance
    with open_writer(out / f"{stream}.bin", "bin") as writer:
        for k, (i, j, same) in enumerate(plan):
            ia, ib = identity(i), identity(j)
            na, nb = nuisance(rng_for(cfg.seed, stream_key(stream) + 1, k), ia, ib, cfg.difficulty)
            writer.add(encode_image(render_face(ia, na, cfg.size), "jpg", cfg.jpeg_quality),
                       encode_image(render_face(ib, nb, cfg.size), "jpg", cfg.jpeg_quality), same)
    return {"file": f"{stream}.bin", "pairs": cfg.rfw_pairs, "skin_tone": GROUP_TONES[group], "identities": n_ids}


# ----------------------------------------------------------------------------------------- toy_twins

#: Identity fields twins share: colours, hair style, age (what twins photographed on one day share).
TWIN_SHARED = {"skin", "hair", "iris", "hair_style", "base_age"}


def twin_identities(cfg: ProtocolsConfig, pair: int) -> tuple[Any, Any]:
    """The two toy twins of twin pair ``pair``: the second is the first moved ``twins_difference`` of the way
    to an unrelated identity in every facial measure."""
    key = stream_key("toy_twins")
    first = sample_identity(rng_for(cfg.seed, key, pair), cfg.difficulty.identity_spread)
    other = sample_identity(rng_for(cfg.seed, key + 4, pair), cfg.difficulty.identity_spread)
    moved = {f.name: getattr(first, f.name) + cfg.twins_difference * (getattr(other, f.name) - getattr(first, f.name))
             for f in fields(first) if f.name not in TWIN_SHARED}
    return first, replace(first, **moved)


def write_toy_twins(root: Path, cfg: ProtocolsConfig) -> dict[str, Any]:
    """``root/toy_twins.npy`` + ``root/issame.txt``: per fold, genuine pairs of one twin and twin-sibling
    impostor pairs, from the fold's own twin pairs."""
    key = stream_key("toy_twins")
    n_twins = pack_identity_count(cfg.twins_pairs)
    rng = rng_for(cfg.seed, key + 2)
    per_fold = cfg.twins_pairs // FOLDS
    nuisance = PACKS["toy_lfw"].nuisance
    with open_writer(root, "sotafr") as writer:
        for fold in range(FOLDS):
            pool = np.arange(fold, n_twins, FOLDS)
            for k in range(per_fold):
                same = k < per_fold // 2
                twins = twin_identities(cfg, int(rng.choice(pool)))
                if same:
                    one = twins[int(rng.integers(2))]
                    pair = (one, one)
                else:
                    pair = twins if rng.uniform() < 0.5 else twins[::-1]
                index = fold * per_fold + k
                na, nb = nuisance(rng_for(cfg.seed, key + 1, index), pair[0], pair[1], cfg.difficulty)
                writer.add(encode_image(render_face(pair[0], na, cfg.size), "png"),
                           encode_image(render_face(pair[1], nb, cfg.size), "png"), same)
    return {"folder": root.name, "pairs": cfg.twins_pairs, "twin_pairs": n_twins,
            "twins_difference": cfg.twins_difference, "layout": "SOTA-FR prepared folder (toy_twins.npy, issame.txt)"}


# -------------------------------------------------------------------------------------- toy_tinyface


def _tiny(cfg: ProtocolsConfig, stream: str, identity: int, item: int) -> bytes:
    ident = sample_identity(rng_for(cfg.seed, stream_key(stream), identity), cfg.difficulty.identity_spread)
    nz = sample_nuisance(rng_for(cfg.seed, stream_key(stream) + 1, identity, item), ident, cfg.difficulty)
    face = Image.fromarray(render_face(ident, nz, cfg.size))
    small = face.resize((cfg.tinyface_side, cfg.tinyface_side), Image.BILINEAR, reducing_gap=None)
    return encode_image(np.asarray(small), "jpg", cfg.jpeg_quality)


def write_toy_tinyface(root: Path, cfg: ProtocolsConfig) -> dict[str, Any]:
    for folder in ("Probe", "Gallery_Match", "Gallery_Distractor"):
        (root / folder).mkdir(parents=True)
    for identity in range(cfg.tinyface_identities):
        for n in range(cfg.tinyface_probes):
            atomic.write_bytes(root / "Probe" / f"{identity}_{n}.jpg", _tiny(cfg, "toy_tinyface", identity, n),
                               "toy TinyFace image")
        for n in range(cfg.tinyface_matches):
            data = _tiny(cfg, "toy_tinyface", identity, cfg.tinyface_probes + n)
            atomic.write_bytes(root / "Gallery_Match" / f"{identity}_{n}.jpg", data, "toy TinyFace image")
    for k in range(cfg.tinyface_distractors):
        atomic.write_bytes(root / "Gallery_Distractor" / f"{k:05d}.jpg", _tiny(cfg, "toy_tinyface_distractor", k, 0),
                           "toy TinyFace image")
    return {"probes": cfg.tinyface_identities * cfg.tinyface_probes,
            "gallery_matches": cfg.tinyface_identities * cfg.tinyface_matches,
            "distractors": cfg.tinyface_distractors, "side": cfg.tinyface_side}


def build_protocols(out: str | os.PathLike, cfg: ProtocolsConfig | None = None, *,
                    overwrite: bool = False) -> tuple[dict, bool]:
    """Write the three toy protocols into ``out`` (atomically, with the record of the rerun contract); returns
    the ``protocols.json`` record and whether it was there already (same settings: nothing written)."""
    from facebench.rerun import FINISHED, Rerun, parameters
    from facebench.runs import CONFIG, PROVENANCE, Run
    from facebench.safe_load import read_json

    cfg = cfg or ProtocolsConfig()
    cfg.validate()
    out = Path(out)
    rerun = Rerun(out, command="toyfaces protocols", params=parameters(cfg), what="set of toy protocols",
                  overwrite=overwrite)
    if rerun.check() == FINISHED:
        return read_json(out / "protocols.json", what="toy protocols record"), True
    with atomic.atomic_dir(out, overwrite=True, what="toy protocols") as tmp:  # Rerun.check allowed it
        with console.status("toy_ijb"):
            ijb = write_toy_ijb(tmp / "toy_ijb", cfg)
        with console.status("toy_rfw"):
            rfw = {g: write_toy_rfw(tmp, cfg, g) for g in GROUP_TONES}
        with console.status("toy_tinyface"):
            tiny = write_toy_tinyface(tmp / "toy_tinyface", cfg)
        with console.status("toy_twins"):
            twins = write_toy_twins(tmp / "toy_twins", cfg)
        record = {"generator": "toyfaces", "seed": cfg.seed, "size": cfg.size, "toy_ijb": ijb, "toy_rfw": rfw,
                  "toy_tinyface": tiny, "toy_twins": twins, "settings": asdict(cfg)}
        atomic.write_json(tmp / "protocols.json", record)
        outputs = sorted(p.name for p in tmp.iterdir() if p.name not in (CONFIG, PROVENANCE))
        rerun.finish(Run.start(tmp, config=cfg, seed=cfg.seed, rerun=rerun), outputs=outputs)
    return record, False
