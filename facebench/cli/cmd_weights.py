"""``facebench weights import``: released models as they are distributed (ONNX, MXNet) -> facebench weights."""

from __future__ import annotations

import importlib

import click

from .options import examples, overwrite_option, rerun_help


@click.group(epilog=examples("facebench weights import buffalo_l/w600k_r50.onnx --arch iresnet50 --out w600k_r50.pth"))
def weights() -> None:
    """Weight files made elsewhere, converted into facebench backbones."""


@weights.command("import", epilog=examples(
    "facebench weights import buffalo_l/w600k_r50.onnx --arch iresnet50 --out w600k_r50.pth",
    "facebench weights import antelopev2/glintr100.onnx --arch iresnet100 --out glintr100.pth",
    "facebench weights import model-r100-ii/model-0000.params --arch iresnet100 --out r100-ms1m.pth",
    "facebench weights import model-y1-test2/model-0000.params --arch mbf_y1 --out mbf_y1.pth",
    "facebench evaluate --suite five --model w600k_r50.pth --backbone iresnet50 --data-root packs",
))
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("--arch", required=True,
              help="The facebench backbone the file holds: iresnet50 (buffalo_l w600k_r50), iresnet100 "
                   "(antelopev2 glintr100, Arc2Face's arcface.onnx, LResNet100E-IR), mbf (arcface_torch "
                   "MobileFaceNet), mbf_y1 (MXNet MobileFaceNet model-y1-test2), ...")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The state dict to write (.pth); OUT.json beside it records the source's sha256.")
@click.option("--input", "source_input", type=click.Choice(["auto", "pixels", "unit"]), default="auto",
              show_default=True,
              help="What the source model is fed: pixels (RGB 0..255, normalised inside the graph), unit "
                   "((pixels - 127.5) / 127.5); auto follows insightface's rule (MXNet checkpoints and ONNX "
                   "graphs that start with Sub and Mul take pixels).")
@click.option("--bgr", is_flag=True, help="The source model takes BGR channels (insightface's take RGB).")
@click.option("--no-check", is_flag=True,
              help="Skip running the imported backbone against the source graph on a random input.")
@overwrite_option("--out")
@rerun_help("--out", note="The parameters are --arch, --input, --bgr, --no-check and the source files' sha256, "
                          "recorded in OUT.json beside OUT; an interrupted import is made again.")
def import_command(src: str, arch: str, out: str, source_input: str, bgr: bool, no_check: bool,
                   overwrite: bool) -> None:
    """Convert an ONNX model or an MXNet checkpoint (PREFIX-NNNN.params beside PREFIX-symbol.json) into
    a plain state dict of backbone ARCH, loadable by `--model OUT --backbone ARCH` and create_backbone.

    The graph is read with the onnx package or facebench's own .params reader (no onnxruntime, no MXNet)
    and followed from input to output, so renamed initializers and folded BatchNorms are mapped by their
    place in the graph. The input normalisation is folded into the first convolution: the imported
    backbone takes facebench's input, (pixels - 127.5) / 127.5 in RGB, and gives the source's embedding.
    Before writing, the backbone and the source graph run on the same random input.
    """
    from ..errors import ConfigError
    from ..pluginmanager import registry
    from ..safe_load import shown_name

    spec = registry("backbone").get(arch)
    importer = spec.extras.get("importer")
    if not importer:
        importable = sorted(s.name for s in registry("backbone") if s.extras.get("importer"))
        raise ConfigError(f"backbone '{arch}' has no importer for ONNX or MXNet files; importable: "
                          f"{', '.join(importable)}")
    module, _, attr = importer.partition(":")
    run_import = getattr(importlib.import_module(module), attr)
    info = run_import(src, arch=arch, out=out, mode=source_input, bgr=bgr, check=not no_check, overwrite=overwrite)
    if info.get("already_complete"):
        from ..rerun import already_complete

        files = ", ".join(s["file"] for s in info.get("sources", []))
        click.echo(already_complete(out, f"{arch} from {files}"))
        return
    sources = ", ".join(f"{s['file']} (sha256 {s['sha256'][:12]})" for s in info["sources"])
    click.echo(f"{info['format']} {sources} -> {info['out']}: {arch}, {info['tensors']} tensors; {info['input']}")
    if info.get("check"):
        click.echo(f"checked: the imported backbone reproduces the source graph to "
                   f"{info['check']['max_relative_difference']:.2g} (relative) on a random input")
    if info.get("unused"):
        names = [shown_name(n) for n in info["unused"]]
        click.echo(f"note: {len(names)} parameters of the file are outside the embedding graph and were left "
                   f"out ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})")
    click.echo(f"provenance -> {info['record']}")


__all__ = ["weights"]
