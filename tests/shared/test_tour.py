"""The tour report: a smoke tour in-process, its summary cards and section order, and the page
rendered in headless Chromium (Debian ``chromium``) with no console errors and every image decoded.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess

import pytest

from dlpde._registry import discover_studies
from dlpde.cli import main
from dlpde.shared import report
from dlpde.shared.studies import Study

TOUR = tuple(name for name, study in discover_studies().items() if study.in_tour)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "headless Chromium is not installed (Debian: apt-get install chromium)"

# Test-only probe appended to a copy of the page: after the load event it records how many images
# there are and how many failed to decode (the report itself carries no script).
_PROBE = """<script>window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  document.body.setAttribute('data-probe', 'images=' + images.length + ' broken=' + broken);
});</script>"""


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    out = tmp_path_factory.mktemp("tour")
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["tour", "--preset", "smoke", "--device", "cpu", "--out", str(out)])
    (folder,) = list(out.glob("tour-*"))
    return code, folder, printed.getvalue()


def test_every_thread_has_a_tour_study_with_a_headline():
    studies = discover_studies()
    assert {studies[name].thread for name in TOUR} == {"hjb", "symmetry", "meanfield", "ntk", "inverse"}
    for name in TOUR:
        assert studies[name].headline is not None, name


def test_smoke_tour_report_leads_with_cards(tour):
    code, folder, printed = tour
    assert code == 0, printed
    for name in TOUR:  # a progress line per study, the total at the end
        line = rf"\[\d+/{len(TOUR)}\] {re.escape(name)}: done in \d+ s wall, \d+ s CPU"
        assert re.search(line, printed), name
    assert re.search(rf"tour: {len(TOUR)} studies \(0 failed\) in \d+ s wall, \d+ s CPU", printed)
    page = (folder / "report.html").read_text()
    md = (folder / "report.md").read_text()
    summary, sections = page.index('id="summary"'), page.index('<h2 id="hjb-crossing"')
    cards = re.findall(r'<article class="card" id="card-([\w-]+)">(.*?)</article>', page, flags=re.S)
    assert sorted(c for c, _ in cards) == sorted(report.anchor(n) for n in TOUR)
    for anchor, body in cards:
        assert summary < page.index(f'id="card-{anchor}"') < sections
        assert 'src="data:image/png;base64,' in body, anchor  # its main figure, embedded
        assert f'href="#{anchor}"' in body and re.search(r'class="mark (pass|behind|n-a)"', body)
        assert "<table" in body and "Full preset:" in body and "Expected (quick):" in body
    # self-contained: no external scripts, styles, fonts or images
    assert not re.search(r"<script|<link|@import|url\(|(src|href)=\"(https?:)?//", page)
    # each study's title is a heading once, in HTML and Markdown; its section in reader order
    headings = re.findall(r"<h[1-6][^>]*>(.*?)</h[1-6]>", page)
    for name in TOUR:
        assert headings.count(name) == 1, (name, headings)
        assert len(re.findall(rf"^#+ {re.escape(name)}$", md, flags=re.M)) == 1
        start = page.index(f'<h2 id="{report.anchor(name)}"')
        end = min([page.index(f'<h2 id="{report.anchor(n)}"') for n in TOUR
                   if page.index(f'<h2 id="{report.anchor(n)}"') > start] or [len(page)])
        part = page[start:end]
        order = [part.index("Finding."), part.index("<figure>"), part.index("<details>"),
                 part.index("References")]
        assert order == sorted(order), name
        assert part.count("<details>") == 2  # configuration and all metrics, folded
    assert md.index("## Summary") < md.index('<a id="hjb-crossing"></a>')
    assert "(hjb.crossing/crossing_1d.png)" in md
    for name in TOUR:  # every per-study report.md has its title once
        text = (folder / name / "report.md").read_text()
        assert len(re.findall(rf"^# {re.escape(name)}$", text, flags=re.M)) == 1
        assert "<details><summary>All metrics" in text


def _chromium(path, tmp_path):
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
               "--virtual-time-budget=5000", "--dump-dom", path.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def _probed_copy(page: str, path):
    path.write_text(page.replace("</body>", _PROBE + "</body>"))
    return path


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_chromium_detects_console_errors_and_broken_images(tmp_path):
    """The browser check itself can fail: a page with a script error and a broken image is caught."""
    bad = ("<!doctype html><html><body><img src='data:image/png;base64,AAAA'><script>missing();</script>"
           "</body></html>")
    dom, console = _chromium(_probed_copy(bad, tmp_path / "bad.html"), tmp_path)
    assert 'data-probe="images=1 broken=1"' in dom
    assert any("missing is not defined" in line for line in console)


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_report_renders_in_chromium(tour, tmp_path):
    _, folder, _ = tour
    page = (folder / "report.html").read_text()
    dom, console = _chromium(_probed_copy(page, folder / "report-probe.html"), tmp_path)
    assert console == []  # no console messages at all: the page has no script of its own
    probe = re.search(r'data-probe="images=(\d+) broken=(\d+)"', dom)
    assert probe, dom[:500]
    images, broken = map(int, probe.groups())
    assert broken == 0 and images >= 2 * len(TOUR)  # a card figure and at least one section figure each
    assert len(re.findall(r'<article class="card"', dom)) == len(TOUR)


# ---- the pieces, against hand-computed values ------------------------------------------------


def test_format_number_rounds_to_meaningful_digits():
    cases = {0.0: "0", 1.23456e-5: "1.23e-5", 0.0123456: "0.0123", 12.3456: "12.3", 1853.1: "1853",
             -46.2345: "-46.2", 2.5e7: "2.5e7", 7: "7", True: "yes", None: "n/a", math.nan: "n/a",
             math.inf: "inf"}
    for value, text in cases.items():
        assert report.format_number(value) == text, value


def test_metric_lookup_is_robust():
    metrics = {"d1": {"dgm": {"u_near": 0.25}}, "noiseless.ALISTA.final_nmse_db": -30.0,
               "flag": True, "bad": "nan", "text": "x"}
    assert report.metric(metrics, "d1", "dgm", "u_near") == 0.25
    assert report.metric(metrics, "noiseless", "ALISTA", "final_nmse_db") == -30.0
    for path in (("d1", "dgm", "missing"), ("d2",), ("flag",), ("bad",), ("text",),
                 ("d1", "dgm", "u_near", "x")):
        assert report.metric(metrics, *path) is None, path
    assert report.metric(None, "a") is None


def _study(headline):
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Config:
        seed: int = 0
        device: str = "cpu"

    return Study(name="example.card", description="A test study.", config=Config,
                 presets={p: Config() for p in ("smoke", "quick", "full")}, run=lambda c, r: {},
                 headline=headline)


def test_headline_marks_and_fallbacks():
    def good(m):
        x = report.metric(m, "x")
        return {"sentence": "It works.", "figure": "b.png",
                "numbers": [report.number("x", x, "dB", "< 1", report.below(x, 1)),
                            report.number("peer", 3.0)]}

    study = _study(good)
    card = report.study_card(study, {"x": 0.5}, [("a.png", ""), ("b.png", "")], prefix="s/")
    assert (card.mark, card.figure, card.sentence) == ("pass", "s/b.png", "It works.")
    assert report.study_card(study, {"x": 2.0}, []).mark == "behind"
    missing = report.study_card(study, {}, [("a.png", "")])
    assert missing.mark == "n/a" and missing.numbers[0]["value"] is None and missing.figure == "a.png"
    broken = report.headline_of(_study(lambda m: m["renamed"]), {})
    assert broken["sentence"] == "A test study." and "KeyError" in broken["note"]
    with pytest.raises(TypeError):
        _study("not callable")


def test_markdown_and_html_from_one_source(tmp_path):
    blocks = [report.Heading(1, "Title", "title"), report.Text("Some **bold** and `code` | x."),
              report.Table(["a", "b"], [["1", "x|y"]]),
              report.Details("Folded", [report.Table(["k", "v"], [["width", "4"]])]),
              report.Figure("missing.png", "a caption")]
    md = report.to_markdown(blocks)
    assert "# Title" in md and "| 1 | x\\|y |" in md and "<details><summary>Folded</summary>" in md
    assert "![a caption](missing.png)" in md
    page = report.to_html(blocks, tmp_path)
    assert '<h1 id="title">Title</h1>' in page and "<strong>bold</strong>" in page
    assert "<code>code</code>" in page and "<td>x|y</td>" in page and "<summary>Folded</summary>" in page
    assert "figure not found: missing.png" in page  # no empty data URI for a missing file
    # a Markdown fragment with a table (the form studies write) becomes an HTML table
    fragment = report.markdown_to_html("| m | v |\n|---|---|\n| a | 1.5 |\n\ntext", tmp_path)
    assert "<th>m</th>" in fragment and '<td class="num">1.5</td>' in fragment and "<p>text</p>" in fragment


def test_failed_study_gets_a_failed_card_and_section(tmp_path):
    study = _study(lambda m: {"sentence": "never shown"})
    ok = report.TourEntry(study, 2.0, 1.5, metrics={}, config={"seed": 0}, folder="f")
    failed = report.TourEntry(study, 3.0, 2.5, error="RuntimeError: boom")
    blocks = report.tour_blocks([ok, failed], "quick", 0, 5.0, 4.0, planned=2, missing_threads=["ntk"])
    md = report.to_markdown(blocks)
    assert "FAILED" in md and "RuntimeError: boom" in md and "Threads with no study yet: ntk." in md
    assert "2 studies in 5 s wall, 4 s CPU" in md and "Marks: 1 not judged, 1 failed." in md
    page = report.html_page("t", report.to_html(blocks, tmp_path))
    assert page.count('class="mark failed"') == 1 and page.count('class="mark n-a"') == 1


def test_study_tables_lose_padded_exponents():
    assert report._tidy_exponents("| 4.59e+00 | 1.61e-02 | 2e-2 | a1.5e-03 | 1.2e+10 |") == \
        "| 4.59 | 1.61e-2 | 2e-2 | a1.5e-03 | 1.2e10 |"
