"""Real-browser test of the built Jupyter Book.

The test
  (a) builds the book into a temporary folder
      (``jupyter-book build <root> --path-output <tmp> --warningiserror --keep-going``)
      or, with ``BNLIB_SITE_BUILT=1``, uses the already built ``<root>/_build/html``;
  (b) serves the HTML over http on localhost from a thread;
  (c) opens every HTML page in headless Chromium (``chromium --dump-dom``) and checks
      - the page loads and has the book's title;
      - every <img> has a non-empty src that resolves (HTTP 200);
      - every notebook page shows at least as many images as its executed notebook has
        image outputs, and every chapter listed in CHAPTERS_WITH_FIGURES shows at least one;
      - every ipywidget view on a page has its state embedded in the page (static snapshot)
        and, with the vendored widget loader (book/_widgets), is drawn by the browser;
      - no internal link (local href, with or without #anchor) is broken: the target is
        served with HTTP 200 and, for anchors into HTML pages, the id exists;
      - local stylesheets and scripts resolve;
      - every formula is typeset by the vendored MathJax (book/_mathjax), with no internet;
      - every code cell tagged hide-input is folded behind a toggle, and no other.

Environment variables
  BNLIB_SITE_BUILT=1        use <root>/_build/html instead of building.
  BNLIB_SITE_ROOT=<dir>     book root (default: the repository root).
  BNLIB_SITE_STRICT=0       build without --warningiserror (default: strict).
  BNLIB_SITE_BUILD_TIMEOUT  seconds allowed for the build (default 7200).
  BNLIB_REQUIRE_BROWSER=1   fail (instead of skip) when Chromium is missing.
  BNLIB_CHROMIUM=<path>     Chromium binary (default /usr/bin/chromium).
The build itself reads BNLIB_PROFILE; the test sets it to ``smoke`` when it is unset.

Run:  BNLIB_PROFILE=smoke python -m pytest -m site tests/test_site.py
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytestmark = pytest.mark.site

REPO_ROOT = Path(__file__).resolve().parents[1]
BOOK_ROOT = Path(os.environ.get("BNLIB_SITE_ROOT", REPO_ROOT)).resolve()
CHROMIUM = os.environ.get("BNLIB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    # let scripts (theme, widget loader) run before the DOM is dumped
    "--virtual-time-budget=5000",
]
PAGE_TIMEOUT_S = 120

# Chapters whose pages must show at least one figure (an <img> from a notebook output).
CHAPTERS_WITH_FIGURES = {
    "notebooks/01_batchnorm_from_scratch",
    "notebooks/02_freezing_everything_but_batchnorm",
    "notebooks/03_training_bn_only_resnets",
    "notebooks/04_what_gamma_and_beta_learn",
    "notebooks/05_bn_only_vs_full_training",
    "notebooks/06_beyond_the_paper",
}

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _book_title() -> str:
    import yaml

    config = yaml.safe_load((BOOK_ROOT / "_config.yml").read_text(encoding="utf-8"))
    return str(config["title"])


# ----------------------------------------------------------------------------------------
# DOM parsing


@dataclass
class Page:
    """What the test needs from one page's DOM."""

    title: str = ""
    imgs: list = field(default_factory=list)  # (src, inside_notebook_output)
    links: list = field(default_factory=list)  # href of <a>
    assets: list = field(default_factory=list)  # href of <link rel=stylesheet>, src of <script>
    ids: set = field(default_factory=set)
    widget_views: list = field(default_factory=list)  # model ids
    widget_state_ids: set = field(default_factory=set)
    widgets_rendered: int = 0  # widget views drawn by the html-manager (div.widget-subarea)
    formulas: int = 0  # Sphinx math elements (span.math / div.math), TeX inside
    formulas_typeset: int = 0  # MathJax output elements (mjx-container)
    has_main: bool = False
    folded_inputs: int = 0  # code cells shown behind a "Show code cell source" toggle (hide-input)
    meta_refresh: str | None = None


