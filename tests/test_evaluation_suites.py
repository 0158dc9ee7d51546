"""Built-in suites and their file names; user suites from TOML and their one-line errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from facebench.cli import create_cli
from facebench.errors import ConfigError, FacebenchError
from facebench.evaluation.suites import get_suite, known_benchmarks, suite_from_toml


def test_builtin_suites_and_usual_file_names(tmp_path):
    five = get_suite("five")
    assert [b.name for b in five.benchmarks] == ["lfw", "cfp_fp", "cplfw", "agedb_30", "calfw"]
    assert [b.label for b in five.benchmarks] == ["LFW", "CFP-FP", "CPLFW", "AgeDB", "CALFW"]
    assert five.benchmarks[0].files[:2] == ("lfw.bin", "lfw.xz")
    hadrian = get_suite("hadrian").benchmarks[0]
    assert "hadrian_even.bin" in hadrian.files
    for name in ("eclipse", "sllfw", "doppelver", "toy-five", "toy_lfw", "toy_cfp_fp", "toy_cplfw", "toy_agedb_30",
                 "toy_calfw", "toy_hadrian", "toy_eclipse", "toy-all", "all"):
        assert get_suite(name).benchmarks
    # every toy benchmark is a suite of its own, the newer protocols included (one file to debug at a time)
    for name, protocol in (("toy_ijb", "ijb"), ("toy_ijb_1n", "ijb"), ("toy_tinyface", "tinyface-1n"),
                           ("toy_rfw_tone3", "verification")):
        assert [(b.name, b.protocol) for b in get_suite(name).benchmarks] == [(name, protocol)]
    (tmp_path / "lfw.bin").write_bytes(b"")
    (tmp_path / "hadrian_even.xz").write_bytes(b"")
    found, missing = get_suite("all").locate(tmp_path)
    assert found == {"lfw": tmp_path / "lfw.bin", "hadrian": tmp_path / "hadrian_even.xz"}
    assert [b.name for b in missing] == ["cfp_fp", "cplfw", "agedb_30", "calfw", "eclipse", "sllfw", "doppelver",
                                         "twins"]


def test_suites_are_listed_as_evaluators():
    result = CliRunner().invoke(create_cli(), ["plugins", "--kind", "evaluator", "--json"])
    names = {row["name"] for row in json.loads(result.output)}
    assert {"five", "toy-five", "separability", "pair-distributions", "class-noise", "leakage", "fid"} <= names


@pytest.mark.parametrize("text, message", [
    ('benchmarks = ["lfw", "nope"]', "unknown benchmark 'nope'"),
    ('colour = "red"\nbenchmarks = ["lfw"]', "unknown key 'colour'"),
    ('name = "x"', "the suite lists no benchmarks"),
    ('benchmarks = ["lfw"]\n[[benchmark]]\nname = "lfw"', "benchmark 'lfw' is listed twice"),
    ('[[benchmark]]\nlabel = "A"', "every benchmark needs a non-empty 'name'"),
    ('[[benchmark]]\nname = "a"\nfiles = []', "'files' must be a non-empty list"),
    ('benchmarks = [', "invalid TOML"),
])
def test_bad_suite_files_are_one_line_config_errors(tmp_path, text, message):
    path = tmp_path / "suite.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        suite_from_toml(path, known_benchmarks())
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_toml_benchmark_inherits_builtin_files_and_missing_file_errors(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[[benchmark]]\nname = "cfp_fp"\n\n[[benchmark]]\nname = "office"\n')
    suite = suite_from_toml(path, known_benchmarks())
    assert suite.name == "mine"
    assert suite.benchmarks[0].label == "CFP-FP" and suite.benchmarks[0].files[0] == "cfp_fp.bin"
    assert suite.benchmarks[1].files == ("office.bin", "office.xz", "office")
    with pytest.raises(FacebenchError, match="nothere.toml: suite file not found"):
        get_suite(str(tmp_path / "nothere.toml"))
    with pytest.raises(FacebenchError, match="evaluator 'separability' is not a verification suite"):
        get_suite("separability")
