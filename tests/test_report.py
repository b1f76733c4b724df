"""HTML reports: parameters, self-contained pages, and charts that draw in a real browser
with the network blocked."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import altair as alt
import nbformat
import polars as pl
import pytest

import latkit
from latkit import charts, report

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


# -- pages need no network ---------------------------------------------------------------


@pytest.mark.parametrize(
    "html",
    [
        '<script src="https://cdn.example/require.js"></script>',
        "<script src='//cdn.example/x.js'></script>",
        '<link rel="stylesheet" href="http://fonts.example/a.css">',
        '<img src="https://example.org/chart.png">',
        '<img srcset="a.png 1x, https://example.org/b.png 2x">',
        "<style>@font-face { src: url(https://fonts.example/f.woff2) }</style>",
        "<style>@import 'https://example.org/x.css';</style>",
        '<div style="background: url(\'http://example.org/bg.png\')"></div>',
        '<script type="module">const m = await import("https://cdn.example/m.mjs")</script>',
        '<iframe src="https://example.org/"></iframe>',
    ],
)
def test_offline_problems_finds_what_a_page_would_fetch(html):
    assert len(report.offline_problems(f"<html><body>{html}</body></html>")) == 1


def test_offline_problems_ignores_links_namespaces_and_embedded_data():
    page = """<html><head><style>a { color: red } /* see https://example.org */</style></head>
    <body><a href="https://example.org/docs">docs</a>
    <img src="data:image/svg+xml;base64,PHN2Zy8+"><img src="chart.svg">
    <svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>
    <script>const u = "https://example.org"; // a string, not a load</script></body></html>"""
    assert report.offline_problems(page) == []


def chart_notebook() -> nbformat.NotebookNode:
    """A notebook whose one output is a chart as ``charts.setup()`` renders it."""
    charts.setup()
    data = pl.DataFrame({"x": [1, 2, 3], "y": [3, 1, 2]})
    chart = alt.Chart(data).mark_bar().encode(x="x", y="y")
    bundle, metadata = alt.renderers.get()(chart.to_dict())
    cell = nbformat.v4.new_code_cell("chart")
    cell.outputs = [nbformat.v4.new_output("display_data", data=bundle, metadata=metadata)]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A chart\n\nSome $x$ text."), cell]
    return nb


def test_a_page_embeds_the_chart_as_svg_and_loads_nothing(tmp_path):
    page = report.to_html(chart_notebook(), "A chart")
    assert report.offline_problems(page) == []
    assert "<title>A chart</title>" in page
    assert page.count('data-mime-type="image/svg+xml"') == 1
    assert 'alt="A chart"' in page
    assert 'src="data:image/svg+xml;base64,' in page
    assert "require.js" not in page and "MathJax.js" not in page and "mermaid" not in page
    assert "Altair chart" not in page  # the text stand-in is not what shows
    assert ">chart<" not in page  # code hidden


# -- parameters --------------------------------------------------------------------------


def curated() -> list[Path]:
    return report.notebooks(ROOT / "notebooks")


@pytest.mark.parametrize("notebook", curated(), ids=lambda p: p.stem)
def test_each_curated_notebook_reads_a_workbook_and_nothing_else(notebook, tmp_path):
    from papermill.inspection import inspect_notebook

    declared = inspect_notebook(str(notebook))
    assert {"workbook", "sample_data"} <= set(declared), "its parameters cell lacks these"
    params = report.parameters_for(notebook, tmp_path / "case.duckdb", {"target_ms": 50.0})
    assert params["workbook"] == str(tmp_path / "case.duckdb")
    assert params["sample_data"] is False
    for name, info in declared.items():
        if "sample_data/" in info["default"]:
            assert params[name] is None, name
    assert ("target_ms" in params) == ("target_ms" in declared)
    assert set(params) <= set(declared)