class _DomParser(HTMLParser):
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "param", "source", "track", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._stack: list[bool] = []  # per open element: is it a notebook cell output?
        self._in_title = False
        self._title_seen = False
        self._script_type: str | None = None
        self._script_text: list[str] = []

    def _in_output(self) -> bool:
        return any(self._stack)

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        if "id" in a:
            self.page.ids.add(a["id"])
        if tag == "a" and "name" in a:
            self.page.ids.add(a["name"])
        classes = a.get("class", "").split()
        if tag == "title":
            # only the document's <title>; SVG icons contain <title> elements too
            self._in_title = not self._title_seen
            self._title_seen = True
        elif tag == "img":
            self.page.imgs.append((a.get("src", ""), self._in_output()))
        elif tag == "a" and "href" in a:
            self.page.links.append(a["href"])
        elif tag == "link" and "stylesheet" in a.get("rel", "").split() and a.get("href"):
            self.page.assets.append(a["href"])
        elif tag == "script":
            if a.get("src"):
                self.page.assets.append(a["src"])
            self._script_type = a.get("type", "")
            self._script_text = []
        if "widget-subarea" in classes:
            self.page.widgets_rendered += 1
        if "math" in classes and tag in ("span", "div"):
            self.page.formulas += 1
        if tag == "mjx-container":
            self.page.formulas_typeset += 1
        if tag == "details" and {"hide", "above-input"} <= set(classes):
            self.page.folded_inputs += 1
        if tag == "main" or "bd-article" in classes:
            self.page.has_main = True
        elif tag == "meta" and a.get("http-equiv", "").lower() == "refresh":
            self.page.meta_refresh = a.get("content", "")
        if tag not in self.VOID:
            self._stack.append("cell_output" in classes)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID and self._stack:
            self._stack.pop()

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag == "script" and self._script_type is not None:
            self._finish_script()
        if tag not in self.VOID and self._stack:
            self._stack.pop()

    def handle_data(self, data):
        if self._in_title:
            self.page.title += data
        elif self._script_type is not None:
            self._script_text.append(data)

    def _finish_script(self):
        text = "".join(self._script_text).strip()
        if self._script_type == WIDGET_VIEW:
            try:
                self.page.widget_views.append(json.loads(text).get("model_id", ""))
            except ValueError:
                self.page.widget_views.append("<unparsable widget view>")
        elif self._script_type == WIDGET_STATE:
            try:
                self.page.widget_state_ids |= set(json.loads(text).get("state", {}))
            except ValueError:
                pass
        self._script_type = None
        self._script_text = []


def parse_dom(html: str) -> Page:
    parser = _DomParser()
    parser.feed(html)
    parser.close()
    page = parser.page
    page.title = " ".join(page.title.split())
    return page


# ----------------------------------------------------------------------------------------
# Fixtures: chromium, the built site, the http server


@pytest.fixture(scope="module")
def chromium() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        message = (
            f"Chromium not found at {CHROMIUM} (install the Debian packages 'chromium' "
            "(and optionally 'chromium-driver'), or set BNLIB_CHROMIUM)"
        )
        if _truthy("BNLIB_REQUIRE_BROWSER"):
            pytest.fail(message + "; BNLIB_REQUIRE_BROWSER is set, so this is a failure")
        pytest.skip(message)
    return CHROMIUM


def _jupyter_book() -> list[str]:
    exe = Path(sys.executable).with_name("jupyter-book")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("jupyter-book")
    if found:
        return [found]
    pytest.fail("jupyter-book is not installed in this environment")


