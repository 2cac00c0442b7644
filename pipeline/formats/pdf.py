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
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import jinja2
import segno

from ..diagnostics import CarepressError, error, warning
from ..model import Collection, Topic
from . import BuildContext
from .common import FONT_DIR, TEMPLATE_DIR, epoch_datetime, fork_pool, pdf_page_count, template_environment

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


@lru_cache(maxsize=4096)  # a topic's code goes into its handout, large print and booklet part
def qr_data_url(url: str) -> str:
    svg = segno.make(url, error="m").svg_inline(scale=4, dark="#000", light="#fff", border=2, omitsize=False)
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


class _Deflate:
    """zlib as pydyf sees it, with level 6 where pydyf asks for 9: a few per cent of every
    PDF's render time for streams about 1% larger. Output is still byte-for-byte repeatable."""

    def __getattr__(self, name: str):
        return getattr(zlib, name)

    @staticmethod
    def compressobj(level: int = -1, *args, **kwargs):
        return zlib.compressobj(min(level, 6), *args, **kwargs)


def _deflate_level_6() -> None:
    import pydyf

    if getattr(pydyf, "zlib", None) is zlib:
        pydyf.zlib = _Deflate()


class Renderer:
    """One build's WeasyPrint state: font configuration and parsed stylesheets, reused."""

    def __init__(self, paper: str, epoch: int):
        from weasyprint import CSS
        from weasyprint.text.fonts import FontConfiguration

        _deflate_level_6()

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
        self.overlay = css("overlay.css")

    def pdf(self, html: str, stylesheets: list, what: str, kind: str = "document") -> tuple[bytes, int]:
        """One PDF. ``kind``: a tagged PDF/UA "document", a booklet "part" (tagged, whole fonts,
        which the assembly stores once) or the booklet's "overlay" (untagged: drawn as an artifact)."""
        from weasyprint import HTML

        stamp = epoch_datetime(self.epoch).strftime("%Y-%m-%dT%H:%M:%SZ")
        tagged = {"pdf_variant": "pdf/ua-1", "pdf_tags": True} if kind != "overlay" else {}
        with _captured_log() as log, _source_date_epoch(self.epoch):
            document = HTML(string=html, base_url=ASSET_BASE, url_fetcher=self.fetcher).render(
                stylesheets=stylesheets, font_config=self.fonts, **tagged)
            document.metadata.created = stamp
            document.metadata.modified = stamp
            data = document.write_pdf(**tagged, pdf_identifier=what.encode("utf-8"), full_fonts=kind == "part")
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


BOOKLET_PART_TOPICS = 12  # topics per booklet part: a part starts a page; one edit re-renders one part


def booklet_parts(c: Collection) -> list[tuple[str, str]]:
    """(name, HTML) of each part of the booklet's body, in order: a section's topics, 12 at a time."""
    template = _environment().get_template("booklet_part.html")
    parts = []
    for section in c.sections:
        topics = c.section_topics(section)
        for n, start in enumerate(range(0, max(len(topics), 1), BOOKLET_PART_TOPICS)):
            chunk = topics[start:start + BOOKLET_PART_TOPICS]
            qrs = {t.slug: qr_data_url(t.media.video_url) if t.media.video_url else "" for t in chunk}
            parts.append((f"{section.slug}/{n}", template.render(c=c, section=section, topics=chunk,
                                                                 first=start == 0, qrs=qrs)))
    return parts


def booklet_front_html(c: Collection, pages: dict[str, int]) -> str:
    from .pdfmerge import GOTO

    return _environment().get_template("booklet.html").render(c=c, pages=pages, goto=GOTO)


def booklet_overlay_html(c: Collection, pages: int) -> str:
    return _environment().get_template("booklet_overlay.html").render(c=c, pages=pages)


_RENDERERS: dict[tuple[str, int], Renderer] = {}
atexit.register(_RENDERERS.clear)  # free WeasyPrint's font configuration before interpreter teardown


def _renderer(paper: str, epoch: int) -> Renderer:
    """One Renderer (fonts, parsed CSS) per process and settings, reused by every document."""
    key = (paper, epoch)
    if key not in _RENDERERS:
        _RENDERERS[key] = Renderer(paper, epoch)
    return _RENDERERS[key]


