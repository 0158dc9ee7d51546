"""facebench report: the HTML is parsed back (tables, images, escaping) and checked against the inputs."""

from __future__ import annotations

import base64
import html
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TOY_PACKS, analysis_run, dataset_run, eval_run
from facebench_plugins.reports.published import FIVE, canonical_benchmark, published_tables
from facebench_plugins.reports.sections import scores_eer
from PIL import Image

from facebench.cli import create_cli
from facebench.report import render_html, write_report
from facebench.report.loading import load_runs

EVIL = '<script>alert("pwned")</script> & co'


class ReportParser(HTMLParser):
    """Collects tables (rows of (text, class) cells with the row's class), images, links and scripts."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: list[list[tuple[str, list[tuple[str, str]]]]] = []
        self.images: list[dict[str, str]] = []
        self.urls: list[str] = []
        self.scripts = 0
        self.title = ""
        self._row = None
        self._cell = None
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = (a.get("class", ""), [])
        elif tag in ("td", "th") and self._row is not None:
            self._cell = [a.get("class", ""), ""]
        elif tag == "img":
            self.images.append(a)
        elif tag == "script":
            self.scripts += 1
        elif tag == "title":
            self._in_title = True
        for key in ("src", "href"):
            if key in a:
                self.urls.append(a[key])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row[1].append((self._cell[1].strip(), self._cell[0]))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data
        if self._in_title:
            self.title += data


def parse(text: str) -> ReportParser:
    p = ReportParser()
    p.feed(text)
    return p


REAL = dict(zip(TOY_PACKS, [0.955, 0.851, 0.824, 0.883, 0.902]))
V2F = dict(zip(TOY_PACKS, [0.80, 0.71, 0.66, 0.75, 0.77]))


@pytest.fixture()
def report_runs(tmp_path):
    png = io.BytesIO()
    Image.new("RGB", (60, 30), (10, 200, 30)).save(png, "PNG")
    return [
        eval_run(tmp_path, "eval-real", "toyfaces-real", REAL, images=6000, identities=300),
        eval_run(tmp_path, "eval-v2f", EVIL, V2F, fraction=False, images=4000, identities=200),
        analysis_run(tmp_path, "an-real", "toyfaces-real", 0, nested=True),
        analysis_run(tmp_path, "an-v2f", EVIL, 1),
        dataset_run(tmp_path, "ds-v2f", EVIL, "vec2face_tiny", png.getvalue()),
    ]


def _row(table, first_cell_startswith):
    return next(cells for _, cells in table if cells and cells[0][0].startswith(first_cell_startswith))


def test_summary_table_has_measured_rows_beside_published(report_runs, tmp_path):
    out = write_report(report_runs, tmp_path / "reports" / "r.html", title="toy")
    doc = parse(out.read_text())
    five = doc.tables[0]
    header = [c for c, _ in five[0][1]]
    assert header == ["training set", "test data / images", "LFW", "CFP-FP", "CPLFW", "AgeDB", "CALFW", "Avg.",
                      "FR recipe"]
    real = _row(five, "toyfaces-real")
    assert "measured here" in real[0][0] and real[1][0] == "toyfaces packs"
    # values are the fractions of results.json as percent, the average an independent mean
    values = [float(c.split()[0]) for c, _ in real[2:7]]
    assert values == pytest.approx([v * 100 for v in REAL.values()], abs=0.005)
    assert float(real[7][0].split()[0]) == pytest.approx(np.mean(list(REAL.values())) * 100, abs=0.005)
    # a run storing percent gives the same numbers as one storing fractions
    v2f = _row(five, "<script>")
    assert [float(c.split()[0]) for c, _ in v2f[2:7]] == pytest.approx([v * 100 for v in V2F.values()], abs=0.005)
    # the better measured dataset is the marked best of each measured column, the other is not
    assert all("best" in cls and "\u25b2" in text for text, cls in real[2:8])
    assert not any("best" in cls for _, cls in v2f[2:8])
    # published rows carry the paper's numbers and the published badge
    hsface = _row(five, "HSFace10K (Vec2Face)")
    assert "published" in hsface[0][0]
    assert [float(c.split()[0]) for c, _ in hsface[2:8]] == [98.87, 88.97, 85.47, 93.12, 93.57, 92.00]
    row_classes = {cls for cls, _ in five}
    assert {"measured", "published", "group"} <= row_classes
    # Table 6 appears as its own table
    other = next(t for t in doc.tables if any(c[0] == "Hadrian" for _, cells in t for c in cells))
    assert float(_row(other, "HSFace300K")[2][0].split()[0]) == 81.55


def test_every_image_is_an_embedded_png_and_nothing_is_fetched(report_runs, tmp_path):
    text = write_report(report_runs, tmp_path / "r.html").read_text()
    doc = parse(text)
    # separability 1 + similarity 2 + noise 2 + scaling 1 + sample grid 1
    assert len(doc.images) == 7
    for img in doc.images:
        assert img["src"].startswith("data:image/png;base64,")
        decoded = Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1])))
        decoded.load()
        assert decoded.width > 50 and decoded.height > 20
        assert img.get("alt")
    assert doc.scripts == 0
    assert all(u.startswith(("data:", "#")) for u in doc.urls)
    assert "<link" not in text and "@import" not in text and "url(" not in text


def test_user_strings_are_escaped_everywhere(report_runs, tmp_path):
    text = write_report(report_runs, tmp_path / "r.html", title=EVIL).read_text()
    assert "<script>" not in text
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &amp; co" in text
    doc = parse(text)
    assert doc.scripts == 0
    assert doc.title == EVIL
    cards = [c for t in doc.tables for _, cells in t for c in cells]
    assert any(text_.startswith(EVIL) for text_, _ in cards)


def test_provenance_of_every_run_is_shown(report_runs, tmp_path):
    text = write_report(report_runs, tmp_path / "r.html").read_text()
    for run in report_runs[:4]:
        prov = json.loads((run / "provenance.json").read_text())
        assert prov["created"] in text
        assert html.escape(" ".join(prov["command"])) in text
    assert "suite = &quot;toy-five&quot;" in text  # config.toml, escaped, inside <details>


def test_sections_can_be_chosen(report_runs, tmp_path):
    text = render_html(load_runs(report_runs), sections=["provenance"])
    assert 'id="sec-provenance"' in text and 'id="sec-summary"' not in text


def test_cli_writes_report_and_prints_path(report_runs, tmp_path):
    out = tmp_path / "reports" / "toy.html"
    result = CliRunner().invoke(create_cli(), ["report", *map(str, report_runs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(out)
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_cli_errors_name_the_file(tmp_path):
    cli = create_cli()
    missing = tmp_path / "nope"
    r = CliRunner().invoke(cli, ["report", str(missing), "--out", str(tmp_path / "r.html")])
    assert r.exit_code == 2 and f"error: {missing}: run directory not found" in r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(cli, ["report", str(empty), "--out", str(tmp_path / "r.html")])
    assert r.exit_code == 2 and f"{empty}: no result files found" in r.output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text('[{"benchmark": "lfw", "accuracy": 0.9},')
    r = CliRunner().invoke(cli, ["report", str(broken), "--out", str(tmp_path / "r.html")])
    assert r.exit_code == 2 and f"{broken / 'results.json'}: invalid JSON" in r.output
    assert not (tmp_path / "r.html").exists()
    (broken / "results.json").write_text('[{"benchmark": "lfw", "accuracy": "high"}]')
    r = CliRunner().invoke(cli, ["report", str(broken), "--out", str(tmp_path / "r.html")])
    assert r.exit_code == 2 and f"{broken / 'results.json'}: accuracy must be a number in [0, 100]" in r.output
    arr = tmp_path / "arr"
    (arr / "analysis").mkdir(parents=True)
    (arr / "analysis" / "summary.json").write_text("{}")
    np.save(arr / "analysis" / "genuine.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(arr / "analysis" / "impostor.npy", np.zeros(3))
    r = CliRunner().invoke(cli, ["report", str(arr), "--out", str(tmp_path / "r.html")])
    assert r.exit_code == 2 and f"{arr / 'analysis' / 'genuine.npy'}: cannot read array" in r.output


def test_eer_fallback_is_where_false_rejects_meet_false_accepts():
    rng = np.random.default_rng(3)
    gen, imp = rng.normal(0.5, 0.15, 400), rng.normal(0.1, 0.15, 900)
    best = None
    for t in np.unique(np.concatenate([gen, imp])):  # plain loop: FRR = genuine < t, FAR = impostor >= t
        frr, far = np.mean(gen < t), np.mean(imp >= t)
        if best is None or abs(frr - far) < best[0]:
            best = (abs(frr - far), (frr + far) / 2)
    # the ROC interpolates between the two thresholds where the rates cross; a sweep takes the nearer one
    assert scores_eer(gen, imp) == pytest.approx(best[1], abs=1 / 400)
    assert scores_eer(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 0.0


def test_published_averages_match_their_breakdown():
    for table in published_tables():
        for row in table.rows:
            if "avg" in row and all(k in row for k in FIVE) and "note" not in row:
                assert np.mean([row[k] for k in FIVE]) == pytest.approx(row["avg"], abs=0.011), row["dataset"]
    assert canonical_benchmark("toy_agedb_30") == "agedb_30" and canonical_benchmark("CFP-FP") == "cfp_fp"


def test_third_party_section_is_rendered(report_runs, monkeypatch):
    from facebench import hookimpl
    from facebench.pluginmanager import build_plugin_set
    from facebench.report import render

    class Extra:
        @hookimpl
        def register_report_sections(self, register):
            register("leak", lambda runs: [f"<p>{len(runs)} runs checked</p>"], title="Leakage <check>", order=5)

    plugin_set = build_plugin_set(extra_plugins={"extra": Extra()})
    monkeypatch.setattr(render, "registry", plugin_set.registry)
    text = render.render_html(load_runs(report_runs))
    assert "<p>5 runs checked</p>" in text and "Leakage &lt;check&gt;" in text
    assert text.index('id="sec-leak"') < text.index('id="sec-summary"')


def _chromium() -> str | None:
    return next((p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))), None)


@pytest.mark.skipif(_chromium() is None, reason="no Chromium installed")
def test_report_renders_headless_and_is_not_blank(report_runs, tmp_path):
    out = write_report(report_runs, tmp_path / "r.html")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1200,1600", f"--screenshot={shot}", out.resolve().as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (1600, 1200)
    assert (pixels < 200).mean() > 0.02  # text, table borders and plots, not an empty white page
    assert pixels.std() > 20


def test_labels_rename_a_runs_rows_and_bad_labels_are_errors(report_runs, tmp_path):
    out = tmp_path / "r.html"
    r = CliRunner().invoke(create_cli(), ["report", *map(str, report_runs), "--out", str(out),
                                          "--label", f"{report_runs[0]}=real <toy>"])
    assert r.exit_code == 0, r.output
    five = parse(out.read_text()).tables[0]
    assert _row(five, "real <toy>")[1][0] == "toyfaces packs"
    assert not any(cells and cells[0][0].startswith("toyfaces-real") for _, cells in five)
    r = CliRunner().invoke(create_cli(), ["report", str(report_runs[0]), "--out", str(out), "--label", "nolabel"])
    assert r.exit_code == 2 and "--label expects RUN=NAME, got 'nolabel'" in r.output
    r = CliRunner().invoke(create_cli(), ["report", str(report_runs[0]), "--out", str(out),
                                          "--label", f"{tmp_path}/other=x"])
    assert r.exit_code == 2 and "not among the reported runs" in r.output


def test_analysis_summaries_are_read_flat_and_nested(report_runs, tmp_path):
    text = write_report(report_runs, tmp_path / "r.html").read_text()
    doc = parse(text)
    summary = next(t for t in doc.tables if t[0][1] and t[0][1][0][0] == "dataset")
    header = [c for c, _ in summary[0][1]]
    rows = {cells[0][0]: dict(zip(header, (c for c, _ in cells))) for _, cells in summary[1:]}
    # nested (as facebench analyze writes it; the dataset given as a path names the row by its last part)
    assert rows["toyfaces-real"]["EER %"] == "4.20" and rows["toyfaces-real"]["intra-class noise %"] == "12.50"
    assert rows["toyfaces-real"]["separable identities %"] == "90.00"
    assert "EER 4.20% (as stated in analysis/summary.json, tie-safe ROC)" in text
    # flat
    assert rows[EVIL]["EER %"] == "3.10" and rows[EVIL]["intra-class noise %"] == "2.00"
    assert "cosine 0.35" in text  # the threshold stated by the first run labels Fig. 5


def test_card_shows_a_grid_of_the_training_set_named_by_model_json(tmp_path):
    from facebench.pluginmanager import registry

    data = tmp_path / "train"
    with registry("format").create("folder").writer(data) as writer:
        for label in range(3):
            for k in range(2):
                png = io.BytesIO()
                Image.new("RGB", (20, 20), (80 * label, 40 * k, 200)).save(png, "PNG")
                writer.add(png.getvalue(), label)
    run = tmp_path / "fr"
    run.mkdir()
    (run / "model.json").write_text(json.dumps({"backbone": "tiny", "recipe": "tiny-arcface", "num_classes": 3,
                                                "num_images": 6, "dataset": {"path": str(data)}}))
    # the training set lies outside the run folder given: not embedded, and the warning says so
    from facebench.report import build_report

    out, findings = build_report([run], tmp_path / "r.html", sections=["datasets"])
    assert parse(out.read_text()).images == []
    assert [w for f in findings for w in f.warnings if "not embedded" in w] == [
        f"{run}: sample images of dataset '{tmp_path.name}/train' not embedded: {data} is outside the folders given "
        f"(add --images-from {data} to embed it)"]
    # named explicitly, it is
    doc = parse(write_report([run], tmp_path / "r.html", sections=["datasets"], images_from=[data]).read_text())
    assert len(doc.images) == 1
    grid = Image.open(io.BytesIO(base64.b64decode(doc.images[0]["src"].split(",", 1)[1]))).convert("RGB")
    # data grid's contact sheet: 3 identities in rows, 2 images each, cells of 56 px with 2 px gaps
    assert grid.size == (2 + 2 * 58, 2 + 3 * 58)

    def centre(row, col):
        return grid.getpixel((2 + col * 58 + 28, 2 + row * 58 + 28))

    assert centre(1, 0) == (80, 0, 200) and centre(2, 1) == (160, 40, 200)


def test_rows_and_cards_of_an_untrained_generator_are_marked_as_pipeline_checks(report_runs, tmp_path):
    a2f = dict(zip(TOY_PACKS, [0.52, 0.49, 0.51, 0.50, 0.48]))
    gen_run = dataset_run(tmp_path, "ds-a2f", "arc2face_tiny", "arc2face_tiny")
    info = json.loads((gen_run / "dataset.json").read_text())
    info["generator_info"] = {"untrained": True, "pipeline_check": True,
                              "sampler": {"scheduler": "dpmsolver++", "steps": 4, "guidance": 3.0}}
    (gen_run / "dataset.json").write_text(json.dumps(info))
    runs = [*report_runs, eval_run(tmp_path, "eval-a2f", "arc2face_tiny", a2f), gen_run]
    text = render_html(load_runs(runs))
    doc = parse(text)
    summary = doc.tables[0]
    marked = [cells[0][0] for cls, cells in summary if cls == "measured" and "pipeline check" in cells[0][0]]
    assert marked == ["arc2face_tiny [pipeline check: untrained generator]measured here"]
    assert not any("pipeline check" in cells[0][0] for cls, cells in summary if cls == "measured"
                   and not cells[0][0].startswith("arc2face_tiny"))
    assert "dataset generated by an untrained (random-weight) generator" in text
    # the card says it, and shows the sampler the dataset was made with
    card = text[text.index("<h3>arc2face_tiny</h3>"):]
    card = card[:card.index("</div>")]
    assert "pipeline check: untrained generator: random weights, a pipeline check, not a result" in html.unescape(card)
    assert "scheduler=dpmsolver++, steps=4, guidance=3.0" in card
    # without an untrained dataset the note is absent
    assert "untrained (random-weight)" not in render_html(load_runs(report_runs))
