"""AttrOP: steer perturbed vectors toward a head pose and image quality by gradient descent.

The paper's Algorithm 1 adjusts a vector so the generated image reaches a target yaw (SixDRepNet) and
quality (MagFace feature norm) while its identity feature (ArcFace) stays close to the identity vector.
The released loop repeats failed steps without limit and can run forever; here every vector gets at
least ``steps`` gradient steps and at most ``max_steps``: it is accepted at the first evaluation after
``steps`` where all its targets are met, otherwise it keeps the vector with the lowest loss seen and is
counted as unmet. The models are ordinary feature extractors from the registry.

Spec syntax (``--attrop``): comma-separated terms ``ATTR=TARGET[:SHARE]`` with ATTR ``pose`` (target
absolute yaw in degrees) or ``quality`` (target MagFace norm). A term with a share optimises that share of
each identity's images toward it (distinct images per term; shares sum to at most 1). A ``quality`` term
without a share is added to every optimised image, or applied to all images when no term has a share.
Example ``pose=60:0.4,pose=85:0.2,quality=27``: 40% of each identity's images are steered to |yaw| 60,
20% to |yaw| 85, all of those also to quality >= 27, and the other 40% are left as perturbed.

The identity pre-pass (``identity_prepass``) is what the release's generation scripts do before they
perturb: AttrOP on every identity vector itself, toward quality ``prepass_quality`` (27) with the identity
term against the vector, no pose; the updated vectors become the identity centres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, FacebenchError
from .perturbation import split_counts

ATTRIBUTES = ("pose", "quality")


@dataclass(frozen=True)
class AttrOPTerm:
    attribute: str
    target: float
    share: float | None = None

    def __str__(self) -> str:
        return f"{self.attribute}={self.target:g}" + (f":{self.share:g}" if self.share is not None else "")


def parse_attrop(spec: str) -> list[AttrOPTerm]:
    """``"pose=60:0.4,pose=85:0.2,quality=27"`` -> terms; malformed specs name the offending term."""
    terms: list[AttrOPTerm] = []
    for raw in (part.strip() for part in spec.split(",")):
        if not raw:
            continue
        attr, sep, rest = raw.partition("=")
        attr = attr.strip()
        if not sep or attr not in ATTRIBUTES:
            raise ConfigError(f"--attrop term '{raw}': expected ATTR=TARGET[:SHARE] with ATTR in {', '.join(ATTRIBUTES)}")
        target_text, _, share_text = rest.partition(":")
        try:
            target = float(target_text)
            share = float(share_text) if share_text else None
        except ValueError:
            raise ConfigError(f"--attrop term '{raw}': target and share must be numbers") from None
        if not math.isfinite(target) or (attr == "pose" and not 0 <= target <= 90):
            raise ConfigError(f"--attrop term '{raw}': pose targets are absolute yaw angles in [0, 90] degrees")
        if share is not None and not 0 < share <= 1:
            raise ConfigError(f"--attrop term '{raw}': share must be in (0, 1]")
        if attr == "pose" and share is None:
            raise ConfigError(f"--attrop term '{raw}': a pose term needs a share of images, e.g. pose={target:g}:0.4")
        terms.append(AttrOPTerm(attr, target, share))
    if not terms:
        raise ConfigError("--attrop: no terms given")
    total = sum(t.share for t in terms if t.share is not None)
    if total > 1 + 1e-9:
        raise ConfigError(f"--attrop: shares add up to {total:g}, more than all images")
    if sum(1 for t in terms if t.attribute == "quality" and t.share is None) > 1:
        raise ConfigError("--attrop: more than one quality term without a share")
    return terms


@dataclass
class AttrOPConfig:
    """AttrOP settings; defaults follow the release (Adam lr 0.1, identity weight 100, tolerances 0.3/1/5)."""

    spec: str = ""
    steps: int = 5
    max_steps: int = 30
    lr: float = 0.1
    identity_weight: float = 100.0
    identity_tol: float = 0.3
    quality_tol: float = 1.0
    pose_tol: float = 5.0
    batch_size: int = 32
    identity_extractor: str = "arcface-r100"
    identity_weights: str = ""
    quality_extractor: str = "magface-r100"
    quality_weights: str = ""
    pose_extractor: str = "sixdrepnet"
    pose_weights: str = ""
    identity_prepass: bool = False  # the release's AttrOP on each identity vector before perturbation
    prepass_quality: float = 27.0
    prepass_steps: int = 1          # the release's num_iter
    prepass_max_steps: int = 10     # the release repeats failed steps without limit

    def __post_init__(self) -> None:
        for low, high, what in ((self.steps, self.max_steps, ""), (self.prepass_steps, self.prepass_max_steps, "prepass_")):
            if low < 0 or high < max(low, 1):
                raise ConfigError(f"attrop: need 0 <= {what}steps <= {what}max_steps and {what}max_steps >= 1, "
                                  f"got {low}, {high}")
        if self.lr <= 0 or self.batch_size < 1:
            raise ConfigError("attrop: lr must be > 0 and batch_size >= 1")

    def prepass_config(self) -> AttrOPConfig:
        """The same optimiser and tolerances with the pre-pass's own step counts."""
        from dataclasses import replace

        return replace(self, spec=f"quality={self.prepass_quality:g}", steps=self.prepass_steps,
                       max_steps=self.prepass_max_steps)

    def extractor_weights(self) -> dict[str, tuple[str, str]]:
        """role -> (extractor name, weights) of the models the configured passes need."""
        needs = {t.attribute for t in parse_attrop(self.spec)} if self.spec else set()
        if self.identity_prepass:
            needs.add("quality")
        roles = {"identity": (self.identity_extractor, self.identity_weights)}
        if "quality" in needs:
            roles["quality"] = (self.quality_extractor, self.quality_weights)
        if "pose" in needs:
            roles["pose"] = (self.pose_extractor, self.pose_weights)
        return roles


