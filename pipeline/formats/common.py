"""Pieces every format shares: escaped HTML for body blocks, package assets, dates."""

from __future__ import annotations

import datetime as _dt
import os
import re
import weakref
import zlib
from functools import lru_cache
from typing import NamedTuple

from markupsafe import Markup, escape

from ..model import Collection, ListBlock, Paragraph, Topic
from ..cache import PACKAGE_DIR
from .assets import FONT_FAMILY, FONT_FILES, TEMPLATE_DIR


class SectionHead(NamedTuple):
    """A section as a page shows it: not its list of topics, so a page cached under it does not
    change when another topic joins the section."""

    slug: str
    title: str


class Shown(NamedTuple):
    """The topics as the publications show them (everything but where they came from in the
    source), by slug, and the JSON of each, which the part cache keys what shows it by."""

    topics: dict[str, Topic]
    json: dict[str, str]


_SHOWN: list = [None, None]  # the collection last asked about (a weak reference) and its Shown


def shown(collection: Collection) -> Shown:
    """:class:`Shown` for ``collection``, made once per build: the PDF and EPUB stages both
    use it (copying and dumping a thousand topics takes about 17 ms each time)."""
    if _SHOWN[0] is None or _SHOWN[0]() is not collection:
        topics = {t.slug: t.model_copy(update={"sources": ()}) for t in collection.topics}
        _SHOWN[:] = [weakref.ref(collection), Shown(topics, {slug: t.model_dump_json() for slug, t in topics.items()})]
    return _SHOWN[1]


def stylesheet_with_fonts(css: str, font_url: str, display: bool = False) -> bytes:
    """``css`` (FONT_FAMILY standing for the family) after an @font-face per packaged font,
    each loaded from ``font_url`` + its file name (HTML site and EPUB)."""
    faces = []
    for (style, weight), name in sorted(FONT_FILES.items()):
        faces.append(
            "@font-face {\n"
            f'  font-family: "{FONT_FAMILY}";\n'
            f"  font-style: {style};\n"
            f"  font-weight: {weight};\n"
            + ("  font-display: swap;\n" if display else "")
            + f'  src: url("{font_url}{name}") format("truetype");\n'
            "}\n"
        )
    return ("".join(faces) + "\n" + css.replace("FONT_FAMILY", f'"{FONT_FAMILY}"')).encode("utf-8")


@lru_cache(maxsize=None)
def template_environment(folder: str, finalize=None):
    """A Jinja2 environment for one format's templates: autoescape on, undefined is an error.

    Source text is only ever text: every ``{{ value }}`` is escaped, and only ``Markup``
    made by :func:`blocks_html` / :func:`paragraphs_html` (already escaped) goes in as is.
    """
    import jinja2

    options = dict(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                   keep_trailing_newline=True, finalize=finalize)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR / folder)),
        auto_reload=False,  # package data, fixed for the process: no stat on every get_template
        bytecode_cache=_template_cache(folder, options),
        **options,
    )
    env.globals.update(
        blocks_html=blocks_html, paragraphs_html=paragraphs_html, human_date=human_date,
        human_duration=human_duration, presenter_line=presenter_line, series_label=series_label,
    )
    return env


def _template_cache(folder: str, options: dict):
    """Compiled templates kept between processes, in the package's ``__pycache__`` (as Python
    keeps its own): compiling the templates a build uses costs about a tenth of a second, on
    the path of every rebuild. Jinja checks each entry against its template's source; the
    file names also carry the Jinja version and the environment's options, which change the
    compiled code. A folder that cannot be written only means no cache."""
    import hashlib

    import jinja2
    from jinja2.bccache import FileSystemBytecodeCache

    class TemplateCache(FileSystemBytecodeCache):
        def dump_bytecode(self, bucket) -> None:
            try:
                os.makedirs(self.directory, exist_ok=True)
                super().dump_bytecode(bucket)
            except OSError:
                pass

        def load_bytecode(self, bucket) -> None:
            try:
                super().load_bytecode(bucket)
            except (OSError, ValueError, EOFError, TypeError):  # damaged: compiled anew
                bucket.reset()

    settings = sorted((name, getattr(value, "__qualname__", value)) for name, value in options.items())
    described = repr((jinja2.__version__, folder, settings))
    tag = hashlib.sha256(described.encode()).hexdigest()[:16]
    return TemplateCache(str(PACKAGE_DIR / "__pycache__" / "templates"), f"{folder}-{tag}-%s.jinja")