@pytest.fixture(scope="module")
def site(chromium, tmp_path_factory) -> Path:
    """Path of the built HTML folder (…/_build/html)."""
    if _truthy("BNLIB_SITE_BUILT"):
        html = BOOK_ROOT / "_build" / "html"
        if not (html / "index.html").is_file():
            pytest.fail(f"BNLIB_SITE_BUILT is set but {html}/index.html does not exist")
        return html
    out = tmp_path_factory.mktemp("book")
    cmd = _jupyter_book() + ["build", str(BOOK_ROOT), "--path-output", str(out)]
    if os.environ.get("BNLIB_SITE_STRICT", "1").strip().lower() not in ("0", "false", "no"):
        cmd += ["--warningiserror", "--keep-going"]
    timeout = float(os.environ.get("BNLIB_SITE_BUILD_TIMEOUT", "7200"))
    env = dict(os.environ)
    env.setdefault("BNLIB_PROFILE", "smoke")  # never a full-length build by accident
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=BOOK_ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout or ""
        if isinstance(partial, bytes):
            partial = partial.decode("utf-8", "replace")
        pytest.fail(f"book build timed out after {timeout:.0f} s: {' '.join(cmd)}\n"
                    f"{partial[-5000:]}")
    elapsed = time.monotonic() - start
    log = proc.stdout + proc.stderr
    html = out / "_build" / "html"
    if proc.returncode != 0 or not (html / "index.html").is_file():
        pytest.fail(f"book build failed (exit {proc.returncode}, {elapsed:.0f} s): "
                    f"{' '.join(cmd)}\n--- last lines of the build log ---\n{log[-8000:]}")
    print(f"book built in {elapsed:.0f} s into {html}")
    return html


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def dump_dom(chromium: str, url: str, profile: Path) -> str:
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PAGE_TIMEOUT_S)
    if proc.returncode != 0 or "<html" not in proc.stdout.lower():
        raise AssertionError(f"chromium could not load {url} (exit {proc.returncode}):\n"
                             f"{proc.stderr[-3000:]}")
    return proc.stdout


