"""Commands that make synthetic datasets: ``sample-ids`` (identity vectors) and ``generate`` (images)."""

from __future__ import annotations

from pathlib import Path

import click

from ..console import console, make_progress
from .options import device_option, examples, overwrite_option, rerun_help

_SAMPLE_EPILOG = examples(
    "facebench sample-ids --features webface_centres.npy --n 10000 --tau 0.3 --out ids.npy --save-stats pca.npz",
    "facebench sample-ids --stats pca.npz --n 300000 --out ids300k.npy",
)


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
@device_option(help="Device for the similarity products: auto, cpu, cuda, cuda:N.")
@overwrite_option("--out")
@rerun_help("--out", note="The parameters are --n, --tau, --seed, --batch, --max-draw-factor, --save-stats and the "
                          "sha256 of --features or --stats, recorded in OUT.json beside OUT; --device is not one. An "
                          "interrupted run samples again (seeded: the same vectors).")
def sample_ids(features, stats, n, tau, out, save_stats, seed, batch, max_draw_factor, device, overwrite):
    """Sample identity vectors: PCA statistics of real features, exact rejection above tau."""
    from ..generation.sampling import sample_ids_file
    from ..rerun import already_complete
    from ..runtime import choose_device

    with make_progress() as progress:
        task = progress.add_task("sampling identities", total=n)
        result, record = sample_ids_file(
            out, n, features=features, stats=stats, tau=tau, seed=seed, batch=batch,
            max_draw_factor=max_draw_factor, device=str(choose_device(device)), save_stats=save_stats,
            progress=lambda k: progress.update(task, completed=k), overwrite=overwrite)
    if result is None:
        click.echo(already_complete(out, f"{n} identity vectors at tau={tau}, median norm {record['median_norm']:.4g}"))
        return
    click.echo(f"kept {n} identity vectors of {result.drawn} drawn at tau={tau}: "
               f"rejection rate {100 * result.rejection_rate:.2f}% ({result.rejected} rejected) in "
               f"{record['seconds']:.1f}s; median norm {record['median_norm']:.4g}")
    click.echo(f"wrote {out}")


_GENERATE_EPILOG = examples(
    "facebench generate --generator vec2face --weights vec2face_generator.pth --ids ids.npy \\",
    "    --images-per-id 50 --out runs/hsface10k --format folder",
    "facebench generate --generator vec2face --weights vec2face_generator.pth --n-ids 1000 --stats pca.npz \\",
    "    --out runs/pose --attrop pose=60:0.4,pose=85:0.2,quality=27 \\",
    "    --attrop-identity-weights arcface-r100-glint360k.pth --attrop-quality-weights magface-r100-glint360k.pth \\",
    "    --attrop-pose-weights 6DRepNet_300W_LP_AFLW2000.pth",
    "facebench generate --generator noise_projection --ids ids.npy --images-per-id 8 --out runs/noise-set \\",
    "    --set generation.perturb.min_cos=0.6",
    "facebench generate --generator vec2face --ref-images photos/ --detector retinaface_r50 \\",
    "    --detector-weights Resnet50_Final.pth --images-per-id 20 --out runs/my-people",
    "facebench generate --generator arc2face --weights arc2face-model --ref-images photos/ \\",
    "    --detector retinaface_r50 --generator-option reference_weights=arcface-r100.pth --out runs/my-people-a2f",
    "facebench generate --generator vec2face_plus --weights pose_model.pth --ids ids.npy \\",
    "    --pose-landmarks frontal,yaw-30,yaw+30,yaw-60,yaw+60 --images-per-id 50 --out runs/vface-poses",
    "facebench generate --generator vec2face_plus --weights pose_model.pth --ids ids.npy \\",
    "    --pose-landmarks landmarks/landmark_examples.txt --out runs/vface-examples",
)


@click.command("generate", epilog=_GENERATE_EPILOG)
@click.option("--generator", "generator_name", default="vec2face", show_default=True, help="Registered generator.")
@click.option("--weights", type=click.Path(),
              help="Generator weights file, or model directory for arc2face [default: the generator's released "
                   "file in the weights directory].")
@click.option("--generator-option", "generator_options", multiple=True, metavar="KEY=VALUE",
              help="Keyword option of the generator, e.g. --generator-option steps=4 (recorded in dataset.json).")
@click.option("--untrained", is_flag=True,
              help="Allow a generator or AttrOP model without weights (random weights; recorded in dataset.json).")
