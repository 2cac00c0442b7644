"""The ``pdf`` format: tagged PDF/UA-1 handouts (normal and large print) and a booklet.

This module decides what to render: the documents' HTML (Jinja templates), their part-cache
keys, the scheduling across worker processes and the booklet's assembly from its parts.
Rendering itself, with WeasyPrint, is in :mod:`pdfrender`, which the workers import alone.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import os
import threading
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Callable, Iterable, NamedTuple

import jinja2

from ..diagnostics import CarepressError, error, warning
from ..model import Collection, Organisation, Person, Section, Topic
from . import BuildContext, Forked, Pending, fork_pool, spare
from .common import SectionHead, Shown, pdf_page_count, template_environment
from .common import shown as shown_topics  # a topic as shown is ``shown`` here
from .pdfrender import Document, Fetches, render_part

if TYPE_CHECKING:
    from ..cache import PartCache


def _environment() -> jinja2.Environment:
    return template_environment("pdf")


@lru_cache(maxsize=4096)  # a topic's code goes into its handout, large print and booklet part
def qr_data_url(url: str) -> str:
    import segno  # only for a topic with a video URL (30 ms of imports: a rebuild may need none)

    svg = segno.make(url, error="m").svg_inline(scale=4, dark="#000", light="#fff", border=2, omitsize=False)
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


class QRCodes:
    """Each video URL's QR code (:func:`qr_data_url`), drawn once and kept in the part cache:
    segno takes 8 to 12 ms a code here (most of it choosing the mask), and a rebuild draws one
    for every topic of a booklet part it renders again (14 on average), before the part can be
    queued. Every URL's code is kept while its topic is there, rendered again or not (a code
    this build does not use would be pruned, and drawn again when its part next changes)."""

    def __init__(self, parts: PartCache | None, urls: Iterable[str]):
        self.parts, self.keys = parts, {}
        if parts is not None:
            self.keys = {url: parts.key("qr", url) for url in urls}
            parts.hold(self.keys.values())

    def __call__(self, url: str) -> str:
        if self.parts is None:
            return qr_data_url(url)
        key = self.keys.get(url) or self.parts.key("qr", url)
        data = self.parts.get(key)
        if data is None:
            data = qr_data_url(url).encode("ascii")
            self.parts.put(key, data)
        return data.decode("ascii")


class Masthead(NamedTuple):
    """All of the collection that a handout or a booklet part shows, and so all they are cached
    under: their templates get this, never the collection (using more fails loudly)."""

    title: str
    language: str
    publisher: Organisation | None
    presenter: Person | None
    review_date: _dt.date | None

    @classmethod
    def of(cls, c: Collection) -> "Masthead":
        return cls(c.title, c.language, c.publisher, c.presenter, c.review_date)

    def key(self) -> str:
        return json.dumps([self.title, self.language, _json(self.publisher), _json(self.presenter),
                           self.review_date.isoformat() if self.review_date else None])


def _json(model) -> object:
    return model.model_dump(mode="json") if model is not None else None


class Job(NamedTuple):
    """A PDF to make: ``identity`` is what it is made from besides its stylesheets and settings
    (its HTML, or the inputs its HTML is a function of); ``html`` is that HTML, or a function
    that makes it, called only when the PDF is not in the part cache."""

    path: str
    identity: str
    html: "str | Callable[[], str]"
    sheets: tuple[str, ...]
    kind: str = "document"

    def document(self) -> Document:
        """What a worker is sent: the job with its HTML made."""
        return Document(self.path, self.html if isinstance(self.html, str) else self.html(), self.sheets, self.kind)


def handout_html(c: Collection | Masthead, topic: Topic, section: Section | SectionHead | None = None,
                 qr_code: Callable[[str], str] = qr_data_url) -> str:
    """A handout's HTML (the large print is the same with one more stylesheet)."""
    if section is None and isinstance(c, Collection):
        section = next((s for s in c.sections if s.slug == topic.section), None)
    qr = qr_code(topic.media.video_url) if topic.media.video_url else ""
    return _environment().get_template("handout.html").render(
        c=c, topic=topic, section=section, qr=qr)


