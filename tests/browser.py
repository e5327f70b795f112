"""A small headless-Chromium driver over the DevTools protocol: open a page, list broken images, screenshot."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
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
BROKEN_IMAGES_JS = ("JSON.stringify(Array.from(document.images)"
                    ".filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src')))")


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class Browser:
    """``with Browser() as b: b.open(url); b.broken_images(); b.screenshot(path)``."""

    def __init__(self, width: int = 1280, height: int = 900):
        self.width, self.height = width, height

    def __enter__(self):
        import websocket

        self._profile = tempfile.mkdtemp(prefix="medimg-chromium-")
        self._proc = subprocess.Popen(
            [chromium_path(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--remote-debugging-port=0", "--allow-file-access-from-files", f"--user-data-dir={self._profile}",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + 60
        port = None
        while port is None and time.monotonic() < deadline:
            line = self._proc.stderr.readline()
            if m := re.search(r"ws://127\.0\.0\.1:(\d+)/", line or ""):
                port = int(m.group(1))
            elif not line and self._proc.poll() is not None:
                raise RuntimeError("chromium exited before it listened for DevTools")
        request = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT")
        target = json.loads(urllib.request.urlopen(request, timeout=30).read())
        self._ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self._id = 0
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height, deviceScaleFactor=1,
                  mobile=False)
        return self

    def __exit__(self, *exc):
        try:
            self._ws.close()
        finally:
            self._proc.kill()
            self._proc.wait()
            shutil.rmtree(self._profile, ignore_errors=True)

    def call(self, method: str, **params):
        self._id += 1
        self._ws.send(json.dumps(dict(id=self._id, method=method, params=params)))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def _wait_for(self, event: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if json.loads(self._ws.recv()).get("method") == event:
                return
        raise TimeoutError(event)

    def open(self, url: str) -> dict:
        """Navigate and wait for the load event; ``errorText`` is set when the page could not be loaded."""
        result = self.call("Page.navigate", url=url)
        if not result.get("errorText"):
            self._wait_for("Page.loadEventFired")
        return result

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def broken_images(self) -> list[str]:
        return json.loads(self.evaluate(BROKEN_IMAGES_JS))

    def layout(self) -> dict:
        """The first section's id, how many code inputs are in view, and how many tables are wider than the text."""
        return json.loads(self.evaluate(LAYOUT_JS))

    def screenshot(self, path: Path) -> Path:
        """The whole page, not only the window."""
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=min(height, 12000),
                  deviceScaleFactor=1, mobile=False)
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height, deviceScaleFactor=1,
                  mobile=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
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
            if layouts is not None:
                layouts[page] = layout
            if page in screenshots:
                browser.screenshot(screenshots[page])
    return problems