@dataclass
class Assignment:
    """Per-image targets (NaN where the attribute is not optimised) and which images are optimised."""

    pose: np.ndarray
    quality: np.ndarray

    @property
    def selected(self) -> np.ndarray:
        return ~(np.isnan(self.pose) & np.isnan(self.quality))


def assign_targets(terms: list[AttrOPTerm], n_ids: int, per_id: int, rng: np.random.Generator) -> Assignment:
    """Which images of each identity get which targets (random slots, shares rounded per identity)."""
    shared = [t for t in terms if t.share is not None]
    global_q = next((t.target for t in terms if t.attribute == "quality" and t.share is None), math.nan)
    pose = np.full(n_ids * per_id, np.nan)
    quality = np.full(n_ids * per_id, np.nan)
    if not shared:
        quality[:] = global_q
        return Assignment(pose, quality)
    rest = 1.0 - sum(t.share for t in shared)
    counts = split_counts(per_id, [t.share for t in shared] + [max(rest, 0.0)])
    for i in range(n_ids):
        slots = i * per_id + rng.permutation(per_id)
        start = 0
        for term, count in zip(shared, counts):
            chosen = slots[start:start + count]
            start += count
            if term.attribute == "pose":
                pose[chosen] = term.target
                quality[chosen] = global_q
            else:
                quality[chosen] = term.target
    return Assignment(pose, quality)


def _differentiable_images(generator: Any, vectors):
    import torch

    fn = getattr(generator, "forward_images", None)
    with torch.enable_grad():
        images = fn(vectors) if callable(fn) else generator.generate(vectors)
    if not images.requires_grad:
        raise FacebenchError(
            f"generator {type(generator).__name__} returns images without gradients; AttrOP needs "
            "generate() to be differentiable or a forward_images(vectors) method"
        )
    return images.clamp(-1, 1)


def _freeze(model: Any) -> list:
    """Stop autograd from tracking the weights of a generator or extractor (only the vectors are
    optimised): otherwise every backward step also computes a gradient for every weight. Returns the
    parameters it froze, so a caller that does not own the model can unfreeze them."""
    frozen = []
    for holder in (model, getattr(model, "model", None)):
        if callable(getattr(holder, "parameters", None)):
            for param in holder.parameters():
                if param.requires_grad:
                    param.requires_grad_(False)
                    frozen.append(param)
    return frozen


def yaw_index(model: Any) -> int:
    outputs = tuple(getattr(model, "outputs", ("pitch", "yaw", "roll")))
    if "yaw" not in outputs:
        raise FacebenchError(f"pose extractor {type(model).__name__} has no 'yaw' output (outputs: {outputs})")
    return outputs.index("yaw")


