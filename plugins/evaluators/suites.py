"""The built-in suites and where each test set usually lives under a data root.

File names are those of the insightface packs (``lfw.bin``, ``cfp_fp.bin``, ...), of the SOTA-FR
conversions of Hadrian and Eclipse (``hadrian.bin`` or the newer ``hadrian_even.bin``), and of toyfaces
(``toy_lfw.bin``...). A pair-list set may instead be a folder of that name holding images and a pairs file.
IJB-B/C are found by their meta files in insightface's layout (``IJBC/meta/ijbc_template_pair_label.txt``),
TinyFace by its ``Probe`` folder, RFW by its four group packs (``RFW/African.bin`` ...), ND-Twins by
SOTA-FR's names (``twins_very_easy.xz``/``.bin`` or the prepared folder ``twins_very_easy/`` holding
``twins_very_easy.npy`` and ``issame.txt``; docs/evaluation.md says what is and is not documented of it).
"""

from __future__ import annotations

from facebench.evaluation.suites import Benchmark, Suite, default_files


def _bench(name: str, label: str, description: str, *aliases: str) -> Benchmark:
    files = list(default_files(name))
    for alias in aliases:
        files += list(default_files(alias))
    return Benchmark(name=name, label=label, files=tuple(files), description=description)


def _toy(name: str, label: str, description: str, group: str = "") -> Benchmark:
    files = (f"{name}.bin", f"packs/{name}.bin", name)
    return Benchmark(name=name, label=label, files=files, description=description, group=group)


def _ijb(name: str, label: str, target: str, suffix: str, protocol: str, roots: tuple[str, ...],
         description: str) -> Benchmark:
    files = tuple(f"{root}/meta/{target}_{suffix}" for root in roots)
    return Benchmark(name=name, label=label, files=files, description=description, protocol=protocol)


def _rfw(group: str) -> Benchmark:
    files = tuple(f"{folder}{stem}.bin" for folder in ("RFW/", "rfw/", "") for stem in (group, group.lower(),
                                                                                        f"{group}_test"))
    return Benchmark(name=f"rfw_{group.lower()}", label=f"RFW {group}", files=files, group=group,
                     description=f"RFW {group}, 6,000 pairs, 10 folds")


#: ND-Twins as SOTA-FR names it (``test.py``'s default ``twins_very_easy``) and shorter names a user may give it.
TWINS_STEMS = ("twins_very_easy", "twins", "nd_twins", "nd-twins")


def _twins() -> Benchmark:
    files = tuple(f"{stem}{ext}" for stem in TWINS_STEMS for ext in (".bin", ".xz", ""))
    return Benchmark(name="twins", label="ND-Twins", files=files,
                     description="ND-Twins (Goldilocks): genuine pairs against twin-sibling impostors, 10 folds "
                                 "(SOTA-FR's .xz/.bin pack or prepared npy + issame.txt folder)")