def test_parameters_for_a_notebook_without_a_workbook_parameter(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('traces = "x.pb"')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Py", "language": "python"}
    path = tmp_path / "01_x.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(report.ReportError, match="no `workbook` parameter"):
        report.parameters_for(path, tmp_path / "case.duckdb")


def test_notebooks_lists_the_curated_ones_in_order(tmp_path):
    for name in ("02_b.ipynb", "01_a.ipynb", "scratch.ipynb"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in report.notebooks(tmp_path)] == ["01_a.ipynb", "02_b.ipynb"]
    with pytest.raises(report.ReportError, match="no such notebooks folder"):
        report.notebooks(tmp_path / "nothing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(report.ReportError, match="no curated notebooks"):
        report.notebooks(empty)


# -- the real report in a real browser, offline ------------------------------------------


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[report.Page], Path]:
    """The report of every curated notebook on the sample data (those that cannot read a
    workbook fail test_each_curated_notebook_reads_a_workbook_and_nothing_else instead)."""
    from papermill.inspection import inspect_notebook

    where = tmp_path_factory.mktemp("report")
    db = where / "case.duckdb"
    with latkit.open(db) as wb:
        wb.load(SAMPLE / "traces", SAMPLE / "postgres" / "postgresql.csv.gz")
    readable = [p for p in curated() if "workbook" in inspect_notebook(str(p))]
    pages = report.build(db, where / "html", readable)
    return pages, where / "html"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium from the Debian packages, with every network request refused."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common import selenium_manager
    except ImportError:
        missing.append("the selenium package")
    if missing:
        message = (
            f"needs {', '.join(missing)}: apt-get install chromium chromium-driver "
            f"(Debian), pip install selenium"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)

    def no_downloads(*args: object, **kwargs: object) -> None:
        raise AssertionError("Selenium Manager must not run: it downloads browsers and drivers")

    patch = pytest.MonkeyPatch()
    patch.setattr(selenium_manager.SeleniumManager, "binary_paths", no_downloads)
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={profile}",
        # Every request goes to a proxy that is not there, loopback included.
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        patch.undo()
        shutil.rmtree(profile, ignore_errors=True)


#: For each chart on the page: did the image decode, how many pixels are not white once
#: drawn, and how many marks its SVG holds (children of Vega's ``role-mark`` groups).
_CHARTS_JS = """
const done = arguments[arguments.length - 1];
const images = [...document.querySelectorAll('[data-mime-type="image/svg+xml"] img')];
Promise.all(images.map(img => img.decode().then(() => true, () => false))).then(decoded => {
  done(images.map((img, i) => {
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const ctx = canvas.getContext("2d");
    let inked = 0;
    if (decoded[i] && img.naturalWidth > 0) {
      ctx.drawImage(img, 0, 0);
      const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      for (let k = 0; k < px.length; k += 4) {
        if (px[k + 3] > 0 && (px[k] < 240 || px[k + 1] < 240 || px[k + 2] < 240)) inked++;
      }
    }
    const svg = atob(img.src.split(",", 2)[1]);
    const doc = new DOMParser().parseFromString(svg, "image/svg+xml");
    return {
      decoded: decoded[i], width: img.naturalWidth, inked: inked,
      marks: doc.querySelectorAll(".role-mark > *").length,
    };
  }));
});
"""


@pytest.mark.notebooks
def test_every_chart_of_the_report_draws_in_chromium_offline(sample_report, browser):
    pages, folder = sample_report
    assert [p.error for p in pages] == [None] * len(pages)
    assert (folder / "index.html").exists()
    browser.set_script_timeout(60)
    drawn = {}
    for page in pages:
        html = page.html.read_text(encoding="utf-8")
        assert report.offline_problems(html) == []
        browser.get_log("performance")  # forget what came before this page
        browser.get(page.html.as_uri())
        assert browser.execute_script("return document.readyState") == "complete"
        found = browser.execute_async_script(_CHARTS_JS)
        drawn[page.notebook.stem] = found
        for chart in found:
            assert chart["decoded"] and chart["width"] > 0, (page.notebook.name, chart)
            assert chart["marks"] > 0, (page.notebook.name, chart)
            assert chart["inked"] > 1000, (page.notebook.name, chart)
        sources = [c.source for c in nbformat.read(page.notebook, as_version=4).cells]
        draws = any(re.search(r"charts\.(?!setup)\w+\(", s) for s in sources)
        assert bool(found) == draws, page.notebook.name
        # Nothing was even asked of the network (the proxy would have refused it anyway).
        requested = [
            json.loads(entry["message"])["message"]["params"]["request"]["url"]
            for entry in browser.get_log("performance")
            if '"Network.requestWillBeSent"' in entry["message"]
        ]
        assert page.html.as_uri() in requested
        assert [u for u in requested if u.startswith(("http:", "https:", "ws:", "wss:"))] == []
    assert sum(len(found) for found in drawn.values()) >= 5, drawn
