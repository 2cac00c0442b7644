"""The ``pdf`` format: tagged PDF/UA-1 handouts (normal and large print) and a booklet.

WeasyPrint renders in process. Fonts and CSS are parsed once per build and reused for
every document. A restricted URL fetcher serves only the package's own assets (and the
QR codes we embed as ``data:`` URLs); anything else (``file:``, ``http:``) is refused.
WeasyPrint's ERROR log records (a missing alt text under PDF/UA, say) fail the build.
"""

from __future__ import annotations

import atexit
import base64
import logging
import mimetypes
import os
from contextlib import contextmanager
from dataclasses import dataclass, field

import jinja2
import segno

from ..diagnostics import CarepressError, error, warning
from ..model import Collection, Topic
from . import BuildContext
from .common import FONT_DIR, TEMPLATE_DIR, epoch_datetime, pdf_page_count, template_environment

ASSET_BASE = "https://assets.carepress.invalid/"
PDF_TEMPLATES = TEMPLATE_DIR / "pdf"
PAPER = {"letter": "Letter", "a4": "A4"}
NOTES_LINES = {"normal": 5, "large": 4}


@dataclass
class Fetches:
    """What the renderer asked for: served assets and refused URLs (tests read this)."""

    served: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def make_fetcher(record: Fetches):
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class AssetFetcher(URLFetcher):
        """Serves package assets and data: URLs; refuses every other URL."""

        def fetch(self, url, headers=None):
            if url.startswith("data:"):
                record.served.append(url[:30])
                return super().fetch(url, headers)
            if url.startswith(ASSET_BASE):
                name = url[len(ASSET_BASE):].split("?")[0].split("#")[0]
                parts = name.split("/")
                if len(parts) == 2 and parts[0] == "fonts" and (FONT_DIR / parts[1]).is_file() and ".." not in name:
                    record.served.append(url)
                    mime = mimetypes.guess_type(parts[1])[0] or "font/ttf"
                    return URLFetcherResponse(url, (FONT_DIR / parts[1]).read_bytes(), {"Content-Type": mime})
            record.refused.append(url)
            raise ValueError(f"carepress refuses to fetch {url!r}: only its own assets are allowed")

    return AssetFetcher()


class _LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def _captured_log():
    logger = logging.getLogger("weasyprint")
    handler = _LogCapture()
    previous = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = previous


def _environment() -> jinja2.Environment:
    return template_environment("pdf")


def qr_data_url(url: str) -> str:
    svg = segno.make(url, error="m").svg_inline(scale=4, dark="#000", light="#fff", border=2, omitsize=False)
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


class Renderer:
    """One build's WeasyPrint state: font configuration and parsed stylesheets, reused."""

    def __init__(self, paper: str, epoch: int):
        from weasyprint import CSS
        from weasyprint.text.fonts import FontConfiguration

        self.fetches = Fetches()
        self.fetcher = make_fetcher(self.fetches)
        self.fonts = FontConfiguration()
        self.epoch = epoch
        size = PAPER[paper]

        def css(name: str, extra: str = "") -> "CSS":
            text = (PDF_TEMPLATES / name).read_text(encoding="utf-8") + extra
            return CSS(string=text, base_url=ASSET_BASE, url_fetcher=self.fetcher, font_config=self.fonts)

        page = f"@page {{ size: {size}; }}"
        self.base = css("base.css", page)
        self.large = css("large.css")
        self.booklet = css("booklet.css")

    def pdf(self, html: str, stylesheets: list, what: str) -> tuple[bytes, int]:
        from weasyprint import HTML

        stamp = epoch_datetime(self.epoch).strftime("%Y-%m-%dT%H:%M:%SZ")
        with _captured_log() as log, _source_date_epoch(self.epoch):
            document = HTML(string=html, base_url=ASSET_BASE, url_fetcher=self.fetcher).render(
                stylesheets=stylesheets, font_config=self.fonts, pdf_variant="pdf/ua-1", pdf_tags=True)
            document.metadata.created = stamp
            document.metadata.modified = stamp
            data = document.write_pdf(pdf_variant="pdf/ua-1", pdf_tags=True,
                                      pdf_identifier=what.encode("utf-8"))
        errors = [r.getMessage() for r in log.records if r.levelno >= logging.ERROR]
        if errors:
            raise CarepressError([error("CP130", f"pdf: {what}: {message}") for message in errors])
        return data, len(document.pages)


@contextmanager
def _source_date_epoch(epoch: int):
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(epoch)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old


