"""``benchmarks/gpu_check.py``: its CPU mode runs every item at tiny sizes within two minutes and reports
figures, and an item that overruns its time limit is skipped without stopping the others."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_cpu_mode_measures_every_item(tmp_path):
    out = tmp_path / "check.json"
    env = dict(os.environ, OMP_NUM_THREADS="2")
    env.pop("FACEBENCH_PLUGINS", None)
    start = time.monotonic()
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--json-out", str(out)],
                          capture_output=True, text=True, timeout=400, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert time.monotonic() - start < 300  # two minutes on an idle 2-core machine; this one is shared
    report = json.loads(out.read_text())
    assert json.loads(done.stdout) == report
    assert report["sizes"] == "tiny" and report["machine"]["device"] == "cpu" and report["machine"]["torch"]
    items = report["items"]
    assert list(items) == list(_module().ITEMS)
    gen = items["generation"]
    assert gen["fp32"]["images_per_s"] > 0 and gen["fp32"]["max_pixel_diff_to_fp32"] == 0.0
    assert gen["fp16"].startswith("skipped: ") and gen["bf16"]["max_pixel_diff_to_fp32"] > 0
    assert items["generation-compiled"]["skipped"].startswith("torch.compile on the CPU")
    assert items["generate-e2e"]["images"] == 8 and items["generate-e2e"]["images_per_s"] > 0
    for variant in ("plain", "channels_last"):
        assert items["fr-train"][variant]["images_per_s"] > 0 and items["fr-train"][variant]["peak_memory_mb"] > 0
    v2f = items["vec2face-train"]
    if "skipped" in v2f:  # allowed only when the Vec2Face plugin's trainer API moved on
        assert "API changed" in v2f["skipped"]
    else:
        assert v2f["all_losses_finite"] and v2f["steps_per_s"] > 0 and "ssim" in v2f["losses"]
    assert items["sampling"]["identities"] == 1000 and items["sampling"]["seconds"] > 0
    assert items["separability"]["separable"] <= items["separability"]["centres"] == 2000
    assert items["pair-scoring"]["pairs"] == 100_000
    assert "pair-scoring.seconds" in done.stderr  # the readable table


_FAKE = textwrap.dedent("""
    import json, sys, time
    names = sys.argv[sys.argv.index("--items") + 1].split(",")
    for name in names:
        print("START " + name, flush=True)
        if name == "slow":
            time.sleep(60)
        if name == "crash":
            raise SystemExit("boom")
        print("RESULT " + name + " " + json.dumps({"ran": name}), flush=True)
""")


def test_an_item_past_its_limit_is_skipped_and_the_rest_still_run(tmp_path, monkeypatch):
    check = _module()
    fake = tmp_path / "fake.py"
    fake.write_text(_FAKE)
    monkeypatch.setattr(check, "LIMITS", {name: (6, 6) for name in ("first", "slow", "crash", "last")})
    start = time.monotonic()
    results = check.run_with_limits(["first", "slow", "crash", "last"], "cpu", True, 100, script=fake)
    assert time.monotonic() - start < 40
    assert results["first"] == {"ran": "first"} and results["last"] == {"ran": "last"}
    assert results["slow"] == {"skipped": "time limit of 6 s reached"}
    assert results["crash"]["skipped"].startswith("the item's process failed") and "boom" in results["crash"]["skipped"]