PART_PREFIX = "booklet-part:"  # names of booklet parts among the rendered documents (never published)


class Document(NamedTuple):
    path: str  # output path, or a booklet part's name (PART_PREFIX...)
    html: str
    sheets: tuple[str, ...]  # stylesheet names: Renderer attributes
    kind: str = "document"  # see Renderer.pdf


def _document(c: Collection, kind: str, slug: str) -> Document:
    """One handout or large-print handout."""
    topic = c.topic(slug)
    if kind == "large":
        return Document(f"pdf/large-print/{slug}.pdf", handout_html(c, topic, large=True), ("base", "large"))
    return Document(f"pdf/{slug}.pdf", handout_html(c, topic), ("base",))


def render_part(documents: list[Document], paper: str, epoch: int):
    """Render some documents with this process's Renderer: ({path: bytes}, fetches)."""
    renderer = _renderer(paper, epoch)
    start = len(renderer.fetches.served), len(renderer.fetches.refused)
    files: dict[str, bytes] = {}
    for doc in documents:
        files[doc.path], _pages = renderer.pdf(doc.html, [getattr(renderer, name) for name in doc.sheets],
                                               doc.path, doc.kind)
    return files, Fetches(renderer.fetches.served[start[0]:], renderer.fetches.refused[start[1]:])


CHUNK = 24  # documents a worker takes at a time: about a second's work, so no worker idles long at the end


