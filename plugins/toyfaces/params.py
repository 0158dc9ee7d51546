"""What makes a toy identity (stable parameters) and a toy photo of it (nuisance parameters).

Identity parameters are drawn once per identity from a generator keyed by ``(seed, stream, identity)``;
nuisance parameters once per image from ``(seed, stream, identity, image)``. Keys, not call order, fix
every draw, so any subset of images can be rendered in any process and still come out byte-identical.

:class:`Difficulty` holds the knobs (documented in ``docs/toyfaces.md``): how far identities differ,
and how much pose, expression, light, age, facial hair, exposure, background and blur vary.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, fields, replace

import numpy as np

#: Skin tones and hair colours are few on purpose: many identities share them, so a model must use the
#: geometry of the face, not its colour, to tell identities apart.
SKIN_TONES = np.array(
    [[241, 194, 167], [224, 172, 138], [198, 145, 108], [161, 110, 76], [120, 80, 56], [233, 190, 150]], float
)
HAIR_COLOURS = np.array(
    [[30, 24, 20], [70, 45, 30], [115, 80, 50], [200, 165, 110], [150, 70, 35], [55, 50, 48]], float
)
IRIS_COLOURS = np.array([[70, 45, 25], [60, 100, 150], [80, 110, 70], [110, 110, 115], [35, 25, 20]], float)
GREY_HAIR = np.array([185, 185, 188], float)


@dataclass(frozen=True)
class Difficulty:
    """The knobs of the toy world; the defaults give a small CNN 90-99% on ``toy_lfw``.

    Angles are in degrees, other ranges are fractions. ``identity_spread`` scales how far each identity's
    geometry departs from the average face (smaller = identities look more alike = harder).
    """

    identity_spread: float = 1.0
    yaw_sigma: float = 18.0
    pitch_sigma: float = 8.0
    roll_sigma: float = 6.0
    expression: float = 0.6
    illumination: float = 0.35
    age_jitter: float = 0.1
    facial_hair_p: float = 0.12
    exposure_sigma: float = 0.15
    background_clutter: float = 0.5
    blur: float = 0.6
    noise: float = 3.0
    misalignment: float = 0.03

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def scaled(self, factor: float) -> Difficulty:
        """Every nuisance knob times ``factor`` (identity spread unchanged): one number for "harder"."""
        return replace(self, **{n: getattr(self, n) * factor for n in self.field_names() if n != "identity_spread"})


def stream_key(name: str) -> int:
    """A stable integer for a stream name (``"train"``, ``"toy_lfw"``...), for keyed generators."""
    return zlib.crc32(name.encode())


def rng_for(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *(int(k) & 0xFFFFFFFF for k in key)])


@dataclass(frozen=True)
class Identity:
    """Stable appearance of one toy person (lengths are fractions of the canvas half-width)."""

    face_w: float
    face_h: float
    jaw_w: float
    chin: float
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    hair_style: int  # 0 bald/shaved, 1 short, 2 fringe, 3 long, 4 side parting
    hairline: float
    hair_volume: float
    eye_y: float
    eye_dx: float
    eye_w: float
    eye_h: float
    eye_tilt: float
    iris: tuple[float, float, float]
    brow_gap: float
    brow_thick: float
    brow_angle: float
    brow_len: float
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip: float
    lip_red: float
    ear: float
    base_age: float
    beard_affinity: float


def sample_identity(rng: np.random.Generator, spread: float = 1.0) -> Identity:
    def u(lo: float, hi: float) -> float:
        mid = (lo + hi) / 2
        return float(mid + spread * (rng.uniform(lo, hi) - mid))

    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] + rng.normal(0, 6, 3)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] + rng.normal(0, 8, 3)
    iris = IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))] + rng.normal(0, 8, 3)
    return Identity(
        face_w=u(0.48, 0.64), face_h=u(0.64, 0.80), jaw_w=u(0.55, 0.95), chin=u(0.85, 1.12),
        skin=tuple(np.clip(skin, 0, 255)), hair=tuple(np.clip(hair, 0, 255)),
        hair_style=int(rng.integers(5)), hairline=u(0.30, 0.62), hair_volume=u(1.02, 1.18),
        eye_y=u(-0.16, 0.02), eye_dx=u(0.17, 0.30), eye_w=u(0.075, 0.125), eye_h=u(0.35, 0.65),
        eye_tilt=u(-0.12, 0.12), iris=tuple(np.clip(iris, 0, 255)),
        brow_gap=u(0.07, 0.16), brow_thick=u(0.02, 0.055), brow_angle=u(-0.35, 0.35), brow_len=u(0.10, 0.19),
        nose_len=u(0.14, 0.30), nose_w=u(0.06, 0.13), mouth_y=u(0.28, 0.44), mouth_w=u(0.12, 0.25),
        lip=u(0.015, 0.05), lip_red=u(0.1, 0.6), ear=u(0.07, 0.13), base_age=u(0.0, 0.6),
        beard_affinity=float(rng.uniform()),
    )


@dataclass(frozen=True)
class Nuisance:
    """Everything about one photo that is not the person."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    smile: float = 0.0
    mouth_open: float = 0.0
    brow_raise: float = 0.0
    squint: float = 0.0
    light_angle: float = 0.0
    light: float = 0.0
    age: float = 0.3
    beard: float = 0.0
    moustache: float = 0.0
    stubble: float = 0.0
    gain: float = 1.0
    gamma: float = 1.0
    bg: tuple[float, ...] = (128.0,) * 12
    clutter: int = 0
    clutter_seed: int = 0
    blur: float = 0.0
    noise: float = 0.0
    noise_seed: int = 0
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0


