"""The DCFace generator: identity image + style image -> seeded dual-condition DDIM -> aligned 112 px face.

DCFace is conditioned on images, not vectors. ``facebench generate`` maps its identity sources so:

* ``--n-ids N``: N identity images from the release's first stage (the unconditional DDPM ``ffhq_10m.pt``,
  256 px, 100 respaced ancestral steps as ``unconditional_sampling.sh`` runs it), identity i seeded by
  (run seed, i); the 256 px FFHQ-aligned sample is moved to the ArcFace crop by the fixed FFHQ -> ArcFace
  similarity (facebench's Arc2Face alignment; the release detects the face with RetinaFace and aligns it to
  the same template; its authors then dropped non-frontal and occluded samples by hand, which is not
  reproduced);
* ``--ref-images DIR --detector NAME``: real photos, detected and aligned by ``facebench.align``; each
  identity's first photo (by name) is its identity image;
* ``--ids FILE``: refused (there is no vector to condition on).

The identity "vectors" written to ``ids.npy`` are identity codes (:data:`CODE_DIM` float32, exact
integers): a marker, the source, the identity's index and 64 bits of its seed (first stage) or of its
aligned crop's sha256 (photos), so a resumed run regenerates the same identity images and a changed photo
or seed changes ``ids_sha256``. Vector perturbation is off (``generation_defaults``); a perturbed code is
refused. Image j of identity i takes a style image from ``style_bank`` (a folder of aligned faces, read with
facebench.data.photos's checks) and its DDIM noise from a generator seeded by (identity seed, j): the set
does not depend on batch or shard boundaries, and a killed run resumes to the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facebench.config import build_config
from facebench.errors import ConfigError, DataError, FacebenchError

from . import layout
from .schedulers import DDIM, SpacedDDPM

CODE_DIM = 8
RELEASE_STEPS, RELEASE_STAGE1_STEPS = 50, 100  # render_condition's DDIM; unconditional_sampling.sh's respacing
TINY_STEPS = 4  # dcface_tiny's DDIM and first-stage steps unless given: seconds on a CPU
MARKER = 24.0  # code[0]: tells a DCFace identity code from an identity vector
STAGE1, PHOTO = 1, 2


@dataclass
class DCFaceOptions:
    """``--generator-option KEY=VALUE`` of the ``dcface`` generators."""

    style_bank: str = ""  # folder of aligned faces (the release's style_images/); required
    checkpoint: str = "dcface_3x3.ckpt"  # in the model directory: dcface_3x3.ckpt or dcface_5x5.ckpt
    steps: int = RELEASE_STEPS  # DDIM steps (the release: 50; dcface_tiny: 4 unless given)
    eta: float = 1.0  # DDIM eta (the release: 1.0)
    stage1_steps: int = RELEASE_STAGE1_STEPS  # respaced first-stage steps (the release: 100; tiny: 4)
    batch_size: int = 16  # images per DDIM batch
    stage1_batch_size: int = 8  # identity images per first-stage batch

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 1000 or not 2 <= self.stage1_steps <= 1000:
            # guided-diffusion's respaced posterior needs two steps (its first variance is the second's)
            raise ConfigError("dcface: steps must be in 1..1000 and stage1_steps in 2..1000")
        if not 0.0 <= self.eta <= 1.0:
            raise ConfigError(f"dcface: eta must be in [0, 1], got {self.eta}")
        if self.batch_size < 1 or self.stage1_batch_size < 1:
            raise ConfigError("dcface: batch_size and stage1_batch_size must be >= 1")


def _seed_chunks(value: int) -> list[float]:
    return [float((value >> (16 * k)) & 0xFFFF) for k in range(4)]


def make_code(kind: int, index: int, value: int) -> np.ndarray:
    code = np.zeros(CODE_DIM, dtype=np.float32)
    code[:3] = (MARKER, kind, index)
    code[3:7] = _seed_chunks(value)
    return code


def identity_seed(seed: int, index: int) -> int:
    state = np.random.SeedSequence([int(seed), int(index), 0xDCFA]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 32) | int(state[1])


class StyleBank:
    """The style images: every photo of a folder (either layout of facebench.data.photos), aligned crops of
    the generator's size. Each is decoded and checked once when the bank is opened (a malformed or
    misshapen file is an error before anything is generated), and read again when it is drawn (a bank of
    a training set's size is not held in memory)."""

    def __init__(self, folder: str, size: int):
        from facebench.data.photos import PhotoFolder, read_photo

        if not folder:
            raise FacebenchError("dcface: --generator-option style_bank=DIR is required: a folder of aligned face "
                                 "crops whose appearance (pose, light, background) the images take (the release's "
                                 "style_images/; facebench data align makes one from photos)")
        self.folder = PhotoFolder.scan(folder)
        self.size = size
        for photo in self.folder.photos:
            self._check(photo, read_photo(photo.path))
        record = self.folder.record()
        self.record = {"path": str(folder), "sha256": record["sha256"], "images": len(self.folder.photos),
                       "layout": self.folder.layout, "size": size}
        self._cache: dict[int, np.ndarray] = {}

    def _check(self, photo: Any, image: np.ndarray) -> np.ndarray:
        if image.shape[:2] != (self.size, self.size):
            raise DataError(photo.path, f"style image is {image.shape[1]} x {image.shape[0]} px; the style bank "
                                        f"holds aligned {self.size} x {self.size} crops (facebench data align makes "
                                        "them)")
        return image

    def image(self, index: int) -> np.ndarray:
        """Style image ``index`` (uint8 RGB, size x size)."""
        from facebench.data.photos import read_photo

        if index not in self._cache:
            if len(self._cache) >= 1024:
                self._cache.clear()
            photo = self.folder.photos[index]
            self._cache[index] = self._check(photo, read_photo(photo.path))
        return self._cache[index]

    def __len__(self) -> int:
        return len(self.folder.photos)


class DCFaceGenerator:
    """``generate(codes)`` -> (N, 3, S, S) aligned faces in [-1, 1]; ``identity_codes`` for ``generate``."""

    feature_dim = CODE_DIM
    input_scale = None
    reference_extractor = None

    def __init__(self, model_dir: str | os.PathLike, *, device: Any = "cpu", options: DCFaceOptions | None = None,
                 stage1_config: Any = None, stage1_size: int = layout.STAGE1_SIZE, untrained: bool = False):
        import torch

        self.options = opts = options or DCFaceOptions()
        self.device = torch.device(device)
        self.model_dir = Path(model_dir)
        self.checkpoint_path, self._stage1_path = layout.resolve_files(model_dir, opts.checkpoint, stage1=False)
        if not opts.style_bank:  # before the checkpoint is read: the cheap mistake first
            StyleBank(opts.style_bank, 0)
        self.model, ckpt = layout.load_dcface(self.checkpoint_path, device=self.device)
        cfg = self.model.config
        self.image_size = cfg.image_size
        self.scheduler = DDIM(cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end)
        self.bank = StyleBank(opts.style_bank, self.image_size)
        self.stage1_config = stage1_config or layout.STAGE1_CONFIG
        self.stage1_size = stage1_size
        self.stage1 = None
        self.untrained = untrained
        self._ref_images: np.ndarray | None = None
        self.reseed(0)

    # ------------------------------------------------------------------------------------ identities

    def identity_codes(self, request: Any, folder: Any, *, seed: int, device: str) -> tuple[np.ndarray, dict, str]:
        """(codes, ids_source record, source path) for ``generate``'s identity source (module docstring)."""
        if request.ids is not None:
            raise FacebenchError("dcface is conditioned on identity images, not vectors: --ids FILE does not apply; "
                                 "use --n-ids N (identity images from its first-stage DDPM) or --ref-images DIR "
                                 "--detector NAME (photos)")
        if folder is None:
            if request.stats or request.features:
                raise FacebenchError("dcface draws its --n-ids identities from its own first stage: --stats and "
                                     "--features apply to vector generators")
            stage1_file = self._load_stage1()
            codes = np.stack([make_code(STAGE1, i, identity_seed(seed, i)) for i in range(request.n_ids)])
            record = {"dcface_first_stage": {"n": request.n_ids, "seed": seed, "file": stage1_file.name,
                                             "steps": self.options.stage1_steps, "size": self.stage1_size,
                                             "alignment": "fixed FFHQ -> ArcFace similarity"}}
            return codes, record, str(stage1_file) if stage1_file.is_file() else ""  # dcface_tiny: a temporary file
        from facebench.data.photos import align_photo, build_detector

        detector, detector_record = build_detector(request.detector, request.detector_weights, device)
        firsts = [next(p for p in folder.photos if p.label == label) for label in range(len(folder.identities))]
        crops, used = [], []
        for photo in firsts:
            crop, face = align_photo(detector, photo, self.image_size, request.detector)
            crops.append(crop)
            used.append({"identity": folder.identities[photo.label], "photo": photo.name, **face.record()})
        self._ref_images = np.stack(crops)
        codes = np.stack([make_code(PHOTO, i, int.from_bytes(hashlib.sha256(c.tobytes()).digest()[:8], "big"))
                          for i, c in enumerate(crops)])
        record = {"ref_images": {**folder.record(), "detector": detector_record, "identity_images": used,
                                 "rule": "each identity's first photo (by name), aligned to the ArcFace crop"}}
        return codes, record, str(folder.root)

    def _load_stage1(self) -> Path:
        if self.stage1 is None:
            path = self.model_dir / layout.STAGE1
            layout.resolve_files(self.model_dir, self.options.checkpoint, stage1=True)
            self.stage1 = layout.load_stage1(path, self.stage1_config, device=self.device)
            self.stage1_sampler = SpacedDDPM(1000, self.options.stage1_steps)
            from facebench_plugins.arc2face.alignment import ffhq_to_arcface

            m = ffhq_to_arcface(self.stage1_size, self.image_size)  # continuous coordinates
            self.stage1_matrix = np.concatenate([m[:, :2], (m[:, 2] + m[:, :2].sum(1) * 0.5 - 0.5)[:, None]], axis=1)
        return self.model_dir / layout.STAGE1

    def stage1_images(self, seeds: list[int]) -> np.ndarray:
        """uint8 aligned identity images (N, S, S, 3) from the first stage, one noise stream per seed."""
        import torch

        from facebench.data.alignment import warp_affine

        self._load_stage1()
        out = []
        for start in range(0, len(seeds), self.options.stage1_batch_size):
            chunk = seeds[start:start + self.options.stage1_batch_size]
            gens = [torch.Generator().manual_seed(s & (2**63 - 1)) for s in chunk]
            noise = _per_image_noise(gens)
            shape = (len(chunk), 3, self.stage1_size, self.stage1_size)
            with torch.no_grad():
                x = self.stage1_sampler.sample(self.stage1, shape, noise, device=self.device)
            # torchvision's save_image(normalize=True, range=(-1, 1)), as the release writes the samples
            pixels = ((x.clamp(-1, 1) + 1) / 2).mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
            for p in pixels.permute(0, 2, 3, 1).cpu().numpy():
                out.append(warp_affine(np.ascontiguousarray(p), self.stage1_matrix, self.image_size))
        return np.stack(out)

    # -------------------------------------------------------------------------------------- sampling

    def reseed(self, seed: int) -> None:
        """Called by ``generate`` at each shard: image indices per identity restart (a shard holds whole
        identities) and the shard's identity images are made again."""
        self._counters: dict[tuple[int, int], int] = {}
        self._id_cache: dict[tuple[int, int], np.ndarray] = {}

    def _decode(self, vectors: Any) -> list[tuple[int, int, int]]:
        v = np.asarray(vectors.detach().cpu() if hasattr(vectors, "detach") else vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[1] != CODE_DIM:
            raise FacebenchError(f"dcface: identity codes must be (N, {CODE_DIM}), got {tuple(v.shape)}")
        ok = (v[:, 0] == MARKER) & np.isin(v[:, 1], (STAGE1, PHOTO)) & (v[:, 2] >= 0) & (v[:, 7] == 0) \
            & (v == np.round(v)).all(axis=1) & (v[:, 3:7] >= 0).all(axis=1) & (v[:, 3:7] < 65536).all(axis=1)
        if not ok.all():
            raise FacebenchError("dcface: the identity rows are not DCFace identity codes (a perturbed or foreign "
                                 "vector): keep generation.perturb.sigmas = [0.0] and give --n-ids or --ref-images")
        rows = []
        for r in v:
            value = sum(int(r[3 + k]) << (16 * k) for k in range(4))
            rows.append((int(r[1]), int(r[2]), value))
        return rows

    def _identity_images(self, keys: list[tuple[int, int, int]]) -> None:
        new = [k for k in dict.fromkeys(keys) if (k[0], k[1]) not in self._id_cache]
        photos = [k for k in new if k[0] == PHOTO]
        if photos:
            if self._ref_images is None:
                raise FacebenchError("dcface: identity codes of photos, but no --ref-images were read")
            for kind, index, value in photos:
                crop = self._ref_images[index]
                if int.from_bytes(hashlib.sha256(crop.tobytes()).digest()[:8], "big") != value:
                    raise FacebenchError(f"dcface: the aligned photo of identity {index} is not the one its code "
                                         "records")
                self._id_cache[(kind, index)] = crop
        drawn = [k for k in new if k[0] == STAGE1]
        if drawn:
            for (kind, index, _), image in zip(drawn, self.stage1_images([k[2] for k in drawn])):
                self._id_cache[(kind, index)] = image

    def generate(self, vectors: Any, *, masks: Any = None) -> Any:
        """(N, 3, S, S) images in [-1, 1] for N identity codes (image j of an identity: its j-th row since
        the last ``reseed``)."""
        import torch

        if masks is not None:
            raise FacebenchError("dcface: generators without masks take masks=None")
        keys = self._decode(vectors)
        size = self.image_size
        if not keys:
            return torch.zeros((0, 3, size, size), device=self.device)
        self._identity_images(keys)
        ids, styles, gens = [], [], []
        for kind, index, value in keys:
            j = self._counters.get((kind, index), 0)
            self._counters[(kind, index)] = j + 1
            ss = np.random.SeedSequence([value & 0xFFFFFFFF, value >> 32, kind, index, j])
            style_seed, noise_seed = (int(x) for x in ss.generate_state(2, dtype=np.uint64))
            ids.append(self._id_cache[(kind, index)])
            styles.append(self.bank.image(style_seed % len(self.bank)))
            gens.append(torch.Generator().manual_seed(noise_seed & (2**63 - 1)))
        out = []
        step = self.options.batch_size
        for start in range(0, len(keys), step):
            sl = slice(start, start + step)
            out.append(self.sample(_to_model(np.stack(ids[sl]), self.device), _to_model(np.stack(styles[sl]), self.device),
                                   _per_image_noise(gens[sl])))
        return torch.cat(out)

    def sample(self, id_images: Any, style_images: Any, noise: Any) -> Any:
        """The release's ``render_condition`` (sampler 'ddim'): images in [-1, 1] from identity and style
        images in [-1, 1]; ``noise(shape)`` gives the starting noise and each step's."""
        import torch

        with torch.no_grad():
            cond, stylemod = self.model.condition(id_images, style_images)
            opts = self.options

            def eps(x: Any, t: Any) -> Any:
                return self.model.eps(x, t[None].to(self.device), cond, stylemod)

            shape = (len(id_images), 3, self.image_size, self.image_size)
            x = self.scheduler.sample(eps, shape, noise, steps=opts.steps, eta=opts.eta, device=self.device)
        return ((x / 2 + 0.5).clamp(0, 1) - 0.5) / 0.5

    # -------------------------------------------------------------------------------------- provenance

    @property
    def info(self) -> dict[str, Any]:
        opts = self.options
        info: dict[str, Any] = {
            "conditioned_on_real_appearance": True,
            "style_bank": self.bank.record,
            "identity_codes": "ids.npy rows are DCFace identity codes (first-stage seeds or aligned photos), "
                              "not vectors",
            "checkpoint": opts.checkpoint,
            "sampler": {"scheduler": "ddim (the release's)", "steps": opts.steps, "eta": opts.eta,
                        "batch_size": opts.batch_size},
            "first_stage": {"steps": opts.stage1_steps, "size": self.stage1_size},
            "style_choice": "uniform over the bank, seeded by (identity, image index)",
        }
        if self.untrained:
            info.update(untrained=True, pipeline_check=True)
        return info


def _per_image_noise(gens: list[Any]) -> Any:
    import torch

    def noise(shape: tuple[int, ...]) -> Any:
        return torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in gens])

    return noise


