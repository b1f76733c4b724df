"""HTML reports: the curated notebooks, run headless against one workbook.

Each notebook in ``notebooks/`` whose name starts with two digits (``01_latency_budget``) is
run with papermill, its parameters set so that it reads the workbook instead of loading
files (``workbook=<path>``, every data path that names the sample data set to ``None``,
``sample_data=False`` so that no sample-data checkpoint runs), then converted to one HTML
page with the code hidden. A page needs no network: nbconvert's CDN scripts (require.js,
MathJax, mermaid) are left out of the template, images are embedded, and each chart
appears as the SVG that ``charts.setup()`` stored beside its Vega-Lite spec (nbconvert
shows ``image/svg+xml`` and ignores the Vega-Lite mime type). ``offline_problems`` checks a
page for anything it would still fetch.

>>> from latkit import report
>>> pages = report.build("case.duckdb", "report/")      # doctest: +SKIP
>>> [p.html.name for p in pages]                         # doctest: +SKIP
['00_tour.html', '01_latency_budget.html', 'index.html' ...]
"""

from __future__ import annotations

import html
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = [
    "NOTEBOOKS",
    "Page",
    "ReportError",
    "build",
    "notebooks",
    "offline_problems",
    "parameters_for",
    "run",
    "to_html",
]

#: Where the curated notebooks live in a source checkout.
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

#: The lab template without the scripts it would fetch from a CDN. Charts are SVG images and
#: the curated notebooks hold no LaTeX and no mermaid diagrams, so none of them is needed.
_TEMPLATE = """\
{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{% block data_svg scoped -%}
<div class="jp-RenderedSVG jp-OutputArea-output {{ extra_class }}" data-mime-type="image/svg+xml">
<img alt="{{ output.metadata.get('latkit_alt', 'A chart') | escape_html }}"
 src="data:image/svg+xml;base64,{{ output.data['image/svg+xml'] | text_base64 | escape_html }}">
</div>
{%- endblock data_svg %}
"""

#: Tags and the attribute through which each loads something.
_LOADING_ATTRIBUTES = {
    "script": ("src",),
    "link": ("href",),
    "img": ("src", "srcset"),
    "iframe": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "source": ("src", "srcset"),
    "audio": ("src",),
    "video": ("src", "poster"),
    "track": ("src",),
}

_REMOTE = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)
_CSS_REMOTE = re.compile(r"""(url\(\s*['"]?|@import\s+['"])\s*(https?:)?//""", re.IGNORECASE)
_JS_REMOTE = re.compile(r"""import\(\s*['"](https?:)?//""", re.IGNORECASE)


class ReportError(Exception):
    """A report that cannot be made as asked (no notebooks, an unknown parameter, ...)."""


@dataclass
class Page:
    """One page of a report: the notebook it came from and what running it did."""

    notebook: Path
    title: str
    html: Path
    seconds: float
    #: None when every cell ran; else where and why the run stopped ("In [7]: KeyError: ...")
    error: str | None = None


