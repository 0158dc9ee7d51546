"""Commands that make synthetic datasets: ``sample-ids`` (identity vectors) and ``generate`` (images)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from ..console import console, make_progress

_SAMPLE_EPILOG = """Example:

  facebench sample-ids --features webface_centres.npy --n 10000 --tau 0.3 --out ids.npy --save-stats pca.npz

  facebench sample-ids --stats pca.npz --n 300000 --out ids300k.npy
"""


@click.command("sample-ids", epilog=_SAMPLE_EPILOG)
@click.option("--features", type=click.Path(dir_okay=False), help="Real identity features (N, D) .npy to fit PCA on.")
@click.option("--stats", type=click.Path(dir_okay=False), help="Saved PCA statistics (.npz from --save-stats).")
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="Number of identity vectors to keep.")
@click.option("--tau", type=float, default=0.3, show_default=True,
              help="Keep a vector only if its cosine to every kept vector is at most tau.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Output .npy of (n, D) float32 vectors.")
@click.option("--save-stats", type=click.Path(dir_okay=False), help="Also save the fitted PCA statistics here.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=4096, show_default=True,
              help="Candidates drawn and checked per block.")
@click.option("--max-draw-factor", type=click.FloatRange(min=1), default=20.0, show_default=True,
              help="Give up after drawing this many candidates per requested vector.")
@click.option("--device", default="cpu", show_default=True, help="Device for the similarity products (cpu, cuda).")
def sample_ids(features, stats, n, tau, out, save_stats, seed, batch, max_draw_factor, device):
    """Sample identity vectors: PCA statistics of real features, exact rejection above tau."""
    from .. import atomic
    from ..errors import FacebenchError
    from ..idsampling import PCAStats, load_feature_matrix, sample_identities
    from ..provenance import provenance

    if (features is None) == (stats is None):
        raise FacebenchError("give exactly one of --features (real identity features) or --stats (saved PCA statistics)")
    if features is not None:
        pca = PCAStats.fit(load_feature_matrix(features, what="identity features"))
        console.print(f"fitted PCA on {pca.n_samples} identity features of dimension {pca.dim}")
    else:
        pca = PCAStats.load(stats)
    if save_stats:
        pca.save(save_stats)
        console.print(f"saved PCA statistics to {save_stats}")
    start = time.perf_counter()
    with make_progress() as progress:
        task = progress.add_task("sampling identities", total=n)
        result = sample_identities(pca, n, tau=tau, seed=seed, batch=batch, max_draw_factor=max_draw_factor,
                                   device=device, progress=lambda k: progress.update(task, completed=k))
    seconds = time.perf_counter() - start
    import numpy as np

    with atomic.atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, result.vectors, allow_pickle=False)
    inputs = {"features": features} if features else {"stats": stats}
    record = provenance(seed=seed, device=device, inputs=inputs, extra={
        "sampling": {"n": n, "tau": tau, "drawn": result.drawn, "rejected": result.rejected,
                     "rejection_rate": result.rejection_rate, "batch": batch, "seconds": round(seconds, 3)}})
    atomic.write_json(Path(str(out) + ".json"), record)
    click.echo(f"kept {n} identity vectors of {result.drawn} drawn at tau={tau}: "
               f"rejection rate {100 * result.rejection_rate:.2f}% ({result.rejected} rejected) in {seconds:.1f}s")
    click.echo(f"wrote {out}")


_GENERATE_EPILOG = """Example:

  facebench generate --generator vec2face --weights vec2face_generator.pth --ids ids.npy \\
      --images-per-id 50 --out runs/hsface10k --format folder

  facebench generate --generator vec2face --weights vec2face_generator.pth --n-ids 1000 --stats pca.npz \\
      --out runs/pose --attrop pose=60:0.4,pose=85:0.2,quality=27 \\
      --attrop-identity-weights arcface-r100-glint360k.pth --attrop-quality-weights magface-r100-glint360k.pth \\
      --attrop-pose-weights 6DRepNet_300W_LP_AFLW2000.pth