def _to_model(images: np.ndarray, device: Any) -> Any:
    """uint8 (N, S, S, 3) RGB -> (N, 3, S, S) in [-1, 1], as the release's ToTensor + Normalize(0.5, 0.5)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(255)
    return ((x - 0.5) / 0.5).to(device)


def _options(options: dict[str, Any]) -> DCFaceOptions:
    return build_config(DCFaceOptions, options)


def dcface(weights: str | os.PathLike | None = None, device: Any = "cpu", **options: Any) -> DCFaceGenerator:
    """DCFace from the release's ``pretrained_models/`` folder (dcface_3x3.ckpt / dcface_5x5.ckpt, ffhq_10m.pt)."""
    if weights is None:
        raise FacebenchError("generator 'dcface' needs its model directory: pass --weights DIR holding the release's "
                             f"{', '.join(layout.CHECKPOINTS)} and {layout.STAGE1} (its pretrained_models/ folder)")
    return DCFaceGenerator(weights, device=device, options=_options(options))


def dcface_tiny(weights: str | os.PathLike | None = None, device: Any = "cpu", **options: Any) -> DCFaceGenerator:
    """The tiny random-weight DCFace (56 px): release-layout files from ``tiny.make_tiny`` (``weights``: a
    ``facebench dcface make-tiny`` folder; None: a fresh seed-0 one), same loading path; the release's
    samplers with :data:`TINY_STEPS` steps each unless ``steps`` / ``stage1_steps`` say otherwise."""
    from .tiny import STAGE1_TINY, STAGE1_TINY_SIZE, TINY_MARKER, make_tiny

    opts = _options({"steps": TINY_STEPS, "stage1_steps": TINY_STEPS, **options})
    kw = {"stage1_config": STAGE1_TINY, "stage1_size": STAGE1_TINY_SIZE}
    if weights is not None:
        return DCFaceGenerator(weights, device=device, options=opts, untrained=(Path(weights) / TINY_MARKER).is_file(),
                               **kw)
    with tempfile.TemporaryDirectory(prefix="dcface-tiny-") as tmp:
        generator = DCFaceGenerator(make_tiny(Path(tmp) / "model"), device=device, options=opts, untrained=True, **kw)
        generator._load_stage1()  # read while the folder exists
        return generator


__all__ = ["CODE_DIM", "DCFaceGenerator", "DCFaceOptions", "StyleBank", "dcface", "dcface_tiny", "make_code"]