def _handouts(c: Collection, printed: Shown, qr_code: Callable[[str], str] = qr_data_url) -> list[Job]:
    """A handout and a large-print handout per topic, in topic order."""
    head = Masthead.of(c)
    head_key = head.key()
    sections = {s.slug: SectionHead(s.slug, s.title) for s in c.sections}
    jobs = []
    for topic in c.topics:
        shown, section = printed.topics[topic.slug], sections.get(topic.section)
        identity = json.dumps([head_key, section, printed.json[topic.slug]])
        html = lru_cache(maxsize=1)(partial(handout_html, head, shown, section, qr_code))  # made once for both
        jobs.append(Job(f"pdf/{topic.slug}.pdf", "handout" + identity, html, ("base",)))
        jobs.append(Job(f"pdf/large-print/{topic.slug}.pdf", "large" + identity, html, ("base", "large")))
    return jobs


PART_PREFIX = "booklet-part:"  # names of booklet parts among the rendered documents (never published)
# A booklet part is a run of a section's topics that ends after a topic whose slug hashes to 0
# modulo PART_SPREAD, once it has PART_MIN topics (or at PART_MAX): 14 to 15 topics on average.
# Each part starts a page. The ends depend on the topics, not on where they are counted from, so
# a topic added, removed or moved changes the part it is in (and at most the next), not every
# part after it, as counting 24 at a time from the section's start did. A part is what a
# one-topic rebuild renders before the booklet's assembly: 14 topics render in about 0.25 s,
# the 23 of 12/12/36 in 0.45 s, for 8 pages more in the 1,000 synthetic topics' booklet (299, not
# 291: each of 29 more parts starts a page).
PART_SPREAD, PART_MIN, PART_MAX = 8, 8, 24


def part_runs(slugs: list[str]) -> list[list[str]]:
    """A section's topics (slugs, in order) cut into the runs the booklet's parts show."""
    runs: list[list[str]] = [[]]
    for slug in slugs:
        run = runs[-1]
        run.append(slug)
        digest = int.from_bytes(hashlib.sha256(slug.encode("utf-8")).digest()[:4], "big")
        if len(run) >= PART_MAX or (len(run) >= PART_MIN and digest % PART_SPREAD == 0):
            runs.append([])
    return [run for run in runs if run] or [[]]


def booklet_part_html(head: Masthead, section: SectionHead, topics: list[Topic], first: bool,
                      qr_code: Callable[[str], str] = qr_data_url) -> str:
    qrs = {t.slug: qr_code(t.media.video_url) if t.media.video_url else "" for t in topics}
    return _environment().get_template("booklet_part.html").render(
        c=head, section=section, topics=topics, first=first, qrs=qrs)


def booklet_parts(c: Collection, printed: Shown | None = None, qr_code: Callable[[str], str] = qr_data_url) -> list[Job]:
    """The parts of the booklet's body, in order: each section's topics cut by :func:`part_runs`.
    A part is named by its section and first topic, so its cache key stays when parts before
    it change."""
    printed = printed or shown_topics(c)
    head = Masthead.of(c)
    head_key = head.key()
    parts = []
    for section in c.sections:
        shown = SectionHead(section.slug, section.title)
        for n, run in enumerate(part_runs(list(section.topics))):
            first = n == 0
            identity = json.dumps([head_key, shown, first, [printed.json[s] for s in run]])
            parts.append(Job(f"{PART_PREFIX}{section.slug}/{run[0] if run else ''}", identity,
                             partial(booklet_part_html, head, shown, [printed.topics[s] for s in run], first, qr_code),
                             ("base", "booklet"), "part"))
    return parts


def booklet_front_html(c: Collection) -> str:
    """The booklet's cover and contents, every page number a "0": the assembly writes each
    entry's in (see pdfmerge)."""
    from .pdfmerge import GOTO

    return _environment().get_template("booklet.html").render(c=c, goto=GOTO)


def booklet_overlay_html(c: Collection) -> str:
    return _environment().get_template("booklet_overlay.html").render(c=c)


CHUNK = 24  # documents a worker takes at a time: about a second's work, so no worker idles long at the end
FEW = 8  # this many documents or fewer are one worker's work