@click.option("--ids", "ids_path", type=click.Path(dir_okay=False), help="Identity vectors (N, D) .npy.")
@click.option("--n-ids", type=click.IntRange(min=1), help="This many identities: sampled vectors (needs --stats or --features), or "
              "an image-conditioned generator's own identities (DCFace's first stage).")
@click.option("--stats", type=click.Path(dir_okay=False), help="PCA statistics for --n-ids.")
@click.option("--features", type=click.Path(dir_okay=False), help="Real identity features for --n-ids.")
@click.option("--tau", type=float, default=0.3, show_default=True, help="Identity separation for --n-ids.")
@click.option("--ref-images", type=click.Path(),
              help="Folder of photos of the identities to generate (a sub-folder per identity, or one photo per "
                   "identity): detected, aligned and embedded with the generator's own feature extractor.")
@click.option("--detector", "detector_name", help="Face detector for --ref-images (facebench plugins --kind detector).")
@click.option("--detector-weights", type=click.Path(),
              help="Weights file of the detector [default: its released file in the weights directory].")
@click.option("--rescale-ids", is_flag=True,
              help="Scale identity vectors whose norm does not match the generator's to its norm (recorded).")
@click.option("--images-per-id", type=click.IntRange(min=1), help="Images per identity [default 50].")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Run directory: ids.npy, manifest, staged shards, the dataset and dataset.json.")
@click.option("--format", "fmt", help="Registered dataset format to write (folder, lmdb, rec, ...) [default folder].")
@click.option("--ids-per-shard", type=click.IntRange(min=1), help="Identities per resumable shard [default 100].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Vectors per generator call [default 50].")
@click.option("--seed", type=int, help="Seed of every random choice [default 0].")
@device_option(help="auto, cpu, cuda, cuda:N; under torchrun each rank uses its own GPU.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML generation config.")
@click.option("--set", "overrides", multiple=True, help="Override a config key, e.g. --set generation.perturb.min_cos=0.6.")
@click.option("--pose-landmarks", "pose_landmarks",
              help="Landmark images for a pose-conditioned generator (vec2face_plus with pose_model.pth): named "
                   "poses (frontal,yaw-30,yaw+30; yaw-90..yaw+90 in steps of 15; release-examples), a list of "
                   "landmark images (the release's landmark_examples.txt), or 5-point coordinates (.txt lines of "
                   "x y for eyes, nose, mouth corners; .npy (P, 5, 2)). Image i gets pose i mod P.")
@click.option("--attrop", "attrop_spec", help="AttrOP targets, e.g. pose=60:0.4,pose=85:0.2,quality=27 (see docs).")
@click.option("--identity-prepass", is_flag=True,
              help="Run the release's AttrOP pre-pass on the identity vectors (quality 27 + identity) before perturbing.")
@click.option("--attrop-identity", help="Identity extractor for AttrOP, in the generator's FR space [default arcface-r100].")
@click.option("--attrop-identity-weights", type=click.Path(), help="Weights file (or FR run directory for fr-run).")
@click.option("--attrop-pose", help="Pose extractor [default sixdrepnet].")
@click.option("--attrop-pose-weights", type=click.Path(), help="Weights file of the pose extractor.")
@click.option("--attrop-quality", help="Quality extractor; quality = norm of its feature [default magface-r100].")
@click.option("--attrop-quality-weights", type=click.Path(), help="Weights file (or FR run directory for fr-run).")
@overwrite_option("--out")
@rerun_help("--out", note="The parameters are the generation config, the generator with its weights' sha256 and "
                          "options, the identity vectors (their sha256 and where they came from), AttrOP's settings "
                          "and models and the landmark images; --device is not one. Finished shards are kept: a "
                          "killed run generates only the others. --ids-per-shard and --batch-size are parameters: "
                          "they decide the random draws.")