def handout_html(c: Collection, topic: Topic, large: bool = False) -> str:
    section = next((s for s in c.sections if s.slug == topic.section), None)
    qr = qr_data_url(topic.media.video_url) if topic.media.video_url else ""
    return _environment().get_template("handout.html").render(
        c=c, topic=topic, section=section, qr=qr, notes_lines=NOTES_LINES["large" if large else "normal"])


def booklet_html(c: Collection) -> str:
    qrs = {t.slug: qr_data_url(t.media.video_url) if t.media.video_url else "" for t in c.topics}
    return _environment().get_template("booklet.html").render(c=c, qrs=qrs)


_RENDERERS: dict[tuple[str, int], Renderer] = {}
atexit.register(_RENDERERS.clear)  # free WeasyPrint's font configuration before interpreter teardown


def _renderer(paper: str, epoch: int) -> Renderer:
    """One Renderer (fonts, parsed CSS) per process and settings, reused by every document."""
    key = (paper, epoch)
    if key not in _RENDERERS:
        _RENDERERS[key] = Renderer(paper, epoch)
    return _RENDERERS[key]


def _document(c: Collection, kind: str, slug: str) -> tuple[str, str, tuple[str, ...]]:
    """(output path, HTML, stylesheet names) of one PDF: a handout, a large-print handout or the booklet."""
    if kind == "booklet":
        return f"pdf/{c.id}-booklet.pdf", booklet_html(c), ("base", "booklet")
    topic = c.topic(slug)
    if kind == "large":
        return f"pdf/large-print/{slug}.pdf", handout_html(c, topic, large=True), ("base", "large")
    return f"pdf/{slug}.pdf", handout_html(c, topic), ("base",)


def render_part(documents: list[tuple[str, str, tuple[str, ...]]], paper: str, epoch: int):
    """Render some documents with this process's Renderer: ({path: bytes}, fetches)."""
    renderer = _renderer(paper, epoch)
    start = len(renderer.fetches.served), len(renderer.fetches.refused)
    files: dict[str, bytes] = {}
    for path, html, sheets in documents:
        files[path], _pages = renderer.pdf(html, [getattr(renderer, name) for name in sheets], path)
    return files, Fetches(renderer.fetches.served[start[0]:], renderer.fetches.refused[start[1]:])


def render_with(c: Collection, ctx: BuildContext) -> tuple[dict[str, bytes], Fetches]:
    """Render every PDF not already in the part cache; with ``jobs`` > 1, across processes."""
    paper = str(ctx.options.get("paper") or ctx.config.pdf.paper)
    jobs = max(1, int(ctx.options.get("jobs") or 1))
    epoch = ctx.source_date_epoch
    wanted = [("booklet", "")] + [(kind, t.slug) for t in c.topics for kind in ("handout", "large")]
    files: dict[str, bytes] = {}
    keys: dict[str, str] = {}
    pending: list[tuple[str, str, tuple[str, ...]]] = []
    for kind, slug in wanted:
        path, html, sheets = _document(c, kind, slug)
        if ctx.parts is not None:
            keys[path] = ctx.parts.key("pdf", path, html, ",".join(sheets), paper, str(epoch))
            cached = ctx.parts.get(keys[path])
            if cached is not None:
                files[path] = cached
                continue
        pending.append((path, html, sheets))
    if jobs == 1 or len(pending) < 8 * jobs:
        parts = [render_part(pending, paper, epoch)] if pending else []
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        head, rest = pending[:1], pending[1:]  # the booklet (when pending) is the longest: a task of its own
        size = max(1, len(rest) // (jobs * 4))
        chunks = [head] + [rest[i:i + size] for i in range(0, len(rest), size)]
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            parts = list(pool.map(render_part, chunks, [paper] * len(chunks), [epoch] * len(chunks)))
    fetches = Fetches()
    for part_files, part_fetches in parts:
        files.update(part_files)
        fetches.served += part_fetches.served
        fetches.refused += part_fetches.refused
        if ctx.parts is not None:
            for path, data in part_files.items():
                ctx.parts.put(keys[path], data)
    if fetches.refused:
        raise CarepressError([error("CP130", f"pdf: refused to fetch {u!r}") for u in fetches.refused])
    for topic in c.topics:
        pages = pdf_page_count(files[f"pdf/{topic.slug}.pdf"]) or 1
        if pages > 1:
            ctx.diagnostics.append(warning("CP140", f"handout '{topic.slug}' takes {pages} pages, not one",
                                           topic.sources[0].file, topic.sources[0].first_line))
    return dict(sorted(files.items())), fetches


def render(c: Collection, ctx: BuildContext) -> dict[str, bytes]:
    return render_with(c, ctx)[0]
