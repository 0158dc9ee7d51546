"""``facebench generate`` as one call: a request and a config in, a finished dataset (and its summary) out.

The steps, each a check that fails before anything is written or a stage that resumes:

1. resolve the device and join the ``torchrun`` group (:mod:`facebench.runtime`);
2. build the generator from the registry with its weights (a trained generator without weights is
   refused unless the request says ``untrained``) and the format writer; read or draw the landmark images
   of a pose-conditioned generator (``--pose-landmarks``, :mod:`facebench.generation.pose`);
3. check the identity vectors' embedding space against the generator's (:mod:`.spaces`), load or sample
   them and check their scale against the generator's (:func:`identity_scale`);
4. build AttrOP and the identity pre-pass with their models;
5. the rerun contract (:mod:`facebench.rerun`, the job's parameters recorded in ``provenance.json``):
   refuse a run with other parameters (``--overwrite`` replaces it), confirm a finished run whose
   dataset and card still have the sha256 the record holds, or else generate the missing shards and
   assemble.

A run is finished when its record says so, with the sha256 of ``dataset.json`` (written last) and of the
dataset. A card whose record is not finished (a kill between the two), or a finished run whose files
changed, is judged by the card itself: when it is readable and describes the dataset on disk (see
:meth:`~facebench.generation.sharded.GenerationJob.card_problem`) only the record is written. When it
does not (a card that is not
UTF-8 JSON or has fields of the wrong type, names a missing set, or whose counts or sha256 differ from the
set on disk; manifests that do not record every shard), the rerun says what is wrong in one line and

* re-assembles the dataset from the staged shards when every one is still there (``keep_shards``, or a
  run killed before removing them): assembly is deterministic, so this gives the bytes the run made; or
* refuses, naming the file, when the shards are gone: regenerating them could take hours of accelerator
  time and replaces the set on disk, so that is the user's decision (delete the card and the set and
  rerun, or choose another ``--out``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import config_to_dict
from ..console import console, warn
from ..errors import DataError, FacebenchError
from .attrop import AttrOPConfig, build_attrop
from .pose import pose_landmarks
from .sharded import (
    IDS_FILE,
    MANIFEST,
    GenerationConfig,
    GenerationJob,
    assemble,
    identity_scale,
    load_identity_vectors,
    run_shards,
    save_ids,
)
from .spaces import SPACE_OPTIONS, check_space


@dataclass
class GenerateConfig:
    """The ``facebench generate`` config file: ``[generation]`` and ``[attrop]`` tables."""

    generation: GenerationConfig = field(default_factory=GenerationConfig)
    attrop: AttrOPConfig = field(default_factory=AttrOPConfig)


@dataclass
class GenerateRequest:
    """What to generate from and where: the command line's choices that are not config keys."""

    out: Path
    generator: str = "vec2face"
    weights: str | None = None  # a file, or a model directory for generators that declare weights_dir
    untrained: bool = False
    generator_options: tuple[str, ...] = ()  # KEY=VALUE keyword options of the generator
    ids: str | None = None  # an identity-vector file, or
    n_ids: int | None = None  # this many sampled from
    stats: str | None = None  # PCA statistics or
    features: str | None = None  # real identity features, or
    ref_images: str | None = None  # a folder of photos of the identities, found by
    detector: str | None = None  # this face detector
    detector_weights: str | None = None
    tau: float = 0.3
    device: str = "auto"
    pose_landmarks: str | None = None  # landmark images for a pose-conditioned generator (Vec2Face+)
    overwrite: bool = False  # replace an --out made with other parameters (facebench.rerun)


def generate_config(generator: str, data: dict[str, Any], overrides: Any = ()) -> GenerateConfig:
    """The config of one run: the generator's own ``generation_defaults`` (a spec extra; arc2face: no
    vector noise), under the config file's tables, under ``--set`` overrides."""
    from ..config import build_config, table, with_defaults
    from ..pluginmanager import registry

    defaults = registry("generator").get(generator).extras.get("generation_defaults", {})
    data = dict(data)
    data["generation"] = with_defaults(defaults, table(data, "generation"))
    return build_config(GenerateConfig, data, overrides)


@dataclass
class GenerateOutcome:
    """What a finished (or already complete) run reports back."""

    job: GenerationJob
    summary: dict[str, Any] | None  # dataset.json; None on ranks other than 0
    generated: list[int]  # shards generated by this process in this call
    already_complete: bool = False
    median_norm: float = float("nan")  # of the identity vectors as generated (after any rescaling)


