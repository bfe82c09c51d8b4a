"""Headless Chromium (Debian's ``chromium``, never a downloaded browser) driven from the command line:
``--dump-dom`` for the DOM after load, ``--screenshot`` for a picture. A fresh profile per run."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-proxy-server",
         "--disable-dev-shm-usage", "--hide-scrollbars"]


def chromium() -> str:
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    assert found, "Debian's chromium is required for the browser test (apt-get install chromium)"
    return found


async def _run(*args: str, timeout_s: float = 90) -> bytes:
    with tempfile.TemporaryDirectory(prefix="mv-chromium-") as profile:
        process = await asyncio.create_subprocess_exec(
            chromium(), *FLAGS, f"--user-data-dir={profile}", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode == 0, f"chromium failed ({process.returncode}): {err.decode()[-2000:]}"
    return out


async def dump_dom(url: str) -> str:
    return (await _run("--dump-dom", url)).decode()


async def screenshot(url: str, path: Path, *, width: int = 1280, height: int = 1500) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    await _run(f"--screenshot={path}", f"--window-size={width},{height}", url)
    assert path.exists() and path.stat().st_size > 10_000, "screenshot missing or blank"
    return path


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Grids(HTMLParser):
    """The grids of the tab page as the browser built them: header texts, row texts, row attributes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.headers: dict[str, list[str]] = {}
        self.rows: dict[str, list[list[str]]] = {}
        self.row_attrs: dict[str, list[dict[str, str | None]]] = {}
        self.links: dict[str, list[str]] = {}
        self.ids: dict[str, str] = {}
        self._grid = ""
        self._in_head = False
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._open: list[tuple[str, str | None, list[str]]] = []  # every open element: tag, id, its text
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag not in VOID:
            self._open.append((tag, a.get("id"), []))
        if tag == "table":
            self._grid = a.get("id") or ""
            self.headers[self._grid], self.rows[self._grid] = [], []
            self.row_attrs[self._grid], self.links[self._grid] = [], []
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr" and not self._in_head:
            self._row = []
            self.row_attrs[self._grid].append(a)
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "a" and self._row is not None:
            self.links[self._grid].append(a.get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            open_tag, element_id, text = self._open.pop()
            if element_id:
                self.ids[element_id] = " ".join("".join(text).split())
            if open_tag == tag:
                break
        if tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            if self._in_head:
                self.headers[self._grid].append(text)
            elif self._row is not None:
                self._row.append(text)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows[self._grid].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        for _, element_id, text in self._open:
            if element_id:
                text.append(data)