def blocks_html(blocks: tuple[Paragraph | ListBlock, ...]) -> Markup:
    """Body blocks as HTML/XHTML; every character of source text is escaped."""
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Paragraph):
            parts.append(f"<p>{escape(block.text)}</p>")
        else:
            tag = "ol" if block.ordered else "ul"
            items = "".join(f"<li>{escape(item)}</li>" for item in block.items)
            parts.append(f"<{tag}>{items}</{tag}>")
    return Markup("\n".join(parts))


def paragraphs_html(text: str) -> Markup:
    """Plain text with blank-line paragraphs (a description, a transcript) as escaped <p>s."""
    return Markup("\n".join(f"<p>{escape(p)}</p>" for p in text.split("\n\n") if p.strip()))


def human_date(date: _dt.date | None) -> str:
    """'25 November 2026': unambiguous for readers in any country."""
    return f"{date.day} {date:%B %Y}" if date else ""


def series_label(topic: Topic) -> str:
    return f"Part {topic.series.part} of {topic.series.total}" if topic.series else ""


def presenter_line(collection: Collection) -> str:
    p = collection.presenter
    if p is None:
        return ""
    return f"{p.name}, {p.role}" if p.role else p.name


def human_duration(seconds: float | None) -> str:
    """'1 minute 5 seconds' (empty when unknown)."""
    if not seconds:
        return ""
    minutes, secs = divmod(max(1, round(seconds)), 60)
    parts = [f"{minutes} minute" + ("" if minutes == 1 else "s")] if minutes else []
    if secs:
        parts.append(f"{secs} second" + ("" if secs == 1 else "s"))
    return " ".join(parts)


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


_PAGES_RE = re.compile(rb"/Type\s*/Pages\b")
_COUNT_RE = re.compile(rb"/Count\s+(\d+)")
_STREAM_RE = re.compile(rb"stream\r?\n(.*?)endstream", re.S)
_OBJSTM_RE = re.compile(rb"<<[^<>]*/Type\s*/ObjStm[^<>]*>>\s*stream\r?\n")


def _enclosing_dict(chunk: bytes, at: int) -> bytes:
    """The ``<< ... >>`` dictionary around position ``at`` (nested dictionaries skipped)."""
    depth, start = 0, at
    while start > 0:
        start -= 1
        pair = chunk[start:start + 2]
        if pair == b">>":
            depth += 1
        elif pair == b"<<":
            if depth == 0:
                break
            depth -= 1
    depth, end = 0, at
    while end < len(chunk) - 1:
        pair = chunk[end:end + 2]
        if pair == b"<<":
            depth += 1
            end += 2
            continue
        if pair == b">>":
            if depth == 0:
                return chunk[start:end + 2]
            depth -= 1
            end += 2
            continue
        end += 1
    return chunk[start:]


@lru_cache(maxsize=4096)  # the PDF format and the HTML download details ask for the same files
def pdf_page_count(data: bytes) -> int | None:
    """Pages in a PDF (the /Count of its page tree root), or None when it cannot be read.

    Looks in plain objects and in Flate-compressed object streams (WeasyPrint writes
    those), so no PDF library is needed at build time.
    """
    if not data.startswith(b"%PDF-"):
        return None
    counts = _page_counts(data)
    for found in [] if counts else _OBJSTM_RE.finditer(data):  # object streams: inflate just those
        try:
            counts += _page_counts(zlib.decompressobj().decompress(data[found.end():data.find(b"endstream", found.end())]))
        except zlib.error:
            continue
    if not counts:  # elsewhere: every stream (fonts and pages are most of the bytes)
        for match in _STREAM_RE.finditer(data):
            try:
                counts += _page_counts(zlib.decompress(match.group(1)))
            except zlib.error:
                continue
    return max(counts) if counts else None


def _page_counts(chunk: bytes) -> list[int]:
    counts = []
    for found in _PAGES_RE.finditer(chunk):
        count = _COUNT_RE.search(_enclosing_dict(chunk, found.start()))
        if count:
            counts.append(int(count.group(1)))
    return counts