#: ``--generator-option`` keys that choose the feature extractor of ``--ref-images`` (taken out of the
#: options before the generator is built, recorded in ``ids_source``).
REFERENCE_OPTIONS = ("reference_extractor", "reference_weights")


def _check_sources(request: GenerateRequest, reference_options: dict[str, Any]) -> None:
    """Exactly one source of identity vectors, and the options of the one chosen only."""
    if sum(x is not None for x in (request.ids, request.n_ids, request.ref_images)) != 1:
        raise FacebenchError("give exactly one of --ids FILE, --n-ids N or --ref-images DIR")
    if request.ref_images is None:
        given = [o for o, v in (("--detector", request.detector), ("--detector-weights", request.detector_weights))
                 if v] + [f"--generator-option {k}" for k in reference_options]
        if given:
            raise FacebenchError(f"{', '.join(given)} apply to --ref-images (identity vectors from photos)")
    elif not request.detector:
        raise FacebenchError("--ref-images needs --detector NAME to find the faces (facebench plugins --kind "
                             "detector lists them)")


def _identities(request: GenerateRequest, seed: int, feature_dim: int, device: str) -> tuple[np.ndarray, dict, str]:
    """(vectors, ids_source record, source path) from ``--ids`` or sampled from statistics or features."""
    from ..provenance import sha256_file

    if request.ids is not None:
        ids = load_identity_vectors(request.ids, feature_dim)
        return ids, {"file": Path(request.ids).name, "sha256": sha256_file(request.ids)}, request.ids
    from .sampling import PCAStats, load_feature_matrix, sample_identities

    if (request.stats is None) == (request.features is None):
        raise FacebenchError("--n-ids needs exactly one of --stats (PCA statistics) or --features")
    source = request.stats or request.features
    record = {"sample": {"n": request.n_ids, "tau": request.tau, "seed": seed, "from": Path(source).name,
                         "sha256": sha256_file(source)}}
    saved = request.out / IDS_FILE
    if _resumes_ids(request.out, record):
        return load_identity_vectors(saved, feature_dim), record, source  # resume: the record checks them
    pca = PCAStats.load(request.stats) if request.stats else PCAStats.fit(load_feature_matrix(request.features))
    result = sample_identities(pca, request.n_ids, tau=request.tau, seed=seed, device=device)
    console.print(f"sampled {request.n_ids} identities at tau={request.tau}: rejection rate "
                  f"{100 * result.rejection_rate:.2f}%")
    if result.vectors.shape[1] != feature_dim:
        raise FacebenchError(f"{source}: statistics have {result.vectors.shape[1]} dimensions, "
                             f"the generator expects {feature_dim}")
    return result.vectors, record, source


def _resumes_ids(out: Path, ids_source: dict[str, Any]) -> bool:
    """Whether ``out`` is an unfinished run from the same identity source whose ``ids.npy`` a resume reads
    back instead of drawing (or embedding) the vectors again: its rerun record (:mod:`facebench.rerun`)
    names the same ``ids_source`` and, through ``ids_sha256``, checks the vectors read."""
    from ..rerun import KEY, normalised
    from ..runs import PROVENANCE
    from ..safe_load import read_json

    if not (out / IDS_FILE).is_file() or not (out / PROVENANCE).is_file():
        return False
    try:
        entry = read_json(out / PROVENANCE, what="run record").get(KEY)
        return isinstance(entry, dict) and isinstance(entry.get("params"), dict) and \
            entry["params"].get("ids_source") == normalised(ids_source)
    except (FacebenchError, OSError):
        return False


