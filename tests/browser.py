"""The book in a real browser (Playwright driving headless Chromium): open a page, list broken images, screenshot."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

# What a reader meets on a chapter page: the first section's id, code inputs left in view (not folded
# into a "Show code" toggle), and tables reaching past the text column.
LAYOUT_JS = """JSON.stringify((() => {
  const article = document.querySelector('.bd-article');
  const right = article.getBoundingClientRect().right + 1;
  const sections = Array.from(article.querySelectorAll('section section'));
  const code = Array.from(article.querySelectorAll('.cell_input')).filter(c => !c.closest('details'));
  const wide = Array.from(article.querySelectorAll('table')).filter(t => t.getBoundingClientRect().right > right);
  return {first_section: sections.length ? sections[0].id : null, visible_code: code.length,
          wide_tables: wide.length, tables: article.querySelectorAll('table').length};
})())"""
BUTTONS_JS = """JSON.stringify({
  binder: !!document.querySelector('.dropdown-launch-buttons a[href*="mybinder.org"]'),
  colab: !!document.querySelector('.dropdown-launch-buttons a[href*="colab.research.google.com"]'),
  download: !!document.querySelector('.dropdown-download-buttons, .download-button, [class*="btn-download"]')
})"""
BROKEN_IMAGES_JS = ("JSON.stringify(Array.from(document.images)"
                    ".filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src')))")


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class Browser:
    """``with Browser() as b: b.open(url); b.broken_images(); b.screenshot(path)``: Playwright for Python driving
    Debian's Chromium (``executable_path``), so no browser download is needed."""

    def __init__(self, width: int = 1280, height: int = 900):
        self.width, self.height = width, height

    def __enter__(self):
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=chromium_path(), headless=True,
                args=["--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--allow-file-access-from-files"])
            self._page = self._browser.new_page(viewport=dict(width=self.width, height=self.height),
                                                device_scale_factor=1)
        except Exception:
            self._playwright.stop()
            raise
        return self

    def __exit__(self, *exc):
        try:
            self._browser.close()
        finally:
            self._playwright.stop()

    def open(self, url: str) -> dict:
        """Navigate and wait for the load event; ``errorText`` is set when the page could not be loaded."""
        from playwright.sync_api import Error

        try:
            self._page.goto(url, wait_until="load", timeout=60_000)
        except Error as err:
            return {"errorText": str(err).splitlines()[0]}
        return {}

    def evaluate(self, expression: str):
        return self._page.evaluate(expression)

    def broken_images(self) -> list[str]:
        return json.loads(self.evaluate(BROKEN_IMAGES_JS))

    def layout(self) -> dict:
        """The first section's id, how many code inputs are in view, and how many tables are wider than the text."""
        return json.loads(self.evaluate(LAYOUT_JS))

    def buttons(self) -> dict[str, bool]:
        """Whether the page shows the buttons a reader of a Jupyter Book expects: launch (Binder, Colab) and download."""
        return json.loads(self.evaluate(BUTTONS_JS))

    def screenshot(self, path: Path) -> Path:
        """The whole page, not only the window."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._page.screenshot(path=str(path), full_page=True)
        return path


def toc_pages(root: Path) -> list[str]:
    """Every document of the book's _toc.yml (root, chapters, sections), as paths without suffix."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                pages.append(e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))

    walk(toc.get("parts", []))
    walk(toc.get("chapters", []))
    return pages


def check_book(root: Path, html: Path, screenshots: dict[str, Path], layouts: dict | None = None) -> list[str]:
    """Open every page of the book in Chromium; return the problems (missing pages, broken images, tables
    wider than the text column).

    ``screenshots`` maps a page (as in the toc) to the PNG to write of it; ``layouts``, if given, receives
    each page's :meth:`Browser.layout`.
    """
    problems = []
    with Browser() as browser:
        for page in toc_pages(root):
            file = html / f"{page}.html"
            if not file.is_file():
                problems.append(f"{page}: no HTML page")
                continue
            result = browser.open(file.as_uri())
            if result.get("errorText"):
                problems.append(f"{page}: {result['errorText']}")
                continue
            problems += [f"{page}: broken image {src}" for src in browser.broken_images()]
            layout = browser.layout()
            if layout["wide_tables"]:
                problems.append(f"{page}: {layout['wide_tables']} table(s) wider than the page")
            if page.endswith(".ipynb") or (root / f"{page}.ipynb").is_file():  # a chapter: launch and download
                buttons = browser.buttons()
                problems += [f"{page}: no {name} button" for name, here in buttons.items() if not here]
            if layouts is not None:
                layouts[page] = layout
            if page in screenshots:
                browser.screenshot(screenshots[page])
    return problems
