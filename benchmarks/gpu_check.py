"""The device check: one command that measures on this machine everything a paper-scale run depends on.

    python benchmarks/gpu_check.py                      # on a GPU machine: full sizes, at most ~8 minutes
    python benchmarks/gpu_check.py --tiny               # the CPU sizes (the test suite runs this on CPU)
    python benchmarks/gpu_check.py --only fr-train,pair-scoring --json-out check.json

Items (run in a child process, each under its own time limit: an item past its limit, or one that fails,
reports ``skipped: <why>`` and the check goes on with the next):

* ``generation`` -- Vec2Face base (untrained weights) images/s at batch 64 in fp32, fp16 and bf16
  autocast, with the largest pixel difference to fp32 (same masks); ``generation-compiled``: the same
  with ``torch.compile``.
* ``generate-e2e`` -- ``facebench generate`` end to end (generation, JPEG encoding, writing) for 2,000
  images, images/s.
* ``fr-train`` -- SE-IResNet50 + ArcFace training images/s and peak memory at batch 128 with AMP, plain
  and ``channels_last``.
* ``vec2face-train`` -- a Vec2Face base training step (LPIPS-VGG16 with random weights, a random-weight
  IResNet-100 identity model, the discriminator) at batch 32 with AMP: steps/s, peak memory, and whether
  every loss stayed finite over 50 steps on toyfaces images with dark (black) borders.
* ``sampling`` -- identity sampling of 300k identities (exact rejection above tau), seconds.
* ``separability`` -- the separability curve of 300k centres, seconds.
* ``pair-scoring`` -- IJB-C-size verification scoring: 15.6M pairs of 23k templates (scores, ROC, TAR at
  FAR 1e-4), seconds.

Without CUDA (or with ``--tiny``) every item runs at tiny sizes on the CPU within about two minutes.
The output is a readable table on stderr and one JSON document on stdout (and in ``--json-out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

#: name -> (seconds allowed at full size, seconds allowed at tiny size)
LIMITS = {
    "generation": (90, 40),
    "generation-compiled": (150, 40),
    "generate-e2e": (60, 40),
    "fr-train": (75, 40),
    "vec2face-train": (90, 60),  # tiny: VGG16 LPIPS backward twice per step is seconds on a CPU
    "sampling": (45, 20),
    "separability": (40, 20),
    "pair-scoring": (40, 20),
}
#: The whole check stops starting items after this many seconds (full size; tiny: 110).
TOTAL = {False: 460, True: 110}


# ------------------------------------------------------------------------------------------------ items


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: Any) -> float:
    """Peak GPU memory allocated by torch (CUDA), else the process's peak resident memory."""
    import resource

    import torch

    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _reset_peak(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _timed(fn: Any, device: Any, repeats: int) -> float:
    """Seconds per call of ``fn`` over ``repeats`` calls (after the caller's warm-up)."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def _generator(name: str, device: Any, **options: Any) -> Any:
    import facebench

    return facebench.load_generator(name, weights=None, device=str(device), **options)


def _vectors(n: int, dim: int = 512, seed: int = 0) -> Any:
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g) * 0.97  # raw ArcFace scale: norm ~22 in 512-d


def item_generation(device: Any, tiny: bool, compiled: bool = False) -> dict[str, Any]:
    import torch

    name, batch, repeats = ("vec2face_tiny", 2, 1) if tiny else ("vec2face", 64, 5)
    if compiled and tiny:
        return {"skipped": "torch.compile on the CPU builds C++ kernels for minutes; it is measured on CUDA"}
    base = _generator(name, device, amp=False)
    vectors = _vectors(batch, base.feature_dim)
    masks = base.sample_masks(batch)
    reference = base.generate(vectors, masks=masks)
    out: dict[str, Any] = {"model": name, "batch": batch}
    variants = {"compiled": {"compile": True, "amp": device.type == "cuda"}} if compiled else {
        "fp32": {"amp": False}, "fp16": {"amp": True, "amp_dtype": "float16"},
        "bf16": {"amp": True, "amp_dtype": "bfloat16"}}
    for label, options in variants.items():
        if label == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            out[label] = "skipped: this GPU has no bf16"
            continue
        if label == "fp16" and device.type == "cpu":
            out[label] = "skipped: fp16 autocast is a CUDA path"
            continue
        try:
            gen = _generator(name, device, **options)
            for _ in range(2 if compiled else 1):  # warm-up (compilation happens here)
                gen.generate(vectors, masks=masks)
            seconds = _timed(lambda g=gen: g.generate(vectors, masks=masks), device, repeats)
            images = gen.generate(vectors, masks=masks)
            out[label] = {"images_per_s": round(batch / seconds, 1),
                          "max_pixel_diff_to_fp32": round(float((images - reference).abs().max()) * 127.5, 3)}
        except Exception as exc:  # noqa: BLE001 - a variant this machine cannot run is reported, not fatal
            out[label] = f"skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    out["max_pixel_diff_unit"] = "8-bit levels (1 = one grey level)"
    return out


def item_generate_e2e(device: Any, tiny: bool) -> dict[str, Any]:
    import numpy as np

    from facebench.generation.job import GenerateRequest, generate_config, run_generate

    name, ids, per_id, batch = ("vec2face_tiny", 2, 4, 8) if tiny else ("vec2face", 40, 50, 64)
    with tempfile.TemporaryDirectory() as tmp:
        ids_path = Path(tmp) / "ids.npy"
        np.save(ids_path, _vectors(ids).numpy())
        config = generate_config(name, {"generation": {"images_per_id": per_id, "ids_per_shard": max(1, ids // 4),
                                                       "batch_size": batch, "format": "folder"}})
        request = GenerateRequest(out=Path(tmp) / "run", generator=name, untrained=True, ids=str(ids_path),
                                  device=str(device))
        start = time.perf_counter()
        outcome = run_generate(request, config)
        seconds = time.perf_counter() - start
    images = outcome.summary["images"]
    return {"model": name, "images": images, "format": "folder (JPEG q95)", "seconds": round(seconds, 2),
            "images_per_s": round(images / seconds, 1)}


def _BackboneHead(backbone: Any, head: Any) -> Any:
    import torch

    class BackboneHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone, self.head = backbone, head

        def forward(self, x: Any, y: Any) -> Any:
            return self.head(self.backbone(x), y)

    return BackboneHead()


def item_fr_train(device: Any, tiny: bool) -> dict[str, Any]:
    import torch

    import facebench
    from facebench.fr.trainer import StepRunner, parameter_groups
    from facebench.pluginmanager import registry
    from facebench.runtime import configure_backends, grad_scaler

    backbone_name, size, batch, classes, repeats = (("se_iresnet_tiny", 56, 4, 100, 1) if tiny
                                                    else ("se_iresnet50", 112, 128, 10_000, 10))
    configure_backends(device)
    out: dict[str, Any] = {"backbone": backbone_name, "head": "arcface", "batch": batch, "classes": classes,
                           "amp": "fp16" if device.type == "cuda" else "off (CPU)"}
    for label, channels_last in (("plain", False), ("channels_last", True)):
        torch.manual_seed(0)
        backbone = facebench.create_backbone(backbone_name, input_size=size)
        head = registry("head").create("arcface", 512, classes)

        module = _BackboneHead(backbone, head).to(device)
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(parameter_groups(module, 5e-4, True), lr=0.01, momentum=0.9)
        runner = StepRunner(module, opt, None, grad_scaler(device, True), device=device, fp16=True, micro_batch=0,
                            grad_clip=5.0, channels_last=channels_last)
        x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)  # what the loader sends
        y = torch.randint(0, classes, (batch,))
        for _ in range(1 if tiny else 3):
            runner.step(x, y)
        _reset_peak(device)
        seconds = _timed(lambda r=runner, x=x, y=y: r.step(x, y), device, repeats)
        out[label] = {"images_per_s": round(batch / seconds, 1), "peak_memory_mb": _peak_mb(device)}
        del runner, opt, module
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


class _DarkBorders:
    """A train reader whose images have a black frame (the case where fp16 SSIM used to overflow)."""

    def __init__(self, reader: Any, border: int):
        self.reader, self.border = reader, border
        self.path = reader.path
        self.labels = reader.labels
        self.num_classes = reader.num_classes

    def __len__(self) -> int:
        return len(self.reader)

    def label(self, i: int) -> int:
        return self.reader.label(i)

    def image(self, i: int) -> Any:
        image = self.reader.image(i).copy()
        b = self.border
        image[:b], image[-b:], image[:, :b], image[:, -b:] = 0, 0, 0, 0
        return image


def item_vec2face_train(device: Any, tiny: bool) -> dict[str, Any]:
    """Isolated on purpose: it calls the Vec2Face plugin's own trainer and losses, whose API may change
    (then this item says so and the rest of the check still runs)."""
    import numpy as np
    import torch

    import facebench
    from facebench.data import open_dataset

    try:
        from facebench_plugins.toyfaces.build import ToyConfig, build_world
        from facebench_plugins.vec2face.losses import LPIPSVGG16, vgg16_features
        from facebench_plugins.vec2face.train_config import TrainGeneratorConfig
        from facebench_plugins.vec2face.trainer import GeneratorTrainer
    except ImportError as exc:
        return {"skipped": f"the Vec2Face plugin's trainer API changed ({exc})"}
    model, size, batch, steps, identity_backbone = (("vec2face_tiny", 56, 2, 2, "iresnet_tiny") if tiny
                                                    else ("vec2face_vit_base_patch16", 112, 32, 50, "iresnet100"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        build_world(tmp_path / "toy", ToyConfig(identities=4, images_per_identity=batch // 2 + 1, size=size,
                                                pairs=20, packs=[]), workers=1)
        reader = _DarkBorders(open_dataset(tmp_path / "toy" / "train"), border=size // 8)
        torch.save({f"features.{k}": v for k, v in vgg16_features().state_dict().items()}, tmp_path / "vgg.pth")
        torch.save({f"lin{i}.model.1.weight": torch.rand(1, ch, 1, 1) for i, ch in enumerate(LPIPSVGG16.CHANNELS)},
                   tmp_path / "lpips.pth")
        torch.save(facebench.create_backbone(identity_backbone).state_dict(), tmp_path / "identity.pth")
        try:
            extractor = facebench.registry("feature_extractor").create(identity_backbone,
                                                                        weights=str(tmp_path / "identity.pth"),
                                                                        device=str(device))
            config = TrainGeneratorConfig(model=model, epochs=1000, batch_size=batch, perceptual="lpips-vgg16",
                                          vgg_weights=str(tmp_path / "vgg.pth"),
                                          lpips_weights=str(tmp_path / "lpips.pth"), disc_start=0,
                                          amp=True, device=str(device), num_workers=0, warmup_epochs=0.0)
            feats = np.asarray(_vectors(len(reader)).numpy())
            trainer = GeneratorTrainer(config, reader, feats, tmp_path / "run", extractor=extractor)
            images = torch.stack([torch.from_numpy(reader.image(i)).permute(2, 0, 1) for i in range(batch)])
            images = images.float() / 127.5 - 1
            vectors = torch.from_numpy(feats[:batch])
            trainer.train_step(images, vectors)  # warm-up
            _reset_peak(device)
            _sync(device)
            start = time.perf_counter()
            bad: set[str] = set()
            for _ in range(steps):
                record = trainer.train_step(images, vectors)
                trainer.position.global_step += 1
                bad |= {k for k, v in record.items() if not math.isfinite(float(v))}  # floats or tensors
            _sync(device)
            seconds = time.perf_counter() - start
        except (TypeError, AttributeError, ImportError) as exc:
            return {"skipped": f"the Vec2Face plugin's trainer API changed ({type(exc).__name__}: {exc})"}
    return {"model": model, "batch": batch, "steps": steps, "amp": "fp16" if device.type == "cuda" else "off (CPU)",
            "losses": sorted(record), "steps_per_s": round(steps / seconds, 2), "peak_memory_mb": _peak_mb(device),
            "all_losses_finite": not bad, "non_finite_losses": sorted(bad)}


def item_sampling(device: Any, tiny: bool) -> dict[str, Any]:
    import numpy as np

    from facebench.generation.sampling import PCAStats, sample_identities

    n = 1_000 if tiny else 300_000
    rng = np.random.default_rng(0)
    stats = PCAStats.fit(rng.standard_normal((1_000 if tiny else 4_000, 512)) * np.linspace(2.0, 0.2, 512))
    start = time.perf_counter()
    result = sample_identities(stats, n, tau=0.3, seed=0, device=str(device))
    seconds = time.perf_counter() - start
    return {"identities": n, "tau": 0.3, "rejection_rate": round(result.rejection_rate, 4),
            "seconds": round(seconds, 2)}


def item_separability(device: Any, tiny: bool) -> dict[str, Any]:
    import numpy as np

    from facebench.metrics import separability_curve

    n = 2_000 if tiny else 300_000
    centers = np.random.default_rng(0).standard_normal((n, 512)).astype(np.float32)
    start = time.perf_counter()
    curve = separability_curve(centers, 0.4, device=str(device))
    return {"centres": n, "separable": int(curve[-1]), "seconds": round(time.perf_counter() - start, 2)}


def item_pair_scoring(device: Any, tiny: bool) -> dict[str, Any]:
    import numpy as np
    import torch

    from facebench.metrics.roc import roc_curve, strict_tar_at_far

    templates, pairs = (2_000, 100_000) if tiny else (23_124, 15_658_489)  # IJB-C 1:1: 23,124 templates
    rng = np.random.default_rng(0)
    feats = torch.nn.functional.normalize(torch.from_numpy(rng.standard_normal((templates, 512)).astype(np.float32)),
                                          dim=1).to(device)
    a = torch.from_numpy(rng.integers(0, templates, pairs)).to(device)
    b = torch.from_numpy(rng.integers(0, templates, pairs)).to(device)
    same = rng.random(pairs) < 0.012  # IJB-C: 19,557 genuine of 15.6M
    _sync(device)
    start = time.perf_counter()
    scores = torch.empty(pairs, device=device)
    for lo in range(0, pairs, 1 << 20):
        hi = min(lo + (1 << 20), pairs)
        scores[lo:hi] = (feats[a[lo:hi]] * feats[b[lo:hi]]).sum(dim=1)
    scores = scores.cpu().numpy().astype(np.float64)
    scored = time.perf_counter() - start
    roc = roc_curve(scores, same)
    tar = strict_tar_at_far(roc, 1e-4)
    total = time.perf_counter() - start
    return {"templates": templates, "pairs": pairs, "score_seconds": round(scored, 2),
            "roc_seconds": round(total - scored, 2), "seconds": round(total, 2), "tar_at_far_1e-4": round(tar, 4)}


ITEMS = {
    "generation": item_generation,
    "generation-compiled": lambda device, tiny: item_generation(device, tiny, compiled=True),
    "generate-e2e": item_generate_e2e,
    "fr-train": item_fr_train,
    "vec2face-train": item_vec2face_train,
    "sampling": item_sampling,
    "separability": item_separability,
    "pair-scoring": item_pair_scoring,
}


# ------------------------------------------------------------------------------------------ the runner


def run_items(names: list[str], device_name: str, tiny: bool) -> None:
    """Child process: run the items in order, printing ``START name`` before and ``RESULT name {json}``
    after each, so the parent can hold every item to its own time limit while imports are paid once."""
    import torch

    os.environ.setdefault("FACEBENCH_QUIET", "1")
    import facebench.pluginmanager  # noqa: F401 - imported before the first item's clock starts

    device = torch.device(device_name)
    for name in names:
        print(f"START {name}", flush=True)
        start = time.perf_counter()
        try:
            result = ITEMS[name](device, tiny)
        except Exception as exc:  # noqa: BLE001 - reported as the item's skip reason
            traceback.print_exc()
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            result = {"skipped": f"{type(exc).__name__}: {first}"}
        result.setdefault("wall_seconds", round(time.perf_counter() - start, 2))
        print(f"RESULT {name} " + json.dumps(result), flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()


def machine(device_name: str) -> dict[str, Any]:
    import torch

    info = {"device": device_name, "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "cpu_count": os.cpu_count()}
    if device_name.startswith("cuda"):
        info["device_name"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    else:
        info["device_name"] = platform.processor() or platform.machine()
    return info


def _pump(stream: Any, lines: Any) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_with_limits(names: list[str], device: str, tiny: bool, budget: float,
                    script: str | os.PathLike = __file__) -> dict[str, Any]:
    """Every item's result, each held to its own limit: an item past its limit is recorded as skipped,
    its process is killed and a new one carries on with the next item. ``script`` runs the items
    (``--items a,b --device D [--tiny]``; this file)."""
    import queue
    import threading

    results: dict[str, Any] = {}
    start = time.monotonic()
    pending = list(names)
    while pending:
        cmd = [sys.executable, str(Path(script).resolve()), "--items", ",".join(pending), "--device", device]
        if tiny:
            cmd.append("--tiny")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: queue.Queue = queue.Queue()
        errors: list[str] = []
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        threading.Thread(target=errors.extend, args=(proc.stderr,), daemon=True).start()
        current, limit, deadline = None, 0.0, time.monotonic() + 120  # the imports before the first item
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = "TIMEOUT"
            if line is None or line == "TIMEOUT":
                proc.kill()
                proc.wait()
                if current is not None:
                    results[current] = {"skipped": f"time limit of {limit:.0f} s reached" if line == "TIMEOUT"
                                        else f"the item's process failed: {(errors or ['no output'])[-1].strip()[:200]}"}
                    pending.remove(current)
                elif line == "TIMEOUT" or not pending:
                    for name in pending:
                        results[name] = {"skipped": "the check's process did not start"}
                    pending = []
                else:  # died before its first item
                    results[pending.pop(0)] = {"skipped": f"failed to start: {''.join(errors)[-200:]}"}
                break
            if line.startswith("START "):
                current = line.split()[1]
                left = budget - (time.monotonic() - start)
                limit = min(LIMITS[current][1 if tiny else 0], left)
                if limit < 5:
                    proc.kill()
                    proc.wait()
                    for name in pending:
                        results[name] = {"skipped": f"the whole check's {budget:.0f} s were used up"}
                    pending = []
                    break
                print(f"[gpu_check] {current} (limit {limit:.0f} s) ...", file=sys.stderr, flush=True)
                deadline = time.monotonic() + limit
            elif line.startswith("RESULT "):
                _, name, payload = line.rstrip("\n").split(" ", 2)
                results[name] = json.loads(payload)
                pending.remove(name)
                current, deadline = None, time.monotonic() + 60
        if proc.poll() is None:
            proc.wait()
    return {name: results[name] for name in names}


def _flatten(prefix: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [row for k, v in value.items() for row in _flatten(f"{prefix}.{k}" if prefix else k, v)]
    if isinstance(value, list):
        return [(prefix, ", ".join(map(str, value)) or "-")]
    return [(prefix, str(value))]


def table(report: dict[str, Any]) -> str:
    rows = [("machine", f"{report['machine']['device_name']} ({report['machine']['device']}), torch "
                        f"{report['machine']['torch']}, CUDA {report['machine']['cuda']}, sizes {report['sizes']}")]
    for name, result in report["items"].items():
        rows += [(name, "skipped: " + result["skipped"].removeprefix("skipped: "))] if "skipped" in result else [
            (f"{name}.{k}", v) for k, v in _flatten("", result)]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (the default without CUDA)")
    parser.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when present)")
    parser.add_argument("--only", default="", help="comma-separated items (default: all)")
    parser.add_argument("--json-out", default=None, help="also write the JSON document here")
    parser.add_argument("--items", default=None, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tiny = args.tiny or not device.startswith("cuda")
    if args.items:
        run_items(args.items.split(","), device, tiny)
        return 0
    names = [n for n in (args.only.split(",") if args.only else ITEMS) if n]
    unknown = [n for n in names if n not in ITEMS]
    if unknown:
        parser.error(f"unknown item(s) {', '.join(unknown)}; items: {', '.join(ITEMS)}")
    start = time.monotonic()
    report: dict[str, Any] = {"machine": machine(device), "sizes": "tiny" if tiny else "full",
                              "items": run_with_limits(names, device, tiny, TOTAL[tiny])}
    report["seconds"] = round(time.monotonic() - start, 1)
    print(table(report), file=sys.stderr)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