def _reference_space(spec: Any, generator: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Which feature extractor (and weights) embeds ``--ref-images`` photos for this generator, and whether
    it takes raw features or unit ones: what the generator declares (spec extra ``reference_extractor``,
    refined by the generator object's own ``reference_extractor``, e.g. the extractor a Vec2Face file
    records), the extractor overridden by ``--generator-option reference_extractor=NAME``; the weights
    from ``reference_weights=FILE``, else the extractor's declared file in the weights directory."""
    from ..pluginmanager import registry
    from ..provenance import sha256_path
    from ..weights import resolve_weights, weights_dir

    declared = spec.extras.get("reference_extractor")
    if not isinstance(declared, dict):
        raise FacebenchError(f"generator '{spec.name}' declares no reference extractor (the feature space of its "
                             "identity vectors: spec extra reference_extractor), so --ref-images cannot embed "
                             "photos for it; embed them yourself (facebench embed --align) and pass the centres "
                             "with --ids")
    space = {**declared, **(getattr(generator, "reference_extractor", None) or {})}
    name = options.get("reference_extractor") or space.get("extractor")
    if not name:
        raise FacebenchError(f"generator '{spec.name}' does not say which feature extractor made its identity "
                             f"vectors ({space.get('source', 'nothing recorded')}): pass --generator-option "
                             "reference_extractor=NAME (and reference_weights=FILE)")
    extractor_spec = registry("feature_extractor").get(str(name))
    given = options.get("reference_weights")
    default = extractor_spec.extras.get("weights")
    if given:
        weights = resolve_weights(str(given), allow_dir=True)  # an FR run directory for fr-run
    elif default and (weights_dir() / default).is_file():
        weights = weights_dir() / default
    else:
        where = (f"its file {default} is not in the weights directory {weights_dir()}" if default
                 else "it has no default file")
        raise FacebenchError(f"generator '{spec.name}' embeds reference photos with feature extractor '{name}', "
                             f"which needs weights ({where}): pass --generator-option reference_weights=FILE")
    features = space.get("features", "raw")
    if features not in ("raw", "unit"):
        raise FacebenchError(f"generator '{spec.name}': reference_extractor features must be 'raw' or 'unit', "
                             f"got {features!r}")
    return {"name": str(name), "weights": weights, "features": features,
            "record": {"name": str(name), "weights": weights.name, "sha256": sha256_path(weights),
                       "features": features}}


def _reference_identities(request: GenerateRequest, folder: Any, space: dict[str, Any], feature_dim: int,
                          device: str, ctx: Any) -> tuple[np.ndarray, dict, str]:
    """(vectors, ids_source record, source) for ``--ref-images``: one vector per identity of the folder.

    The record holds only what went in (the photos' hashes per identity, the detector and extractor with
    their weights' sha256), so a resumed run (whose vectors are read back from ``ids.npy``, not computed
    again) is checked against the same record. The vectors are computed on the main rank and sent to the
    others: every rank generates from the same bytes."""
    from ..data.photos import build_detector, resolve_detector
    from ..evaluation.features import reference_vectors
    from ..pluginmanager import registry
    from ..runtime import broadcast_object

    detector_record = resolve_detector(request.detector, request.detector_weights)[1]
    record = {"ref_images": {**folder.record(), "detector": detector_record, "extractor": space["record"]}}
    source = request.ref_images
    saved = request.out / IDS_FILE
    if _resumes_ids(request.out, record):
        return load_identity_vectors(saved, feature_dim), record, source  # resume: the record checks them
    result: Any = None
    if ctx.is_main:
        try:
            extractor = registry("feature_extractor").create(space["name"], weights=str(space["weights"]),
                                                             device=device)
            detector, _ = build_detector(request.detector, request.detector_weights, device)
            vectors, faces = reference_vectors(folder, extractor=extractor, extractor_name=space["name"],
                                               detector=detector, detector_name=request.detector,
                                               raw=space["features"] == "raw", device=device)
            del extractor, detector
            result = (vectors, sum(f.faces > 1 for f in faces), None)
        except FacebenchError as exc:
            result = (None, 0, str(exc))
            if not ctx.distributed:
                raise
    vectors, several, problem = broadcast_object(ctx, result)
    if problem is not None:
        raise FacebenchError(problem)
    if vectors.shape[1] != feature_dim:
        raise FacebenchError(f"{source}: feature extractor '{space['name']}' gives {vectors.shape[1]}-d features, "
                             f"the generator expects {feature_dim}")
    if not np.isfinite(vectors).all() or (np.linalg.norm(vectors, axis=1) == 0).any():
        raise FacebenchError(f"{source}: feature extractor '{space['name']}' gave an identity vector that is zero "
                             "or not finite")
    kind = "raw" if space["features"] == "raw" else "unit"
    note = f"; {several} photos showed several faces (the largest near the centre was used)" if several else ""
    console.print(f"{len(vectors)} identities from {len(folder)} photos ({folder.layout}): {kind} features of "
                  f"{space['name']}{note}")
    return vectors.astype(np.float32), record, source


def _attrop_record(config: AttrOPConfig, untrained: bool) -> dict[str, Any] | None:
    """The AttrOP settings for ``dataset.json`` with each model's weights hashed; a model that needs
    weights and has none is refused unless ``untrained``."""
    from ..pluginmanager import registry
    from ..provenance import sha256_file, sha256_path
    from ..weights import resolve_weights

    if not (config.spec or config.identity_prepass):
        return None
    extractors = registry("feature_extractor")
    record = {k: v for k, v in config_to_dict(config).items() if not k.endswith("_weights")}
    untrained_roles = []
    for role, (name, path) in config.extractor_weights().items():
        # an extractor with a default file finds it itself (or names the missing file)
        if not path and extractors.get(name).extras.get("weights_required"):
            if not untrained:
                raise FacebenchError(f"AttrOP {role} extractor '{name}' has no weights: pass "
                                     f"--attrop-{role}-weights FILE, or --untrained to use random weights")
            untrained_roles.append(role)
        elif path:  # an FR run directory (extractor fr-run) is hashed as a whole
            digest = sha256_path(path) if Path(path).is_dir() else sha256_file(resolve_weights(path))
            record[f"{role}_weights"] = {"file": Path(path).name, "sha256": digest}
    if untrained_roles:
        record["untrained"] = untrained_roles
    return record


def _reassemble_or_refuse(job: GenerationJob, problem: DataError, *, main: bool) -> None:
    """A finished-looking run whose card does not check out: re-assembled from its staged shards when
    they are all there (the card is removed first, so an interrupted re-assembly is never taken for a
    finished one), else refused naming the file (see the module docstring)."""
    card = job.card_path
    if card.is_dir() and not card.is_symlink():
        raise DataError(problem.path, f"{problem.problem}; remove the folder {card} (the run writes its dataset "
                                      "card there)", problem.where)
    staged = len(job.finished_shards() & set(range(job.num_shards)))
    if staged < job.num_shards:
        left = f"only {staged} of {job.num_shards} staged shards are left" if staged else "the staged shards are gone"
        raise DataError(problem.path, f"{problem.problem}; {left}, so the dataset cannot be re-assembled: delete "
                                      f"{card.name} and {job.dataset_path.name} to generate it again, or choose "
                                      "another --out", problem.where)
    if main:
        warn(f"{problem}; re-assembling the dataset from the staged shards")
        card.unlink(missing_ok=True)


def run_generate(request: GenerateRequest, config: GenerateConfig, *, progress: Any = None) -> GenerateOutcome:
    """Generate (or resume, or confirm) the dataset the request and config describe."""
    from ..config import parse_override
    from ..pluginmanager import registry
    from ..provenance import sha256_path
    from ..rerun import FINISHED, Rerun
    from ..runs import DATASET_CARD, Run, discard_on_failure
    from ..runtime import choose_device, env_context, init_distributed, wait_for_all
    from ..safe_load import read_json
    from ..weights import component_weights, needs_weights

    gcfg = config.generation
    device = choose_device(request.device, env_context().local_rank)
    ctx = init_distributed(device)  # this rank's GPU (not everyone on GPU 0), gloo with --device cpu
    device = str(device)

    format_obj = registry("format").get(gcfg.format).create()
    if getattr(format_obj, "role", "train") != "train":
        raise FacebenchError(f"format '{gcfg.format}' writes {format_obj.role} sets, not labelled training sets")
    spec = registry("generator").get(request.generator)
    weights = component_weights(spec, request.weights, untrained=request.untrained,
                                allow_dir=bool(spec.extras.get("weights_dir")))
    options = {".".join(keys): value for keys, value in map(parse_override, request.generator_options)}
    reference_options = {k: options.pop(k) for k in REFERENCE_OPTIONS if k in options}
    space_options = {k: options.pop(k) for k in SPACE_OPTIONS if k in options}
    _check_sources(request, reference_options)
    folder = None
    if request.ref_images is not None:  # the folder and the detector are checked before the generator loads
        from ..data.photos import PhotoFolder, resolve_detector

        if not isinstance(spec.extras.get("reference_extractor"), dict) and not spec.extras.get("identity_images"):
            _reference_space(spec, None, reference_options)  # refuses, naming the missing declaration
        folder = PhotoFolder.scan(request.ref_images)
        resolve_detector(request.detector, request.detector_weights)
    # vectors of another embedding space than the generator's are refused before it loads (spaces.py)
    embedding = check_space(spec, request, space_options, reference_options.get("reference_extractor"))
    generator = spec.create(weights=weights, device=device, **options)
    feature_dim = int(getattr(generator, "feature_dim", 512))
    pose = pose_landmarks(generator, request.generator, request.pose_landmarks, attrop=config.attrop)

    space = None
    if callable(getattr(generator, "identity_codes", None)):  # image-conditioned (DCFace): identities of its own
        identities, ids_source, source = generator.identity_codes(request, folder, seed=gcfg.seed, device=device)
    elif folder is not None:
        space = _reference_space(spec, generator, reference_options)
        identities, ids_source, source = _reference_identities(request, folder, space, feature_dim, device, ctx)
    else:
        identities, ids_source, source = _identities(request, gcfg.seed, feature_dim, device)
    if embedding is not None:
        identities = embedding.apply(identities)  # the space map asked for (--ids only), if any
    # Before any shard: identity vectors at the scale the generator was trained on, or a clear refusal.
    factor, scale_info = identity_scale(identities, getattr(generator, "input_scale", None),
                                        rescale=gcfg.rescale_ids, source=source)
    if factor != 1.0:
        console.print(f"rescaling identity vectors by {factor:.4g} (median norm {scale_info['ids_median_norm']:.4g} "
                      f"-> {scale_info['generator']['median_norm']:.4g})")
    attrop_info = _attrop_record(config.attrop, request.untrained)
    attrop, prepass = build_attrop(config.attrop, device=device)
    if attrop is not None:
        attrop_info["terms"] = [str(t) for t in attrop.terms]
    generator_info = {"weights": weights.name if weights else None,
                      "weights_sha256": sha256_path(weights) if weights else None,  # a model directory as a whole
                      "image_size": getattr(generator, "image_size", None), "feature_dim": feature_dim,
                      **({"options": options} if options else {}),
                      **({"embedding_space": embedding.record} if embedding is not None else {}),
                      **getattr(generator, "info", {})}  # what the generator says of itself (sampler, untrained)
    if weights is None and needs_weights(spec):
        generator_info["untrained"] = True
    job = GenerationJob(out=request.out, config=gcfg, generator_name=request.generator,
                        generator_info=generator_info, identities=identities, ids_source=ids_source,
                        attrop_info=attrop_info, input_scale=factor, scale_info=scale_info, pose=pose)
    median = float(np.median(np.linalg.norm(identities, axis=1))) * factor
    job.refuse_links()
    # The rerun contract (facebench.rerun): every rank reads the record; the main rank replaces the run
    # (--overwrite) only after every rank has read it.
    rerun = Rerun(request.out, command="generate", params=job.params(), what="dataset",
                  outputs=[DATASET_CARD, *([MANIFEST] if ctx.world_size == 1 else []), job.dataset_path.name],
                  overwrite=request.overwrite)  # ranks keep manifest-rankN.json files, not one manifest
    state = rerun.check(discard=False)
    wait_for_all(ctx)
    if state == FINISHED:
        return GenerateOutcome(job, None, [], already_complete=True, median_norm=median)
    if ctx.is_main:
        rerun.prepare()
    wait_for_all(ctx)
    finish_only = False
    if job.is_finished():  # a card whose record is unfinished (a kill) or whose files changed since
        problem = job.card_problem(format_obj)
        if problem is None:
            finish_only = True  # the dataset checks out: only the record is left to write
        else:
            _reassemble_or_refuse(job, problem, main=ctx.is_main)
    run = None
    with discard_on_failure(request.out):  # failing before its first shard, it leaves no run folder
        if ctx.is_main:
            inputs = {"weights": weights} if weights else {}
            if request.ref_images is not None:
                inputs["ref_images"] = request.ref_images
                if space is not None:
                    inputs["reference_weights"] = space["weights"]
            elif request.ids or source:
                inputs.update({"ids": request.ids} if request.ids else {"sampling_source": source})
            if pose is not None and pose.source.get("file"):
                inputs["pose_landmarks"] = request.pose_landmarks
            request.out.mkdir(parents=True, exist_ok=True)  # only now: every check above has passed
            run = Run.start(request.out, config=config, seed=gcfg.seed, device=device, inputs=inputs, rerun=rerun)
            if finish_only:
                rerun.finish(run)
            else:
                save_ids(request.out, identities)
        if finish_only:
            return GenerateOutcome(job, read_json(job.card_path, what="dataset card") if ctx.is_main else None, [],
                                   median_norm=median)
        if spec.extras.get("deterministic") is False and job.finished_shards():
            console.print(f"[yellow]note:[/] generator '{request.generator}' is marked non-deterministic by its "
                          "plugin: shards generated after this resume may differ from an uninterrupted run's")
        generated = run_shards(job, generator, attrop=attrop, prepass=prepass, device=device, rank=ctx.rank,
                               world=ctx.world_size, progress=progress)
    # Ranks finish unevenly (AttrOP converges at its own pace per shard): wait on the gloo wait group
    # (FACEBENCH_WAIT_TIMEOUT), not an NCCL barrier whose watchdog would kill the early ranks.
    wait_for_all(ctx)
    summary = None
    if ctx.is_main:
        summary = assemble(job, format_obj, progress=progress)
        rerun.finish(run)
    return GenerateOutcome(job, summary, generated, median_norm=median)