class _Scheduler:
    """Renders documents through the part cache, across ``jobs`` processes.

    ``submit`` returns a handle (with one job, the documents are rendered there and then);
    ``result`` waits for it. So the booklet's front and overlay are rendered while the
    handouts queued after them still are.
    """

    def __init__(self, ctx: BuildContext, paper: str, epoch: int, jobs: int):
        self.ctx, self.paper, self.epoch, self.jobs = ctx, paper, epoch, jobs
        self.fetches = Fetches()
        self.pool = None
        self.pages: dict[str, int] = {}  # by path: every PDF's page count
        # page counts by part-cache key, kept in the cache too (counting them costs more than reading)
        self._counts_key = ctx.parts.key("pdf-page-counts", paper, str(epoch)) if ctx.parts is not None else ""
        known = ctx.parts.get(self._counts_key) if ctx.parts is not None else None
        self.counts: dict[str, int] = json.loads(known) if known else {}
        self._counted = dict(self.counts)

    def keep_counts(self) -> None:
        """Put the page counts of the PDFs this build used in the part cache (if they changed)."""
        parts = self.ctx.parts
        if parts is not None:
            used = {key: n for key, n in self.counts.items() if key in parts.used or key in parts.new}
            if used != self._counted:
                parts.put(self._counts_key, json.dumps(used, sort_keys=True, separators=(",", ":")).encode())

    def __enter__(self) -> "_Scheduler":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:  # our own: the build's shared workers are the build's to shut down
            self.pool.shutdown(cancel_futures=True)

    def _pool(self, few: bool):
        shared = self.ctx.workers
        if shared is not None and shared.jobs == self.jobs:
            return (few and shared.first) or shared.pool
        if self.pool is None:
            self.pool = fork_pool(self.jobs)
        return self.pool

    def lookup(self, jobs: list[Job]) -> tuple[dict[str, bytes], dict[str, str], list[Job]]:
        """What the part cache has: (cached files, every job's part-cache key, jobs to render)."""
        files: dict[str, bytes] = {}
        keys: dict[str, str] = {}
        todo: list[Job] = []
        parts = self.ctx.parts
        for job in jobs:
            if parts is not None:
                keys[job.path] = parts.key("pdf", job.path, job.identity, ",".join(job.sheets), job.kind, self.paper,
                                           str(self.epoch))
                cached = parts.get(keys[job.path])
                if cached is not None:
                    files[job.path] = cached
                    if keys[job.path] not in self.counts:
                        self.counts[keys[job.path]] = pdf_page_count(cached) or 1
                    self.pages[job.path] = self.counts[keys[job.path]]
                    continue
            todo.append(job)
        return files, keys, todo

    def dispatch(self, files: dict[str, bytes], keys: dict[str, str], todo: list[Job], chunk: int | None = None):
        """Render ``todo`` (in the workers when there are any): a handle for :meth:`result`."""
        pending = [job.document() for job in todo]
        if not pending:
            return files, keys, []
        if self.jobs == 1:
            return files, keys, [render_part(pending, self.paper, self.epoch)]
        # Even a few documents go to the workers: while one loads WeasyPrint (most of a small
        # rebuild's rendering time) this process reads the cached parts and prepares the rest.
        few = len(pending) <= FEW  # a rebuild's few documents: one worker's work, the warm one's if any
        size = chunk or (len(pending) if few else max(1, min(CHUNK, len(pending) // (self.jobs * 6))))
        pool = self._pool(few)
        return files, keys, [pool.submit(render_part, pending[i:i + size], self.paper, self.epoch)
                             for i in range(0, len(pending), size)]

    def submit(self, jobs: list[Job], chunk: int | None = None):
        return self.dispatch(*self.lookup(jobs), chunk=chunk)

    def result(self, handle, early: Callable[[dict[str, bytes]], None] | None = None) -> dict[str, bytes]:
        """The handle's files; ``early`` is given those rendered now, each worker's chunk as it
        comes back (the cached ones were there from the start)."""
        files, keys, results = handle
        if early is not None and files:
            early(dict(files))
        for result in results:
            part_files, part_fetches, part_pages = result if isinstance(result, tuple) else result.result()
            files.update(part_files)
            self.pages.update(part_pages)
            self.fetches.served += part_fetches.served
            self.fetches.refused += part_fetches.refused
            if self.ctx.parts is not None:
                for path, data in part_files.items():
                    self.ctx.parts.put(keys[path], data)
                    self.counts[keys[path]] = part_pages[path]
            if early is not None and not part_fetches.refused:
                early(part_files)
        if self.fetches.refused:
            raise CarepressError([error("CP130", f"pdf: refused to fetch {u!r}") for u in self.fetches.refused])
        return files


FRONT = f"{PART_PREFIX}front"
OVERLAY = f"{PART_PREFIX}overlay"


def _front(c: Collection) -> list[Job]:
    """The booklet's front (cover and contents) and overlay: what the collection shows, not where
    its topics fall, so they are rendered while the parts are, and a topic that moves to another
    page renders neither again (the assembly writes the page numbers in)."""
    front = booklet_front_html(c)
    overlay = booklet_overlay_html(c)
    return [Job(FRONT, front, front, ("base", "booklet"), "part"),
            Job(OVERLAY, overlay, overlay, ("base", "overlay"), "overlay")]


def _booklet(c: Collection, body: list, run: _Scheduler, handle, front=None) -> bytes | Forked:
    """Assemble the booklet from its front and overlay (queued as ``handle``; ``front``: the
    front already opened, if it was cached) and the ``body`` parts."""
    from .pdfmerge import assemble, open_part

    rendered = run.result(handle)
    front = front or open_part(rendered[FRONT])
    outline, labels = _outline(c)
    if run.jobs == 1:
        return assemble(front, body, rendered[OVERLAY], outline, labels)
    # With processes to spare, a child assembles the booklet while this process renders the
    # other formats: only the HTML site (it shows the booklet's size) and publishing wait for it.
    return Forked(partial(_assemble, front, body, rendered[OVERLAY], outline, labels))


def _assemble(*args) -> bytes:
    """:func:`pdfmerge.assemble` in a child process: a failure comes back as a PDF error."""
    from .pdfmerge import assemble

    try:
        return assemble(*args)
    except Exception as exc:
        if os.environ.get("CAREPRESS_DEBUG"):
            raise
        raise CarepressError([error("CP130", f"pdf: assembling the booklet: {type(exc).__name__}: {exc}")]) from None


class _Started(NamedTuple):
    run: _Scheduler
    names: list[Job]  # the booklet's body parts
    parts: tuple  # their handle
    front: tuple  # the handle of the booklet's front and overlay
    handouts: list  # handles of handouts on their way
    # A rebuild's booklet, assembled as soon as its new parts are back (see _Assembly)
    booklet: "_Assembly | None" = None


class _Assembly(Pending):
    """A rebuild's booklet: assembled by a child (a fed :class:`Forked`) that this process forks
    while the new parts render and that starts the moment they are back: the thread receiving
    them from the worker (their futures' done-callback) sends them to it, whatever this process
    is making then (the EPUB, the site). The assembly is what a small rebuild waits for; before,
    this process waited for the part, a quarter of a second idle, and forked the child then.
    ``result()`` waits for the booklet."""

    def __init__(self, handles: list[tuple], child: Forked):
        self._futures = [future for handle in handles for future in handle[2]]
        self._child = child
        self._left = len(self._futures)
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        if not self._futures:
            self._feed()
        for future in self._futures:
            future.add_done_callback(self._done)

    def _done(self, future) -> None:
        with self._lock:
            self._left -= 1
            if self._left:
                return
        self._feed()

    def _feed(self) -> None:
        files: dict[str, bytes] | None = {}
        try:
            for future in self._futures:
                files.update(future.result()[0])
        except BaseException as exc:  # a part that failed: its stage reports it (render_with)
            self._error, files = exc, None
        self._child.feed(files)

    def result(self) -> bytes:
        if self._error is not None:
            raise self._error
        return self._child.result()


def start(c: Collection, ctx: BuildContext) -> _Started:
    """Send the workers what is not cached: the booklet's front and overlay first (the front,
    a long contents, is the longest single document), then its topic parts, then the handouts.

    When few parts are new (a rebuild), they go first (the front's HTML, rendered to find it in
    the cache, would hold them back a tenth of a second), then the child that assembles the
    booklet is forked: it opens the cached parts while they render and assembles as soon as they
    are back (_Assembly)."""
    paper = str(ctx.options.get("paper") or ctx.config.pdf.paper)
    jobs = max(1, int(ctx.options.get("jobs") or 1))
    run = _Scheduler(ctx, paper, ctx.source_date_epoch, jobs)
    printed = shown_topics(c)
    qr_code = QRCodes(ctx.parts, (t.media.video_url for t in c.topics if t.media.video_url))
    names = booklet_parts(c, printed, qr_code)
    parts = run.lookup(names)
    if len(parts[2]) <= FEW:
        parts = run.dispatch(*parts, chunk=1)
        front = run.submit(_front(c), chunk=1)
    else:
        front = run.submit(_front(c), chunk=1)
        parts = run.dispatch(*parts, chunk=1)
    booklet = None
    if jobs > 1 and (parts[0] or front[0]) and len(parts[2]) + len(front[2]) <= FEW:
        # a rebuild with few new parts: the child is forked before the handouts are looked up
        # (a tenth of a second), opens the cached parts meanwhile and is ready when they are back
        booklet = _early_booklet(c, names, parts, front)
    files, keys, todo = run.lookup(_handouts(c, printed, qr_code))
    handouts = [run.dispatch(files, keys, todo)]
    return _Started(run, names, parts, front, handouts, booklet)


def _open_cached(parts: tuple, front: tuple) -> tuple[dict, object]:
    """The cached parts (from their handle), opened by path, and the front if it was cached."""
    from .pdfmerge import open_part

    return ({path: open_part(data) for path, data in parts[0].items()},
            open_part(front[0][FRONT]) if FRONT in front[0] else None)


def _opened(parts: tuple, front: tuple) -> tuple[dict, object]:
    """:func:`_open_cached` in this process, while the new parts render (a first build): freed
    after the build (see formats.spare)."""
    cached, opened = _open_cached(parts, front)
    spare(list(cached.values()), opened)
    return cached, opened


def _body(names: list[Job], cached: dict, files: dict[str, bytes]) -> list:
    """The booklet's body parts in order: each cached one as opened, the others from ``files``."""
    from .pdfmerge import open_part

    return [cached.get(job.path) or open_part(files[job.path]) for job in names]


def _early_booklet(c: Collection, names: list[Job], parts: tuple, front: tuple) -> _Assembly:
    """The child that assembles a rebuild's booklet, forked now: it opens the cached parts while
    the new ones render (this process makes the other formats meanwhile) and is fed the new ones."""
    from .pdfmerge import open_part

    overlay = front[0].get(OVERLAY)
    outline, labels = _outline(c)

    def make(opened: tuple, files: dict[str, bytes]) -> bytes:  # in the child, given the new parts' files
        cached, head = opened
        head = head or open_part(files[FRONT])
        return _assemble(head, _body(names, cached, files), overlay or files[OVERLAY], outline, labels)

    # the child opens the cached parts before the new ones are back
    return _Assembly([parts, front], Forked(make, fed=True, prepare=partial(_open_cached, parts, front)))


def _outline(c: Collection) -> tuple[list, dict[str, str]]:
    outline = [(s.title, f"section-{s.slug}", [(t.title, f"topic-{t.slug}") for t in c.section_topics(s)])
               for s in c.sections]
    labels = {f"section-{s.slug}": s.title for s in c.sections} | {f"topic-{t.slug}": t.title for t in c.topics}
    return outline, labels


def render_with(c: Collection, ctx: BuildContext) -> tuple[dict[str, bytes | Pending], Fetches]:
    """Every PDF: what :func:`start` sent the workers (or, called alone, sends now), then the
    booklet assembled from its parts while the handouts render (with jobs > 1, in a child
    process: see _booklet), or already being assembled (a rebuild: see _Assembly)."""
    begun = ctx.started.get("pdf") or start(c, ctx)
    with begun.run as run:
        if begun.booklet is not None:
            run.result(begun.parts)  # into the part cache; a failed part raises here
            run.result(begun.front)
            booklet: bytes | Pending = begun.booklet
        else:
            cached, front = _opened(begun.parts, begun.front)  # while the others render
            body = _body(begun.names, cached, run.result(begun.parts))
            booklet = _booklet(c, body, run, begun.front, front)
            spare(body)  # the parts rendered now, too
        files: dict[str, bytes | Pending] = {path: data for handle in begun.handouts
                                             for path, data in run.result(handle, ctx.early).items()}
        run.keep_counts()
    files[f"pdf/{c.id}-booklet.pdf"] = booklet
    ctx.pages.update((path, n) for path, n in run.pages.items() if path in files)
    ctx.pages[f"pdf/{c.id}-booklet.pdf"] = run.pages[FRONT] + sum(run.pages[job.path] for job in begun.names)
    for topic in c.topics:
        pages = run.pages[f"pdf/{topic.slug}.pdf"]
        if pages > 1:
            ctx.diagnostics.append(warning("CP140", f"handout '{topic.slug}' takes {pages} pages, not one",
                                           topic.sources[0].file, topic.sources[0].first_line))
    return dict(sorted(files.items())), run.fetches


def render(c: Collection, ctx: BuildContext) -> dict[str, bytes]:
    return render_with(c, ctx)[0]
