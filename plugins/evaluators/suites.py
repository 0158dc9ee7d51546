"""The built-in verification suites and where each test set usually lives under a data root.

File names are those of the insightface packs (``lfw.bin``, ``cfp_fp.bin``, ...), of the SOTA-FR
conversions of Hadrian and Eclipse (``hadrian.bin`` or the newer ``hadrian_even.bin``), and of toyfaces
(``toy_lfw.bin``...). A pair-list set may instead be a folder of that name holding images and a pairs file.
"""

from __future__ import annotations

from facebench.evaluation.suites import Benchmark, Suite, default_files


def _bench(name: str, label: str, description: str, *aliases: str) -> Benchmark:
    files = list(default_files(name))
    for alias in aliases:
        files += list(default_files(alias))
    return Benchmark(name=name, label=label, files=tuple(files), description=description)


def _toy(name: str, label: str, description: str) -> Benchmark:
    files = (f"{name}.bin", f"packs/{name}.bin", name)
    return Benchmark(name=name, label=label, files=files, description=description)


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in [
    _bench("lfw", "LFW", "LFW, 6,000 pairs, general"),
    _bench("cfp_fp", "CFP-FP", "CFP frontal-profile, 7,000 pairs, pose"),
    _bench("cplfw", "CPLFW", "cross-pose LFW, 6,000 pairs"),
    _bench("agedb_30", "AgeDB", "AgeDB-30, 6,000 pairs, age gap 30 years"),
    _bench("calfw", "CALFW", "cross-age LFW, 6,000 pairs"),
    _bench("hadrian", "Hadrian", "Goldilocks Hadrian, facial-hair differences (MORPH)", "hadrian_even"),
    _bench("eclipse", "Eclipse", "Goldilocks Eclipse, over/under-exposure (MORPH)", "eclipse_even"),
    _bench("sllfw", "SLLFW", "similar-looking LFW: LFW positives, look-alike negatives"),
    _bench("doppelver", "DoppelVer", "doppelganger verification pairs"),
    _toy("toy_lfw", "LFW (toy)", "toyfaces general pairs"),
    _toy("toy_cfp_fp", "CFP-FP (toy)", "toyfaces frontal vs profile"),
    _toy("toy_cplfw", "CPLFW (toy)", "toyfaces cross-pose"),
    _toy("toy_agedb_30", "AgeDB (toy)", "toyfaces age cues"),
    _toy("toy_calfw", "CALFW (toy)", "toyfaces cross-age"),
    _toy("toy_hadrian", "Hadrian (toy)", "toyfaces facial hair"),
    _toy("toy_eclipse", "Eclipse (toy)", "toyfaces exposure"),
]}

FIVE = ("lfw", "cfp_fp", "cplfw", "agedb_30", "calfw")
TOY_FIVE = tuple(f"toy_{name}" for name in FIVE)

#: suite name -> (benchmark names, description)
SUITES: dict[str, tuple[tuple[str, ...], str]] = {
    "five": (FIVE, "LFW, CFP-FP, CPLFW, AgeDB-30, CALFW (the paper's Table 1)"),
    "hadrian": (("hadrian",), "Hadrian: facial-hair differences"),
    "eclipse": (("eclipse",), "Eclipse: exposure differences"),
    "sllfw": (("sllfw",), "SLLFW: similar-looking negatives"),
    "doppelver": (("doppelver",), "DoppelVer: doppelganger pairs"),
    "all": (FIVE + ("hadrian", "eclipse", "sllfw", "doppelver"), "the five plus Hadrian, Eclipse, SLLFW, DoppelVer"),
    "toy-five": (TOY_FIVE, "toyfaces mirrors of the five (toy_lfw ... toy_calfw)"),
    "toy-all": (TOY_FIVE + ("toy_hadrian", "toy_eclipse"), "every toyfaces pack"),
    **{name: ((name,), f"{BENCHMARKS[name].description} ({name}.bin)") for name in BENCHMARKS if name.startswith("toy_")},
}


def build_suite(name: str) -> Suite:
    names, description = SUITES[name]
    return Suite(name=name, benchmarks=tuple(BENCHMARKS[n] for n in names), description=description)