def sample_nuisance(rng: np.random.Generator, ident: Identity, d: Difficulty) -> Nuisance:
    """A photo under the general ("in the wild, mostly frontal") distribution of the training set."""
    has_hair = rng.uniform() < d.facial_hair_p * (0.5 + ident.beard_affinity)
    beard_kind = rng.integers(3)
    return Nuisance(
        yaw=float(np.clip(rng.normal(0, d.yaw_sigma), -2.5 * d.yaw_sigma - 1e-9, 2.5 * d.yaw_sigma + 1e-9)),
        pitch=float(rng.normal(0, d.pitch_sigma)),
        roll=float(rng.normal(0, d.roll_sigma)),
        smile=float(rng.uniform(-0.3, 1.0) * d.expression),
        mouth_open=float(max(0.0, rng.uniform(-1, 1)) * d.expression),
        brow_raise=float(rng.uniform(-1, 1) * d.expression),
        squint=float(max(0.0, rng.uniform(-1, 1)) * d.expression),
        light_angle=float(rng.uniform(0, 2 * np.pi)),
        light=float(rng.uniform(0, 1) * d.illumination),
        age=float(np.clip(ident.base_age + rng.normal(0, d.age_jitter), 0, 1)),
        beard=float(rng.uniform(0.4, 1.0)) if has_hair and beard_kind != 1 else 0.0,
        moustache=float(rng.uniform(0.4, 1.0)) if has_hair and beard_kind != 0 else 0.0,
        stubble=float(rng.uniform(0, 0.5)) if rng.uniform() < d.facial_hair_p else 0.0,
        gain=float(np.exp(rng.normal(0, d.exposure_sigma))),
        gamma=float(np.exp(rng.normal(0, d.exposure_sigma / 2))),
        bg=tuple(0.6 * rng.uniform(20, 235, 12) + 0.4 * rng.uniform(40, 200)),
        clutter=int(rng.poisson(3 * d.background_clutter)),
        clutter_seed=int(rng.integers(2**31)),
        blur=float(rng.uniform(0, d.blur)),
        noise=float(d.noise),
        noise_seed=int(rng.integers(2**31)),
        dx=float(rng.normal(0, d.misalignment)),
        dy=float(rng.normal(0, d.misalignment)),
        scale=float(np.exp(rng.normal(0, d.misalignment))),
    )


def identity_vector(ident: Identity) -> np.ndarray:
    """The identity's geometry and colours as one vector, each entry scaled to about unit range.

    Used to pick similar-looking negative pairs (as CALFW/CPLFW do with real people).
    """
    geometry = [ident.face_w / 0.16, ident.face_h / 0.16, ident.jaw_w / 0.4, ident.chin / 0.27,
                ident.hairline / 0.32, ident.eye_y / 0.18, ident.eye_dx / 0.13, ident.eye_w / 0.05,
                ident.eye_h / 0.3, ident.brow_gap / 0.09, ident.brow_angle / 0.7, ident.nose_len / 0.16,
                ident.nose_w / 0.07, ident.mouth_y / 0.16, ident.mouth_w / 0.13, ident.hair_style / 2.0]
    colours = np.concatenate([np.asarray(ident.skin), np.asarray(ident.hair)]) / 60.0
    return np.concatenate([np.asarray(geometry, float), colours])