def notebooks(folder: str | Path | None = None) -> list[Path]:
    """The curated notebooks in ``folder`` (default: the checkout's ``notebooks/``), in
    reading order: files named ``NN_*.ipynb``."""
    where = Path(folder) if folder is not None else NOTEBOOKS
    if not where.is_dir():
        raise ReportError(f"{where}: no such notebooks folder; give one with --notebooks DIR")
    found = sorted(where.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise ReportError(f"{where}: no curated notebooks (NN_name.ipynb) in this folder")
    return found


def parameters_for(
    notebook: str | Path, workbook: str | Path, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The papermill parameters that make ``notebook`` read ``workbook`` and nothing else.

    Every parameter whose default names the sample data becomes ``None``; ``workbook`` is the
    workbook's absolute path; ``sample_data`` is ``False``; ``overrides`` that the notebook
    declares are applied last (others are left out, so papermill has nothing to warn about).
    """
    declared = _declared(notebook)
    if "workbook" not in declared:
        raise ReportError(
            f"{notebook}: its parameters cell (tagged `parameters`) has no `workbook` "
            f"parameter, so it cannot be pointed at a workbook"
        )
    params: dict[str, Any] = {
        name: None
        for name, info in declared.items()
        if "sample_data/" in str(info.get("default") or "")
    }
    params["workbook"] = str(Path(workbook).resolve())
    if "sample_data" in declared:
        params["sample_data"] = False
    params.update({k: v for k, v in (overrides or {}).items() if k in declared})
    return params


def run(
    notebook: str | Path,
    output: str | Path,
    parameters: Mapping[str, Any],
    timeout: float | None = None,
) -> tuple[NotebookNode, str | None]:
    """Run ``notebook`` with papermill into ``output`` (in the notebook's own folder, so its
    relative paths hold). Returns the executed notebook and None, or, when a cell failed,
    what papermill saved up to the failure and a one-line account of the error
    ("In [7]: KeyError: ..." names the cell by its execution count, as papermill does)."""
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook, output = Path(notebook), Path(output)
    try:
        nb = papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=dict(parameters),
            cwd=str(notebook.parent),
            progress_bar=False,
            log_output=False,
            execution_timeout=timeout,
            # The kernel's own log (its unencrypted loopback TCP, the interrupt papermill sends
            # after a failed cell) is noise on the terminal of whoever makes the report.
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
        )
        return nb, None
    except PapermillExecutionError as e:
        error = f"In [{e.exec_count}]: {e.ename}: {_first_line(e.evalue)}"
    except Exception as e:  # the kernel died, timed out or never started
        error = f"{type(e).__name__}: {_first_line(str(e))}"
    if output.exists():
        return nbformat.read(output, as_version=4), error
    return nbformat.v4.new_notebook(), error


def to_html(nb: NotebookNode, title: str | None = None) -> str:
    """One self-contained HTML page of an executed notebook: code hidden, outputs and
    images embedded, no script or style fetched from the network.

    Raises ``ReportError`` if the page would still load anything from the network."""
    import jinja2
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        extra_loaders=[jinja2.DictLoader({"latkit_report.html.j2": _TEMPLATE})],
        template_file="latkit_report.html.j2",
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    if title is not None:
        nb.metadata["title"] = title
    _describe_charts(nb)
    page, _ = exporter.from_notebook_node(nb)
    problems = offline_problems(page)
    if problems:
        raise ReportError(
            f"the page for {title or 'a notebook'} would fetch {problems[0]} from the network"
        )
    return str(page)


def _describe_charts(nb: NotebookNode) -> None:
    """Give each chart's SVG the chart's title as its alternative text (for screen readers;
    nbconvert would otherwise say that no description was provided)."""
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/svg+xml" not in data:
                continue
            specs = [v for k, v in data.items() if k.startswith("application/vnd.vegalite")]
            title: Any = specs[0].get("title") if specs and isinstance(specs[0], dict) else None
            if isinstance(title, dict):
                title = title.get("text")
            if isinstance(title, list):
                title = " ".join(map(str, title))
            alt = f"Chart: {title}" if title else "A chart"
            output.setdefault("metadata", {})["latkit_alt"] = alt


def offline_problems(page: str) -> list[str]:
    """Everything ``page`` (HTML) would fetch from another host: script, stylesheet and
    image sources, CSS ``url()``/``@import`` and JavaScript ``import()`` of remote URLs.
    Links a reader may follow (``<a href>``) are not fetched and not listed."""
    finder = _RemoteFinder()
    finder.feed(page)
    finder.close()
    return finder.found


class _RemoteFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._tag: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag = tag
        names = _LOADING_ATTRIBUTES.get(tag, ())
        for name, value in attrs:
            if value and (name in names or name == "style") and _points_away(name, value):
                self.found.append(f"<{tag} {name}={value[:120]!r}>")

    def handle_data(self, data: str) -> None:
        pattern = {"style": _CSS_REMOTE, "script": _JS_REMOTE}.get(self._tag or "")
        match = pattern.search(data) if pattern else None
        if match:
            self.found.append(f"<{self._tag}> {data[match.start() : match.start() + 120]!r}")

    def handle_endtag(self, tag: str) -> None:
        self._tag = None


def _points_away(attribute: str, value: str) -> bool:
    if attribute == "style":
        return bool(_CSS_REMOTE.search(value))
    if attribute == "srcset":
        return any(_REMOTE.match(part) for part in value.split(","))
    return bool(_REMOTE.match(value))


def build(
    workbook: str | Path,
    out: str | Path,
    notebook_paths: Iterable[str | Path] | None = None,
    overrides: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    on_start: Callable[[Path], None] | None = None,
) -> list[Page]:
    """Run each notebook against ``workbook`` and write one HTML page per notebook, plus an
    ``index.html`` linking them, into ``out``.

    ``notebook_paths`` defaults to ``notebooks()``; ``overrides`` sets parameters (such as
    ``target_ms``) in the notebooks that declare them, and must each be declared by at least
    one; ``on_start`` is called with each notebook before it runs. A notebook whose run fails
    still gets its page (up to the failure, with the error shown); its ``Page.error`` says
    what went wrong. The workbook must exist and not be open elsewhere for writing.
    """
    workbook = Path(workbook)
    if not workbook.is_file():
        raise ReportError(
            f"{workbook}: no such workbook (make one with: latkit load FILES --db {workbook})"
        )
    paths = [Path(p) for p in notebook_paths] if notebook_paths is not None else notebooks()
    if not paths:
        raise ReportError("no notebooks to run")
    params = {p: parameters_for(p, workbook, overrides) for p in paths}
    unknown = sorted(set(overrides or {}) - {name for p in paths for name in _declared(p)})
    if unknown:
        raise ReportError(f"no notebook has a parameter named {unknown[0]!r}")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pages: list[Page] = []
    with tempfile.TemporaryDirectory(prefix="latkit-report-") as scratch:
        for path in paths:
            if on_start is not None:
                on_start(path)
            started = time.perf_counter()
            nb, error = run(path, Path(scratch) / path.name, params[path], timeout)
            title = _title(nb, path)
            target = out / f"{path.stem}.html"
            target.write_text(to_html(nb, title), encoding="utf-8")
            pages.append(Page(path, title, target, time.perf_counter() - started, error))
    (out / "index.html").write_text(_index(pages, workbook), encoding="utf-8")
    return pages


def _declared(notebook: str | Path) -> dict[str, Any]:
    """The parameters a notebook's ``parameters`` cell declares, by name."""
    from papermill.inspection import inspect_notebook

    try:
        return dict(inspect_notebook(str(notebook)))
    except ValueError as e:  # no kernel named in the notebook, so no language to parse
        raise ReportError(f"{notebook}: {e}") from e


def _title(nb: NotebookNode, path: Path) -> str:
    """The notebook's first Markdown heading, else its file name."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in str(cell.get("source", "")).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return path.stem


def _index(pages: list[Page], workbook: Path) -> str:
    items = []
    for page in pages:
        title = html.escape(page.title)
        status = "" if page.error is None else (
            f' <span class="failed">(stopped at {html.escape(page.error)})</span>'
        )
        items.append(f'<li><a href="{html.escape(page.html.name)}">{title}</a>{status}</li>')
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>latkit report: {html.escape(workbook.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; }}
.failed {{ color: #b00020; }}
</style>
</head>
<body>
<h1>Latency report</h1>
<p>Workbook <code>{html.escape(str(workbook.resolve()))}</code>,
made {time.strftime("%Y-%m-%d %H:%M %Z")}.</p>
<ol>
{chr(10).join(items)}
</ol>
</body>
</html>
"""


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""