IJBC_ROOTS = ("IJBC", "ijbc", "IJB_release/IJBC", "IJB/IJBC")
IJBB_ROOTS = ("IJBB", "ijbb", "IJB_release/IJBB", "IJB/IJBB")
RFW_GROUPS = ("African", "Asian", "Caucasian", "Indian")
#: The toy world's four groups: identities of one skin tone each (plugins/toyfaces/protocols.py).
TOY_RFW_GROUPS = ("tone1", "tone2", "tone3", "tone4")


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
    _twins(),
    _toy("toy_lfw", "LFW (toy)", "toyfaces general pairs"),
    _toy("toy_cfp_fp", "CFP-FP (toy)", "toyfaces frontal vs profile"),
    _toy("toy_cplfw", "CPLFW (toy)", "toyfaces cross-pose"),
    _toy("toy_agedb_30", "AgeDB (toy)", "toyfaces age cues"),
    _toy("toy_calfw", "CALFW (toy)", "toyfaces cross-age"),
    _toy("toy_hadrian", "Hadrian (toy)", "toyfaces facial hair"),
    _toy("toy_eclipse", "Eclipse (toy)", "toyfaces exposure"),
    _ijb("ijbc", "IJB-C", "ijbc", "template_pair_label.txt", "ijb", IJBC_ROOTS,
         "IJB-C 1:1, 23,124 templates, 15,658,489 template pairs (insightface layout)"),
    _ijb("ijbb", "IJB-B", "ijbb", "template_pair_label.txt", "ijb", IJBB_ROOTS,
         "IJB-B 1:1, 12,115 templates, 8,010,270 template pairs (insightface layout)"),
    _ijb("ijbc_1n", "IJB-C 1:N", "ijbc", "1N_probe_mixed.csv", "ijb", IJBC_ROOTS,
         "IJB-C 1:N, galleries G1/G2, mixed-media probes"),
    Benchmark(name="tinyface", label="TinyFace", files=("tinyface/Probe", "TinyFace/Testing_Set/Probe",
                                                         "Testing_Set/Probe", "TinyFace/Probe"),
              protocol="tinyface-1n", description="TinyFace 1:N, native low-resolution probes, gallery + distractors"),
    *(_rfw(g) for g in RFW_GROUPS),
    _ijb("toy_ijb", "IJB-C (toy)", "ijbc", "template_pair_label.txt", "ijb", ("toy_ijb",),
         "toyfaces templates of several media, loose crops with five landmarks and detector scores"),
    _ijb("toy_ijb_1n", "IJB-C 1:N (toy)", "ijbc", "1N_probe_mixed.csv", "ijb", ("toy_ijb",),
         "toyfaces 1:N: galleries G1/G2 and mixed-media probes"),
    Benchmark(name="toy_tinyface", label="TinyFace (toy)", files=("toy_tinyface/Probe",), protocol="tinyface-1n",
              description="toyfaces low-resolution probes, gallery matches and distractors"),
    *(_toy(f"toy_rfw_{g}", f"RFW (toy) {g}", f"toyfaces pairs of one skin tone ({g})", group=g)
      for g in TOY_RFW_GROUPS),
    _toy("toy_twins", "ND-Twins (toy)", "toyfaces look-alike twin identities as impostors (SOTA-FR folder layout)"),
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
    "twins": (("twins",), "ND-Twins: genuine pairs against identical-twin impostors (Goldilocks, SOTA-FR layout)"),
    "all": (FIVE + ("hadrian", "eclipse", "sllfw", "doppelver", "twins"),
            "the five plus Hadrian, Eclipse, SLLFW, DoppelVer, ND-Twins"),
    "toy-five": (TOY_FIVE, "toyfaces mirrors of the five (toy_lfw ... toy_calfw)"),
    "toy-all": (TOY_FIVE + ("toy_hadrian", "toy_eclipse"), "every toyfaces pack"),
    "ijbc": (("ijbc", "ijbc_1n"), "IJB-C 1:1 (TAR@FAR) and, when its 1:N lists are there, 1:N (TPIR, rank-k)"),
    "ijbb": (("ijbb",), "IJB-B 1:1 (TAR@FAR)"),
    "tinyface": (("tinyface",), "TinyFace 1:N: rank-1/5/20"),
    "rfw": (tuple(f"rfw_{g.lower()}" for g in RFW_GROUPS), "RFW: African, Asian, Caucasian, Indian (fairness)"),
    "toy-rfw": (tuple(f"toy_rfw_{g}" for g in TOY_RFW_GROUPS), "toyfaces mirror of RFW: four skin-tone groups"),
    "toy-twins": (("toy_twins",), "toyfaces mirror of ND-Twins: look-alike twin identities as impostors"),
    "toy-protocols": (("toy_ijb", "toy_ijb_1n", "toy_tinyface") + tuple(f"toy_rfw_{g}" for g in TOY_RFW_GROUPS)
                      + ("toy_twins",), "the toyfaces mirrors of IJB-C 1:1 and 1:N, TinyFace, RFW and ND-Twins"),
    **{name: ((name,), BENCHMARKS[name].description + (f" ({BENCHMARKS[name].files[0]})"
                                                         if BENCHMARKS[name].protocol == "verification" else ""))
       for name in BENCHMARKS if name.startswith("toy_")},
}


def build_suite(name: str) -> Suite:
    names, description = SUITES[name]
    return Suite(name=name, benchmarks=tuple(BENCHMARKS[n] for n in names), description=description)