class AttrOP:
    """Bounded AttrOP over batches of vectors with the identity, quality and pose models given."""

    def __init__(self, terms: list[AttrOPTerm], config: AttrOPConfig, *, identity: Any,
                 quality: Any = None, pose: Any = None):
        self.terms = terms
        self.config = config
        self.identity = identity
        self.quality = quality
        self.pose = pose
        if any(t.attribute == "pose" for t in terms) and pose is None:
            raise FacebenchError("--attrop has a pose term but no pose extractor was given")
        if any(t.attribute == "quality" for t in terms) and quality is None:
            raise FacebenchError("--attrop has a quality term but no quality extractor was given")

    def losses(self, images, id_vectors, pose_t, quality_t):
        """Per-image (identity, quality, pose) losses; quality/pose are 0 where their target is NaN."""
        import torch

        feat = self.identity.forward_tensor(images)
        id_loss = 1 - torch.nn.functional.cosine_similarity(feat, id_vectors, dim=1)
        zero = torch.zeros_like(id_loss)
        q_loss = zero
        if self.quality is not None and not torch.isnan(quality_t).all():
            norm = self.quality.forward_tensor(images).norm(dim=1)
            q_loss = torch.where(torch.isnan(quality_t), zero, torch.relu(quality_t.nan_to_num(0) - norm))
        p_loss = zero
        if self.pose is not None and not torch.isnan(pose_t).all():
            yaw = self.pose.forward_tensor(images)[:, yaw_index(self.pose)].clamp(-90, 90)
            p_loss = torch.where(torch.isnan(pose_t), zero, (pose_t.nan_to_num(0) - yaw.abs()).abs())
        return id_loss, q_loss, p_loss

    def optimize(self, generator: Any, id_vectors: np.ndarray, vectors: np.ndarray, pose_t: np.ndarray,
                 quality_t: np.ndarray, *, device: str = "cpu") -> tuple[np.ndarray, dict[str, Any]]:
        """Optimise one batch; returns the adjusted vectors and per-image met/steps bookkeeping."""
        import torch

        cfg = self.config
        v = torch.tensor(vectors, dtype=torch.float32, device=device, requires_grad=True)
        ids = torch.as_tensor(id_vectors, dtype=torch.float32, device=device)
        pt = torch.as_tensor(pose_t, dtype=torch.float32, device=device)
        qt = torch.as_tensor(quality_t, dtype=torch.float32, device=device)
        opt = torch.optim.Adam([v], lr=cfg.lr)
        n = len(vectors)
        result = v.detach().clone()
        best_loss = torch.full((n,), math.inf, device=device)
        accepted = torch.zeros(n, dtype=torch.bool, device=device)
        steps_used = torch.zeros(n, dtype=torch.int64, device=device)
        for step in range(cfg.max_steps + 1):
            # Only vectors still open are generated and scored: accepted ones are final.
            rows = torch.nonzero(~accepted).squeeze(1)
            images = _differentiable_images(generator, v[rows])
            id_l, q_l, p_l = self.losses(images, ids[rows], pt[rows], qt[rows])
            total = cfg.identity_weight * id_l + q_l + p_l
            with torch.no_grad():
                ok = (id_l <= cfg.identity_tol) & (q_l <= cfg.quality_tol) & (p_l <= cfg.pose_tol)
                current = v.detach()[rows]
                better = total < best_loss[rows]
                result[rows[better]] = current[better]
                best_loss[rows[better]] = total[better]
                newly = ok & (step >= cfg.steps)
                result[rows[newly]] = current[newly]
                accepted[rows[newly]] = True
                steps_used[rows] = step
            if bool(accepted.all()) or step == cfg.max_steps:
                break
            opt.zero_grad()
            total[~newly].sum().backward()
            opt.step()
        return result.cpu().numpy(), {
            "met": accepted.cpu().numpy(),
            "steps": steps_used.cpu().numpy(),
        }

    def apply(self, generator: Any, identities: np.ndarray, vectors: np.ndarray, per_id: int,
              rng: np.random.Generator, *, device: str = "cpu") -> tuple[np.ndarray, dict[str, Any]]:
        """Optimise the images the spec selects (identity-major ``vectors``); returns vectors and counts."""
        assign = assign_targets(self.terms, len(identities), per_id, rng)
        chosen = np.flatnonzero(assign.selected)
        out = vectors.copy()
        met = np.zeros(0, dtype=bool)
        steps = np.zeros(0, dtype=np.int64)
        id_rows = np.repeat(np.arange(len(identities)), per_id)
        frozen = _freeze(generator)
        try:
            for start in range(0, len(chosen), self.config.batch_size):
                idx = chosen[start:start + self.config.batch_size]
                new, info = self.optimize(generator, identities[id_rows[idx]], vectors[idx], assign.pose[idx],
                                          assign.quality[idx], device=device)
                out[idx] = new
                met = np.concatenate([met, info["met"]])
                steps = np.concatenate([steps, info["steps"]])
        finally:
            for param in frozen:
                param.requires_grad_(True)
        return out, {
            "images": int(len(chosen)),
            "met": int(met.sum()),
            "unmet": int((~met).sum()),
            "mean_steps": float(steps.mean()) if len(steps) else 0.0,
            "max_steps": int(steps.max()) if len(steps) else 0,
        }


def build_attrop(config: AttrOPConfig, *, device: str = "cpu") -> tuple[AttrOP | None, AttrOP | None]:
    """(AttrOP on the perturbed vectors, identity pre-pass), each None when not configured, with their
    models built once from the feature-extractor registry, as ``config`` names them."""
    from ..pluginmanager import registry

    if not config.spec and not config.identity_prepass:
        return None, None
    if not config.identity_extractor:
        raise ConfigError("AttrOP needs an identity model: --attrop-identity NAME (a feature extractor)")
    extractors = registry("feature_extractor")
    models = {}
    for role, (name, weights) in config.extractor_weights().items():
        models[role] = extractors.create(name, weights=weights or None, device=device)
        _freeze(models[role])  # for good: the extractor is AttrOP's own
    attrop = AttrOP(parse_attrop(config.spec), config, **models) if config.spec else None
    prepass = None
    if config.identity_prepass:
        pre = config.prepass_config()
        prepass = AttrOP(parse_attrop(pre.spec), pre, identity=models["identity"], quality=models["quality"])
    return attrop, prepass