@functools.lru_cache(maxsize=None)
def http_status(url: str) -> int:
    request = urllib.request.Request(url, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except urllib.error.URLError:
        return -1


@pytest.fixture(scope="module")
def pages(site, server, chromium, tmp_path_factory) -> dict:
    """{relative html path: Page} for every HTML page of the site, as rendered by Chromium."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    skip_dirs = {"_static", "_sources", "_images", "_downloads"}
    rendered = {}
    for path in sorted(site.rglob("*.html")):
        rel = path.relative_to(site).as_posix()
        if rel.split("/", 1)[0] in skip_dirs:
            continue
        raw = parse_dom(path.read_text(encoding="utf-8", errors="replace"))
        if raw.meta_refresh is not None:
            # A redirect stub (Jupyter Book writes index.html as one). Chromium would follow
            # it and hand back the target's DOM under the wrong URL, so keep the raw page.
            rendered[rel] = raw
            continue
        rendered[rel] = parse_dom(dump_dom(chromium, server + rel, profile))
    assert rendered, f"no HTML pages found in {site}"
    return rendered


# ----------------------------------------------------------------------------------------
# Helpers


def _is_local(url: str, server: str) -> bool:
    """True for relative URLs and absolute URLs on the local test server."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "" and parts.netloc == "":
        return True
    return parts.scheme in ("http", "https") and parts.netloc == urllib.parse.urlsplit(server).netloc


def _docname(rel: str) -> str:
    return rel[: -len(".html")]


def _executed_image_outputs(site: Path, docname: str) -> int | None:
    """Number of top-level image outputs in the executed notebook, None if not a notebook."""
    executed = site.parent / "jupyter_execute" / f"{docname}.ipynb"
    if not executed.is_file():
        return None
    notebook = json.loads(executed.read_text(encoding="utf-8"))
    count = 0
    for cell in notebook.get("cells", []):
        if "remove-output" in cell.get("metadata", {}).get("tags", []):
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                continue  # rendered by the widget loader, not as <img>
            if any(mime in data for mime in IMAGE_MIMES):
                count += 1
    return count


# ----------------------------------------------------------------------------------------
# Tests


def test_every_page_loads_with_title(pages):
    title = _book_title()
    problems = []
    for rel, page in pages.items():
        if rel == "index.html" and page.meta_refresh is not None and not page.title:
            continue  # Jupyter Book's redirect to the root page; checked with the links
        if title not in page.title:
            problems.append(f"{rel}: title {page.title!r} does not contain {title!r}")
        if rel not in ("index.html", "search.html", "genindex.html") and not page.has_main:
            problems.append(f"{rel}: no main article in the rendered DOM")
    assert not problems, "\n".join(problems)


def test_notebook_pages_launch_in_colab(site):
    """Every chapter's launch button opens that very notebook in Colab, from the repository and
    branch that _config.yml names (a wrong path_to_book or branch breaks every button)."""
    import yaml

    config = yaml.safe_load((BOOK_ROOT / "_config.yml").read_text(encoding="utf-8"))
    repository = config["repository"]["url"].removeprefix("https://github.com/").strip("/")
    colab = config["launch_buttons"]["colab_url"].strip("/")
    notebooks = sorted((BOOK_ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks, f"no notebooks under {BOOK_ROOT / 'notebooks'}"
    problems = []
    for notebook in notebooks:
        page = site / "notebooks" / f"{notebook.stem}.html"
        expected = (f'href="{colab}/github/{repository}/blob/{config["repository"]["branch"]}'
                    f'/notebooks/{notebook.name}"')
        if not page.is_file():
            problems.append(f"{page.relative_to(site)}: missing")
        elif expected not in page.read_text(encoding="utf-8"):
            problems.append(f"{page.relative_to(site)}: no launch link {expected}")
    assert not problems, "\n".join(problems)


def test_root_redirect(site, server, pages):
    page = pages.get("index.html")
    assert page is not None, "index.html missing"
    if page.meta_refresh is not None and not page.title:
        match = re.search(r"url=(\S+)", page.meta_refresh, re.I)
        assert match, f"index.html: bad refresh {page.meta_refresh!r}"
        target = urllib.parse.urljoin(server, match.group(1).strip("'\""))
        assert http_status(target) == 200, f"index.html redirects to {target}, which is missing"


def test_images_resolve(pages, server):
    problems = []
    for rel, page in pages.items():
        base = server + rel
        for src, _ in page.imgs:
            if not src.strip():
                problems.append(f"{rel}: <img> with empty src")
            elif src.startswith("data:"):
                if "," not in src or not src.split(",", 1)[1].strip():
                    problems.append(f"{rel}: <img> with empty data: URI")
            elif _is_local(src, server):
                url = urllib.parse.urljoin(base, src)
                status = http_status(url)
                if status != 200:
                    problems.append(f"{rel}: <img src={src!r}> -> HTTP {status}")
            elif src in ALLOWED_EXTERNAL_IMAGES:
                continue
            else:
                problems.append(f"{rel}: <img src={src!r}> is not served by the book "
                                "(external images cannot be checked and break offline)")
    assert not problems, "\n".join(problems)


# The "Open in Colab" badge each chapter carries must work on GitHub and in Colab too, where a path
# into this site would not resolve; it is a launch link, not a figure (offline it shows its alt text).
ALLOWED_EXTERNAL_IMAGES = {"https://colab.research.google.com/assets/colab-badge.svg"}


def test_long_code_cells_are_folded(pages, site):
    """The long analysis cells (tagged hide-input, see tests/test_notebooks_clean.py) show behind a
    "Show code cell source" toggle, their outputs in view; every other cell shows its code."""
    problems = []
    for rel, page in pages.items():
        executed = site.parent / "jupyter_execute" / f"{_docname(rel)}.ipynb"
        if not executed.is_file():
            continue
        cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
        tagged = sum("hide-input" in cell.get("metadata", {}).get("tags", []) for cell in cells)
        if page.folded_inputs != tagged:
            problems.append(f"{rel}: {tagged} cells tagged hide-input, {page.folded_inputs} folded on the page")
    assert not problems, "\n".join(problems)


def test_notebook_pages_show_their_figures(pages, site):
    problems = []
    for rel, page in pages.items():
        docname = _docname(rel)
        expected = _executed_image_outputs(site, docname)
        shown = sum(1 for src, in_output in page.imgs if in_output and src.strip())
        if expected is not None and shown < expected:
            problems.append(f"{rel}: executed notebook has {expected} image outputs, "
                            f"page shows {shown}")
        # figures: notebook output images or images in the text, not theme icons
        figures = [src for src, _ in page.imgs
                   if src.strip() and "_static/" not in src and src not in ALLOWED_EXTERNAL_IMAGES]
        if docname in CHAPTERS_WITH_FIGURES and not figures:
            problems.append(f"{rel}: chapter page shows no figure")
    missing = {d for d in CHAPTERS_WITH_FIGURES if f"{d}.html" not in pages}
    if missing:
        problems.append(f"chapter pages missing from the site: {sorted(missing)}")
    assert not problems, "\n".join(problems)


def test_widgets_render_statically(pages, server):
    """Every widget view has its state embedded; with the vendored (local) widget loader,
    Chromium must actually draw every view from that state."""
    problems = []
    for rel, page in pages.items():
        if not page.widget_views:
            continue
        for model_id in page.widget_views:
            if model_id not in page.widget_state_ids:
                problems.append(f"{rel}: widget view {model_id!r} has no embedded state "
                                "(it would render as nothing in the static page)")
        local_loader = any("embed-amd" in a and _is_local(a, server) for a in page.assets)
        if local_loader and page.widgets_rendered < len(page.widget_views):
            problems.append(f"{rel}: {len(page.widget_views)} widget views, but only "
                            f"{page.widgets_rendered} were drawn in the browser")
    assert not problems, "\n".join(problems)


def test_internal_links_not_broken(pages, server):
    problems = []
    checked = 0
    for rel, page in pages.items():
        base = server + rel
        for href in page.links:
            href = href.strip()
            if not href or href.startswith(("mailto:", "javascript:", "tel:")):
                continue
            if not _is_local(href, server):
                continue
            url = urllib.parse.urljoin(base, href)
            target, _, fragment = url.partition("#")
            target = target.split("?", 1)[0]
            status = http_status(target)
            checked += 1
            if status != 200:
                problems.append(f"{rel}: link {href!r} -> HTTP {status}")
                continue
            if fragment and target.endswith(".html"):
                target_rel = target[len(server):]
                target_page = pages.get(target_rel)
                fragment = urllib.parse.unquote(fragment)
                if target_page is not None and fragment not in target_page.ids:
                    problems.append(f"{rel}: link {href!r}: no id {fragment!r} in {target_rel}")
    assert checked, "no internal links found at all"
    assert not problems, "\n".join(problems)


def test_local_assets_resolve(pages, server):
    problems = []
    for rel, page in pages.items():
        base = server + rel
        for src in page.assets:
            if _is_local(src, server):
                url = urllib.parse.urljoin(base, src).split("#", 1)[0]
                status = http_status(url.split("?", 1)[0])
                if status != 200:
                    problems.append(f"{rel}: asset {src!r} -> HTTP {status}")
    assert not problems, "\n".join(problems)


def test_formulas_are_typeset_offline(pages, server):
    """Sphinx writes each formula as TeX in a span.math/div.math; the vendored MathJax must load
    from the site itself and replace every one of them in the browser (no CDN, no raw TeX)."""
    problems, with_math = [], 0
    for rel, page in pages.items():
        if not page.formulas:
            continue
        with_math += 1
        loaders = [a for a in page.assets if "mathjax" in a.lower()]
        if not loaders or not all(_is_local(a, server) for a in loaders):
            problems.append(f"{rel}: MathJax is not loaded from the site itself: {loaders}")
        if page.formulas_typeset < page.formulas:
            problems.append(f"{rel}: {page.formulas} formulas, {page.formulas_typeset} typeset")
    assert with_math >= 3, f"only {with_math} pages with formulas; the book's chapters have more"
    assert not problems, "\n".join(problems)