"""


@click.command("generate", epilog=_GENERATE_EPILOG)
@click.option("--generator", "generator_name", default="vec2face", show_default=True, help="Registered generator.")
@click.option("--weights", type=click.Path(), help="Generator weights file (a model directory for arc2face).")
@click.option("--generator-option", "generator_options", multiple=True, metavar="KEY=VALUE",
              help="Keyword option of the generator, e.g. --generator-option steps=4 (recorded in dataset.json).")
@click.option("--ids", "ids_path", type=click.Path(dir_okay=False), help="Identity vectors (N, D) .npy.")
@click.option("--n-ids", type=click.IntRange(min=1), help="Sample this many identity vectors (needs --stats or --features).")
@click.option("--stats", type=click.Path(dir_okay=False), help="PCA statistics for --n-ids.")
@click.option("--features", type=click.Path(dir_okay=False), help="Real identity features for --n-ids.")
@click.option("--tau", type=float, default=0.3, show_default=True, help="Identity separation for --n-ids.")
@click.option("--images-per-id", type=click.IntRange(min=1), help="Images per identity [default 50].")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Run directory: ids.npy, manifest, staged shards, the dataset and dataset.json.")
@click.option("--format", "fmt", help="Registered dataset format to write (folder, lmdb, rec, ...) [default folder].")
@click.option("--ids-per-shard", type=click.IntRange(min=1), help="Identities per resumable shard [default 100].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Vectors per generator call [default 50].")
@click.option("--seed", type=int, help="Seed of every random choice [default 0].")
@click.option("--device", default=None, help="Device (cpu, cuda, cuda:1); under torchrun each rank uses its own GPU.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML generation config.")
@click.option("--set", "overrides", multiple=True, help="Override a config key, e.g. --set perturb.min_cos=0.6.")
@click.option("--attrop", "attrop_spec", help="AttrOP targets, e.g. pose=60:0.4,pose=85:0.2,quality=27 (see docs).")
@click.option("--attrop-identity", help="Identity extractor for AttrOP, in the generator's FR space [default arcface-r100].")
@click.option("--attrop-identity-weights", type=click.Path(), help="Weights file (or FR run directory for fr-run).")
@click.option("--attrop-pose", help="Pose extractor [default sixdrepnet].")
@click.option("--attrop-pose-weights", type=click.Path(), help="Weights file of the pose extractor.")
@click.option("--attrop-quality", help="Quality extractor; quality = norm of its feature [default magface-r100].")
@click.option("--attrop-quality-weights", type=click.Path(), help="Weights file (or FR run directory for fr-run).")
def generate(generator_name, weights, generator_options, ids_path, n_ids, stats, features, tau, images_per_id, out, fmt,
             ids_per_shard, batch_size, seed, device, config_path, overrides, attrop_spec, attrop_identity,
             attrop_identity_weights, attrop_pose, attrop_pose_weights, attrop_quality, attrop_quality_weights):
    """Generate a labelled dataset: perturb identity vectors, optionally AttrOP, write shards, assemble."""
    import numpy as np

    from .. import generation as gen
    from ..attrop import build_attrop
    from ..config import build_config, config_to_dict, parse_override, read_toml, with_defaults
    from ..errors import FacebenchError
    from ..pluginmanager import registry
    from ..provenance import sha256_file, sha256_path
    from ..runs import Run
    from ..weights import resolve_weights

    generator_spec = registry("generator").get(generator_name)
    data = read_toml(config_path) if config_path else {}
    # a generator's own generation defaults (arc2face: no vector noise) sit under the user's config
    data["generation"] = with_defaults(generator_spec.extras.get("generation_defaults", {}), data.get("generation", {}))
    cli_values = {
        "generation": {"images_per_id": images_per_id, "ids_per_shard": ids_per_shard, "batch_size": batch_size,
                       "seed": seed, "format": fmt},
        "attrop": {"spec": attrop_spec, "identity_extractor": attrop_identity,
                   "identity_weights": attrop_identity_weights, "pose_extractor": attrop_pose,
                   "pose_weights": attrop_pose_weights, "quality_extractor": attrop_quality,
                   "quality_weights": attrop_quality_weights},
    }
    for section, values in cli_values.items():
        data.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    cfg = build_config(gen.GenerateSettings, data, overrides)
    gcfg = cfg.generation

    if (ids_path is None) == (n_ids is None):
        raise FacebenchError("give exactly one of --ids FILE or --n-ids N")
    rank, world, barrier = gen.distributed_context()
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"

    format_spec = registry("format").get(gcfg.format)
    format_obj = format_spec.create()
    if getattr(format_obj, "role", "train") != "train":
        raise FacebenchError(f"format '{gcfg.format}' writes {format_obj.role} sets, not labelled training sets")
    weights_path = resolve_weights(weights, allow_dir=bool(generator_spec.extras.get("weights_dir"))) if weights else None
    options = {".".join(keys): value for keys, value in map(parse_override, generator_options)}
    generator = generator_spec.create(weights=weights_path, device=device, **options)
    feature_dim = int(getattr(generator, "feature_dim", 512))

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if ids_path is not None:
        identities = gen.load_identity_vectors(ids_path, feature_dim)
        ids_source = {"file": Path(ids_path).name, "sha256": sha256_file(ids_path)}
    else:
        from ..idsampling import PCAStats, load_feature_matrix, sample_identities

        if (stats is None) == (features is None):
            raise FacebenchError("--n-ids needs exactly one of --stats (PCA statistics) or --features")
        source = stats or features
        ids_source = {"sample": {"n": n_ids, "tau": tau, "seed": gcfg.seed, "from": Path(source).name,
                                 "sha256": sha256_file(source)}}
        saved = out_dir / gen.IDS_FILE
        if saved.is_file() and (out_dir / gen.MANIFEST).is_file():
            identities = gen.load_identity_vectors(saved, feature_dim)  # resume: the manifest checks they match
        else:
            pca = PCAStats.load(stats) if stats else PCAStats.fit(load_feature_matrix(features))
            result = sample_identities(pca, n_ids, tau=tau, seed=gcfg.seed, device=device)
            console.print(f"sampled {n_ids} identities at tau={tau}: rejection rate "
                          f"{100 * result.rejection_rate:.2f}%")
            identities = result.vectors
        if identities.shape[1] != feature_dim:
            raise FacebenchError(f"{source}: statistics have {identities.shape[1]} dimensions, "
                                 f"the generator expects {feature_dim}")

    attrop = build_attrop(cfg.attrop, device=device) if cfg.attrop.spec else None
    attrop_info = None
    if attrop is not None:
        attrop_info = {k: v for k, v in config_to_dict(cfg.attrop).items() if not k.endswith("_weights")}
        attrop_info["terms"] = [str(t) for t in attrop.terms]
        for key in ("identity_weights", "pose_weights", "quality_weights"):
            path = getattr(cfg.attrop, key)
            if path:
                # an FR run directory (extractor fr-run) is hashed as a whole
                digest = sha256_path(path) if Path(path).is_dir() else sha256_file(resolve_weights(path))
                attrop_info[key] = {"file": Path(path).name, "sha256": digest}
    job = gen.GenerationJob(
        out=out_dir, config=gcfg, generator_name=generator_name,
        generator_info={"weights": weights_path.name if weights_path else None,
                        "weights_sha256": sha256_path(weights_path) if weights_path else None,
                        "image_size": getattr(generator, "image_size", None), "feature_dim": feature_dim,
                        **({"options": options} if options else {}), **getattr(generator, "info", {})},
        identities=identities, ids_source=ids_source, attrop_info=attrop_info,
    )
    if job.is_complete():
        click.echo(f"{out_dir}: already complete ({job.num_ids} identities); nothing to do")
        return
    if rank == 0:
        gen.save_ids(out_dir, identities)
        inputs = {"weights": weights_path} if weights_path else {}
        inputs.update({"ids": ids_path} if ids_path else {"sampling_source": stats or features})
        Run(out_dir, config=cfg, seed=gcfg.seed, device=device, inputs=inputs)
    with make_progress() as progress:
        generated = gen.run_shards(job, generator, attrop=attrop, device=device, rank=rank, world=world,
                                   progress=progress)
        barrier()
        if rank != 0:
            return
        summary = gen.assemble(job, format_obj, progress=progress)
    p = summary["stats"].get("perturb", {})
    click.echo(f"generated {len(generated)} of {job.num_shards} shards in this run; wrote {summary['images']} images "
               f"of {summary['identities']} identities to {job.dataset_path} ({gcfg.format})")
    click.echo(f"perturbation: min cosine {p.get('min_cos', float('nan')):.3f}, mean {p.get('mean_cos', float('nan')):.3f}, "
               f"{p.get('resampled', 0)} resampled, {p.get('shrunk', 0)} shrunk")
    if p.get("images") and p.get("shrunk", 0) > p["images"] / 2:
        norm = float(np.median(np.linalg.norm(identities, axis=1)))
        console.print(
            f"[yellow]warning:[/] {p['shrunk']} of {p['images']} perturbed vectors needed their noise halved to "
            f"reach cosine {gcfg.perturb.min_cos:g}: sigmas {gcfg.perturb.sigmas} are large for identity vectors "
            f"of norm {norm:.3g} in {identities.shape[1]} dimensions (the paper's values assume ArcFace-scale "
            "vectors; see docs/generation.md)")
    if "attrop" in summary["stats"]:
        a = summary["stats"]["attrop"]
        click.echo(f"AttrOP: {a['images']} images optimised, {a['met']} met every target, {a['unmet']} did not "
                   f"(mean {a['mean_steps']:.1f} steps, at most {a['max_steps']})")


__all__ = ["generate", "sample_ids"]