class _Scheduler:
    """Renders documents through the part cache, across ``jobs`` processes when there are many.

    ``submit`` returns a handle (a few documents with no pool running are rendered there and
    then); ``result`` waits for it. So the booklet's front and overlay are rendered while the
    handouts queued after them still are.
    """

    def __init__(self, ctx: BuildContext, paper: str, epoch: int, jobs: int):
        self.ctx, self.paper, self.epoch, self.jobs = ctx, paper, epoch, jobs
        self.fetches = Fetches()
        self.pool = None

    def __enter__(self) -> "_Scheduler":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def _pool(self):
        if self.pool is None:
            self.pool = fork_pool(self.jobs)
        return self.pool

    def submit(self, documents: list[Document], chunk: int | None = None):
        files: dict[str, bytes] = {}
        keys: dict[str, str] = {}
        pending: list[Document] = []
        parts = self.ctx.parts
        for doc in documents:
            if parts is not None:
                keys[doc.path] = parts.key("pdf", doc.path, doc.html, ",".join(doc.sheets), doc.kind, self.paper,
                                           str(self.epoch))
                cached = parts.get(keys[doc.path])
                if cached is not None:
                    files[doc.path] = cached
                    continue
            pending.append(doc)
        if not pending:
            return files, keys, []
        if self.jobs == 1 or (self.pool is None and len(pending) < 8 * self.jobs):
            return files, keys, [render_part(pending, self.paper, self.epoch)]  # few: not worth the processes
        size = chunk or max(1, min(CHUNK, len(pending) // (self.jobs * 6)))
        pool = self._pool()
        return files, keys, [pool.submit(render_part, pending[i:i + size], self.paper, self.epoch)
                             for i in range(0, len(pending), size)]

    def result(self, handle) -> dict[str, bytes]:
        files, keys, results = handle
        for result in results:
            part_files, part_fetches = result if isinstance(result, tuple) else result.result()
            files.update(part_files)
            self.fetches.served += part_fetches.served
            self.fetches.refused += part_fetches.refused
            if self.ctx.parts is not None:
                for path, data in part_files.items():
                    self.ctx.parts.put(keys[path], data)
        if self.fetches.refused:
            raise CarepressError([error("CP130", f"pdf: refused to fetch {u!r}") for u in self.fetches.refused])
        return files


class _Zeros(dict):
    def __missing__(self, key: str) -> int:
        return 0


FRONT = f"{PART_PREFIX}front"
OVERLAY = f"{PART_PREFIX}overlay"
CONTENTS_LINES = {"letter": 29, "a4": 31}  # contents entries a page holds: the first guess of its length


def _front(c: Collection, body: list, front_pages: int) -> list[Document]:
    """The booklet's front and overlay, for a front of ``front_pages`` pages before the ``body`` parts."""
    numbers: dict[str, int] = {}
    start = front_pages + 1
    for part in body:
        for name, (page, _x, _y) in part.dests.items():
            numbers[name] = start + page
        start += part.pages
    return [Document(FRONT, booklet_front_html(c, numbers), ("base", "booklet"), "part"),
            Document(OVERLAY, booklet_overlay_html(c, start - 1), ("base", "overlay"), "overlay")]


def _booklet(c: Collection, body: list, run: _Scheduler, front_pages: int, handle) -> bytes:
    """Assemble the booklet from its front and overlay (queued as ``handle``, rendered for a
    front of ``front_pages``) and the ``body`` parts. If the front came out longer or shorter,
    its page numbers were wrong: render it and the overlay again with the right length."""
    from .pdfmerge import assemble, open_part

    for _attempt in range(4):
        rendered = run.result(handle)
        front = open_part(rendered[FRONT])
        if front.pages == front_pages:
            break
        front_pages = front.pages
        handle = run.submit(_front(c, body, front_pages), chunk=1)
    if run.ctx.parts is not None:
        run.ctx.parts.put(_front_shape(c, run), str(front_pages).encode())
    outline = [(s.title, f"section-{s.slug}", [(t.title, f"topic-{t.slug}") for t in c.section_topics(s)])
               for s in c.sections]
    labels = {f"section-{s.slug}": s.title for s in c.sections} | {f"topic-{t.slug}": t.title for t in c.topics}
    return assemble(front, body, rendered[OVERLAY], outline, labels)


def _front_shape(c: Collection, run: _Scheduler) -> str:
    """Part-cache key of the front's length: its contents without page numbers."""
    return run.ctx.parts.key("pdf-front-pages", booklet_front_html(c, _Zeros()), run.paper)


def _front_pages_guess(c: Collection, run: _Scheduler) -> int:
    """The front's length last time (same contents), else an estimate from the entries a page holds."""
    known = run.ctx.parts.get(_front_shape(c, run)) if run.ctx.parts is not None else None
    if known and known.isdigit():
        return int(known)
    return 2 + (len(c.topics) + 2 * len(c.sections) - 1) // CONTENTS_LINES[run.paper]


def render_with(c: Collection, ctx: BuildContext) -> tuple[dict[str, bytes], Fetches]:
    """Render every PDF not already in the part cache; with ``jobs`` > 1, across processes.

    The booklet's topic parts come first (its front needs their page numbers), with a quarter
    of the handouts queued behind them so no worker waits while the parts are read; then the
    front and overlay (the longest single documents), then the other handouts. The booklet is
    assembled from the parts while the handouts render.
    """
    from .pdfmerge import open_part

    paper = str(ctx.options.get("paper") or ctx.config.pdf.paper)
    jobs = max(1, int(ctx.options.get("jobs") or 1))
    names = booklet_parts(c)
    with _Scheduler(ctx, paper, ctx.source_date_epoch, jobs) as run:
        parts = run.submit(
            [Document(f"{PART_PREFIX}{name}", html, ("base", "booklet"), "part") for name, html in names], chunk=1)
        documents = [_document(c, kind, t.slug) for t in c.topics for kind in ("handout", "large")]
        early = len(documents) // 4  # keep the workers busy while the parts' page numbers are read
        handouts = [run.submit(documents[:early])]
        rendered = run.result(parts)
        body = [open_part(rendered[f"{PART_PREFIX}{name}"]) for name, _html in names]
        front_pages = _front_pages_guess(c, run)
        front = run.submit(_front(c, body, front_pages), chunk=1)
        handouts.append(run.submit(documents[early:]))
        booklet = _booklet(c, body, run, front_pages, front)
        files = {path: data for handle in handouts for path, data in run.result(handle).items()}
    files[f"pdf/{c.id}-booklet.pdf"] = booklet
    for topic in c.topics:
        pages = pdf_page_count(files[f"pdf/{topic.slug}.pdf"]) or 1
        if pages > 1:
            ctx.diagnostics.append(warning("CP140", f"handout '{topic.slug}' takes {pages} pages, not one",
                                           topic.sources[0].file, topic.sources[0].first_line))
    return dict(sorted(files.items())), run.fetches


def render(c: Collection, ctx: BuildContext) -> dict[str, bytes]:
    return render_with(c, ctx)[0]