def generate(generator_name, weights, generator_options, untrained, ids_path, n_ids, stats, features, tau, ref_images,
             detector_name, detector_weights, rescale_ids, images_per_id, out, fmt, ids_per_shard, batch_size, seed, device, config_path, overrides, pose_landmarks, attrop_spec, identity_prepass,
             attrop_identity, attrop_identity_weights, attrop_pose, attrop_pose_weights, attrop_quality,
             attrop_quality_weights, overwrite):
    """Generate a labelled dataset: perturb identity vectors, optionally AttrOP, write shards, assemble.

    Identity vectors come from --ids, from --n-ids sampled ones, or from --ref-images: photos of real
    people, each face found by --detector, aligned to the ArcFace crop and embedded with the feature
    extractor the generator declares (Vec2Face: raw features of the model its weights were trained on;
    Arc2Face: its ArcFace R100, --generator-option reference_weights=FILE), one vector per identity
    (the mean over its photos). dataset.json records each identity's name and its photos' sha256.

    A pose-conditioned generator (vec2face_plus with its pose_model.pth) conditions every image on a
    landmark image from --pose-landmarks; dataset.json records each landmark image and the rule that
    assigns them (image i gets pose i mod P, as the release cycles them).
    """
    from ..config import read_toml, table
    from ..generation.job import GenerateRequest, generate_config, run_generate

    data = read_toml(config_path) if config_path else {}
    cli_values = {
        "generation": {"images_per_id": images_per_id, "ids_per_shard": ids_per_shard, "batch_size": batch_size,
                       "seed": seed, "format": fmt, "rescale_ids": True if rescale_ids else None},
        "attrop": {"spec": attrop_spec, "identity_extractor": attrop_identity,
                   "identity_weights": attrop_identity_weights, "pose_extractor": attrop_pose,
                   "pose_weights": attrop_pose_weights, "quality_extractor": attrop_quality,
                   "quality_weights": attrop_quality_weights, "identity_prepass": True if identity_prepass else None},
    }
    for section, values in cli_values.items():
        table(data, section).update({k: v for k, v in values.items() if v is not None})
    config = generate_config(generator_name, data, overrides)
    request = GenerateRequest(out=Path(out), generator=generator_name, weights=weights, untrained=untrained,
                              generator_options=generator_options, ids=ids_path, n_ids=n_ids, stats=stats,
                              features=features, ref_images=ref_images, detector=detector_name,
                              detector_weights=detector_weights, tau=tau, device=device,
                              pose_landmarks=pose_landmarks, overwrite=overwrite)
    with make_progress() as progress:
        outcome = run_generate(request, config, progress=progress)
    _print_outcome(outcome, config)


def _print_outcome(outcome, config) -> None:
    job, summary = outcome.job, outcome.summary
    if outcome.already_complete:
        from ..rerun import already_complete

        click.echo(already_complete(job.out, f"{job.num_ids} identities"))
        return
    if summary is None:  # a rank other than 0: rank 0 reports
        return
    stats, perturb = summary["stats"], config.generation.perturb
    p = stats.get("perturb", {})
    click.echo(f"generated {len(outcome.generated)} of {job.num_shards} shards in this run; wrote {summary['images']} "
               f"images of {summary['identities']} identities to {job.dataset_path} ({config.generation.format})")
    click.echo(f"perturbation: min cosine {p.get('min_cos', float('nan')):.3f}, mean {p.get('mean_cos', float('nan')):.3f}, "
               f"{p.get('resampled', 0)} resampled, {p.get('shrunk', 0)} shrunk")
    if p.get("images") and p.get("shrunk", 0) > p["images"] / 2:
        from ..generation.perturbation import matching_sigmas

        dim = job.identities.shape[1]
        fit = ", ".join(f"{s:g}" for s in matching_sigmas(outcome.median_norm, dim))
        console.print(
            f"[yellow]warning:[/] {p['shrunk']} of {p['images']} perturbed vectors needed their noise halved to "
            f"reach cosine {perturb.min_cos:g} (--set generation.perturb.min_cos): sigmas {perturb.sigmas} "
            f"(--set generation.perturb.sigmas) are large for identity vectors of norm {outcome.median_norm:.3g} in "
            f"{dim} dimensions; the paper's sigmas assume raw ArcFace-scale vectors of norm about 22. Use raw "
            f"features (facebench embed --raw), or keep the paper's cosines at this norm with --set "
            f"'generation.perturb.sigmas=[{fit}]'")
    poses = summary.get("pose_landmarks")
    if poses:
        names = [p.get("name", "?") for p in poses.get("poses", [])]
        shown = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
        click.echo(f"pose control: {poses.get('count', len(names))} landmark images ({shown}); image i of the set "
                   "is conditioned on pose i mod P (recorded in dataset.json)")
    for name, label, unit in (("prepass", "identity pre-pass", "identity vectors"), ("attrop", "AttrOP", "images")):
        if name in stats:
            a = stats[name]
            click.echo(f"{label}: {a['images']} {unit} optimised, {a['met']} met every target, {a['unmet']} did "
                       f"not (mean {a['mean_steps']:.1f} steps, at most {a['max_steps']})")


__all__ = ["generate", "sample_ids"]
