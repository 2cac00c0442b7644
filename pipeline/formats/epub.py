"""The ``epub`` format: one EPUB 3.3 e-book, ``epub/<collection-id>.epub``.

Reading order (the spine): a generated cover (PNG with alt text), a title page
(publisher, presenter, review date), the table of contents, then per section a short
section page followed by one XHTML document per topic (the parts of a series kept
together), and last an "About this book" page. The navigation document has the table
of contents nested by section (and series) and the landmarks cover, toc, bodymatter;
a legacy NCX is kept for older reading systems.

Metadata: title, language (``xml:lang`` on the package and every document), a stable
``urn:uuid`` identifier (UUIDv5 of the collection id: the same every build), creator
(the presenter), publisher, rights, subjects, ``dcterms:modified`` from
``SOURCE_DATE_EPOCH``, and EPUB Accessibility 1.1 discovery metadata.

ebooklib assembles the package (manifest, spine, metadata, NCX); the XHTML documents
come from autoescaping Jinja2 templates under ``templates/epub/`` and are stored as
written. ebooklib cannot put ``xml:lang`` on ``<package>``, so the OPF is patched, and
the zip is rewritten reproducibly: ``mimetype`` first and stored, then a fixed entry
order, timestamps from ``SOURCE_DATE_EPOCH``, fixed permissions and compression.
Renderers do no file I/O: the book is built in memory and returned as bytes.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple
from urllib.parse import urlsplit

import jinja2
from lxml import etree
from markupsafe import Markup

from ..cache import cached
from ..diagnostics import CarepressError, error
from ..model import Collection, Section, Series, Topic
from . import BuildContext
from .assets import FONT_FAMILY, FONT_FILES, FONT_LICENCE, TEMPLATE_DIR, epoch_datetime, font_bytes
from .common import (
    blocks_html,
    human_date,
    human_duration,
    paragraphs_html,
    presenter_line,
    shown,
    stylesheet_with_fonts,
    template_environment,
)

EPUB_TEMPLATES = TEMPLATE_DIR / "epub"
FOLDER = "EPUB"  # ebooklib's content folder inside the zip
CSS_PATH = "css/book.css"
COVER_IMAGE = "images/cover.png"
FONT_PATH = "fonts"
XML_NS = "http://www.w3.org/XML/1998/namespace"
# The namespace for our identifiers: urn:uuid:<uuid5(NS, collection id)>; never change it.
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://carepress.invalid/collection/")
CONFORMS_TO = "EPUB Accessibility 1.1 - WCAG 2.2 Level AA"
ZIP_MIN_EPOCH = 315532800  # 1980-01-01: the earliest time a zip entry can carry


# Characters XML 1.0 cannot carry (C0 controls but tab/newline/return, surrogates, U+FFFE/F):
# raw text may hold them (a stray form feed from a PDF copy), a reading system must not see them.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NOT_XML_CONTROL = re.compile("[\u007f-\u009f]")  # allowed but unprintable: drop them too


def xml_safe(value):
    """Text without characters XML cannot hold (Markup stays Markup: it is already escaped)."""
    if not isinstance(value, str):
        return value
    cleaned = _NOT_XML_CONTROL.sub("", _NOT_XML.sub("", value))
    return Markup(cleaned) if isinstance(value, Markup) else cleaned


def book_identifier(collection_id: str) -> str:
    """The book's stable unique identifier: the same for a collection id on every build."""
    return f"urn:uuid:{uuid.uuid5(ID_NAMESPACE, collection_id)}"


@dataclass(frozen=True)
class Doc:
    """One XHTML content document of the spine."""

    id: str
    href: str  # relative to the package folder
    title: str
    content: bytes


def _environment() -> jinja2.Environment:
    return template_environment("epub", finalize=xml_safe)  # every {{ value }} loses characters XML cannot hold


def _xhtml(template: str, **values) -> bytes:
    text = _environment().get_template(template).render(**values)
    text = re.sub(r"[ \t]+\n", "\n", text)
    data = text.encode("utf-8")
    etree.fromstring(data)  # well-formed XML or a clear error now, not in a reading system
    return data


def topic_href(topic: Topic) -> str:
    return f"topic-{topic.slug}.xhtml"


def section_href(section: Section) -> str:
    return f"section-{section.slug}.xhtml"


def groups(collection: Collection, section: Section) -> list[dict]:
    """A section's topics in reading order with the parts of a series kept together.

    The first part met fixes where the series goes; its other parts in the same section
    follow it in part order (so the spine and the table of contents agree).
    """
    out: list[dict] = []
    placed: set[str] = set()
    topics = collection.section_topics(section)
    for topic in topics:
        if topic.slug in placed:
            continue
        if topic.series is None:
            out.append({"series": None, "topics": [topic]})
            placed.add(topic.slug)
            continue
        parts = [t for t in collection.series_topics(topic) if t.section == section.slug and t.slug not in placed]
        placed.update(t.slug for t in parts)
        out.append({"series": topic.series, "topics": parts})
    return out


def reading_order(collection: Collection) -> list[tuple[Section, list[dict]]]:
    return [(section, groups(collection, section)) for section in collection.sections]


class Entry(NamedTuple):
    """A topic as the contents show it (the nav document, the section pages, the NCX)."""

    slug: str
    title: str
    series: Series | None


class Part(NamedTuple):
    """A section as the contents show it."""

    slug: str
    title: str
    topics: tuple[str, ...]


class Title(NamedTuple):
    title: str


def contents(order: list[tuple[Section, list[dict]]]) -> list[tuple[Part, list[dict]]]:
    """The reading order with only what the contents show. The nav document, the section pages
    and the NCX are made from it alone and cached under its text (a template reaching for
    more fails: StrictUndefined), so an edit that changes no title makes none of them again
    (about a tenth of a second of a thousand topics' rebuild)."""
    return [(Part(section.slug, section.title, section.topics),
             [{"series": group["series"], "topics": [Entry(t.slug, t.title, t.series) for t in group["topics"]]}
              for group in section_groups])
            for section, section_groups in order]


def subjects(collection: Collection, ctx: BuildContext) -> list[str]:
    """Subject terms: the editors' list, else the topics' tags (first use order)."""
    terms = list(ctx.config.subjects)
    if not terms:
        for topic in collection.topics:
            terms.extend(topic.tags)
    seen: set[str] = set()
    return [t for t in terms if not (t.casefold() in seen or seen.add(t.casefold()))]


def accessibility_summary(collection: Collection) -> str:
    return (
        "This e-book is text that a screen reader can read aloud and that you can enlarge, restyle "
        "or show in a dark theme in your reading app. It has a table of contents by section, headings "
        "on every page and a logical reading order. The only image is the cover, which has a text "
        "description. Video links open on the internet; the full text of each topic is in the book. "
        "It has no flashing, sound or motion hazards. It is meant to meet WCAG 2.2 Level AA."
    )


# --- the cover ---------------------------------------------------------------------

COVER_SIZE = (1600, 2400)
COVER_BACKGROUND = (17, 63, 84)  # deep blue-teal; white text on it has contrast > 10:1
COVER_ACCENT = (255, 200, 87)
COVER_TEXT = (255, 255, 255)


def _wrap(draw, text: str, font, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def cover_lines(collection: Collection) -> dict[str, str]:
    """The words on the cover image: the alt text repeats every one of them."""
    return {
        "title": collection.title,
        "kicker": "Patient education",
        "presenter": f"Presented by {collection.presenter.name}" if collection.presenter else "",
        "publisher": collection.publisher.name if collection.publisher else "",
    }


def cover_alt(collection: Collection) -> str:
    lines = cover_lines(collection)
    words = [f"Cover of the e-book “{lines['title']}”", f"{lines['kicker']}."]
    if lines["presenter"]:
        words.append(f"{lines['presenter']}.")
    if lines["publisher"]:
        words.append(f"Published by {lines['publisher']}.")
    return words[0] + ". " + " ".join(words[1:])


def cover_png(collection: Collection) -> bytes:
    """A generated PNG cover (stores need a raster cover); same bytes for the same input."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = COVER_SIZE
    margin = 150
    image = Image.new("RGB", COVER_SIZE, COVER_BACKGROUND)
    draw = ImageDraw.Draw(image)
    bold = io.BytesIO(font_bytes(FONT_FILES[("normal", 700)]))
    regular = io.BytesIO(font_bytes(FONT_FILES[("normal", 400)]))
    lines = {k: xml_safe(v) for k, v in cover_lines(collection).items()}

    def font(data: io.BytesIO, size: int):
        data.seek(0)
        return ImageFont.truetype(data, size)

    small = font(regular, 70)
    draw.text((margin, 300), lines["kicker"].upper(), font=small, fill=COVER_ACCENT)
    draw.rectangle((margin, 410, margin + 300, 430), fill=COVER_ACCENT)
    inner = width - 2 * margin
    footer = [_wrap(draw, lines[key], small, inner) for key in ("presenter", "publisher") if lines[key]]
    footer_top = height - margin - sum(95 * len(block) + 40 for block in footer)
    room = footer_top - 80 - 560  # between the kicker and the presenter/publisher lines
    size = 190
    title_font = font(bold, size)
    title = _wrap(draw, lines["title"], title_font, inner)
    while size > 40 and (len(title) * size * 1.2 > room
                         or any(draw.textlength(t, font=title_font) > inner for t in title)):
        size -= 10
        title_font = font(bold, size)
        title = _wrap(draw, lines["title"], title_font, inner)
    y = 560
    for line in title:
        draw.text((margin, y), line, font=title_font, fill=COVER_TEXT)
        y += int(size * 1.2)
    y = footer_top
    for block in footer:
        for line in block:
            draw.text((margin, y), line, font=small, fill=COVER_TEXT)
            y += 95
        y += 40
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


# --- the documents -----------------------------------------------------------------

def _stylesheet() -> bytes:
    return stylesheet_with_fonts((EPUB_TEMPLATES / "book.css").read_text(encoding="utf-8"), f"../{FONT_PATH}/")


def _video(topic: Topic) -> dict | None:
    url = topic.media.video_url
    if not url:
        return None
    return {"url": url, "host": urlsplit(url).hostname or url, "duration": human_duration(topic.media.duration_seconds)}


def _documents(collection: Collection, ctx: BuildContext) -> tuple[list[Doc], list[tuple[Part, list[dict]]], str]:
    """The book's documents in reading order, the contents (:func:`contents`) and their text, which
    the nav document and the NCX are cached under."""
    lang = collection.language
    order = reading_order(collection)
    toc = contents(order)
    toc_text = repr(toc)
    first_body = section_href(order[0][0])
    page = {"lang": lang, "css": CSS_PATH}  # what every document gets; topic and contents documents get no more
    common = {**page, "collection": collection}
    book = Title(collection.title)
    shows = shown(collection)
    modified = epoch_datetime(ctx.source_date_epoch)
    docs = [
        Doc("cover", "cover.xhtml", "Cover", _xhtml(
            "cover.xhtml", **common, title="Cover", image=COVER_IMAGE, alt=cover_alt(collection))),
        Doc("titlepage", "title.xhtml", "Title page", _xhtml(
            "title.xhtml", **common, title=collection.title, presenter=presenter_line(collection),
            description=paragraphs_html(collection.description) if collection.description else "")),
        Doc("nav", "nav.xhtml", "Contents", cached(ctx.parts, lambda: _xhtml(
            "nav.xhtml", **page, collection=book, title="Contents", order=toc, topic_href=topic_href,
            section_href=section_href, first_body=first_body), "epub-nav", lang, repr(book), first_body, toc_text)),
    ]
    for (section, section_groups), (part, part_groups) in zip(order, toc):
        docs.append(Doc(f"section-{section.slug}", section_href(section), section.title, cached(ctx.parts, partial(
            _xhtml, "section.xhtml", **page, title=part.title, section=part, groups=part_groups,
            topic_href=topic_href), "epub-section", lang, repr(part), repr(part_groups))))
        for group in section_groups:
            for topic in group["topics"]:
                topic = shows.topics[topic.slug]  # as shown: where it came from is not
                parts = tuple(shows.topics[p.slug] for p in collection.series_topics(topic)) if topic.series else ()
                index = [p.slug for p in parts].index(topic.slug) if parts else -1
                # cached under all it is given (no ``collection``: a template using it fails loudly)
                data = cached(ctx.parts, lambda: _xhtml(
                    "topic.xhtml", **page, title=topic.title, topic=topic, section=section,
                    section_href=section_href(section), body=blocks_html(topic.body),
                    transcript=paragraphs_html(topic.transcript) if topic.transcript else "",
                    video=_video(topic), parts=parts, topic_href=topic_href,
                    previous=parts[index - 1] if index > 0 else None,
                    next=parts[index + 1] if 0 <= index < len(parts) - 1 else None),
                    "epub-topic", lang, shows.json[topic.slug], section.slug, section.title,
                    repr([(p.slug, p.title) for p in parts]))
                docs.append(Doc(f"topic-{topic.slug}", topic_href(topic), topic.title, data))
    with_video = sum(1 for t in collection.topics if t.media.video_url)
    docs.append(Doc("about", "about.xhtml", "About this book", _xhtml(
        "about.xhtml", **common, title="About this book", summary=accessibility_summary(collection),
        topics=len(collection.topics), with_video=with_video, built=human_date(modified.date()),
        font_family=FONT_FAMILY, font_licence=f"{FONT_PATH}/{FONT_LICENCE}",
        description=paragraphs_html(collection.description) if collection.description else "")))
    return docs, toc, toc_text


# --- the package -------------------------------------------------------------------

def _book(collection: Collection, ctx: BuildContext):
    from ebooklib import epub

    docs, toc, toc_text = _documents(collection, ctx)
    book = epub.EpubBook()
    book.FOLDER_NAME = FOLDER
    book.set_identifier(book_identifier(collection.id))
    book.set_title(xml_safe(collection.title))
    book.set_language(collection.language)
    if collection.presenter:
        book.add_author(xml_safe(collection.presenter.name), role="aut", uid="creator")
    elif collection.publisher:
        book.add_author(xml_safe(collection.publisher.name), uid="creator")
    if collection.publisher:
        book.add_metadata("DC", "publisher", xml_safe(collection.publisher.name))
    if collection.description:
        book.add_metadata("DC", "description", xml_safe(" ".join(collection.description.split())))
    if collection.licence:
        book.add_metadata("DC", "rights", xml_safe(collection.licence))
    for term in subjects(collection, ctx):
        book.add_metadata("DC", "subject", xml_safe(term))

    def meta(prop: str, value: str, **attrs: str) -> None:
        book.add_metadata(None, "meta", xml_safe(value), {"property": prop, **attrs})

    meta("schema:accessMode", "textual")
    meta("schema:accessMode", "visual")  # the cover image
    meta("schema:accessModeSufficient", "textual")
    for feature in ("structuralNavigation", "tableOfContents", "readingOrder", "displayTransformability",
                    "alternativeText"):
        meta("schema:accessibilityFeature", feature)
    meta("schema:accessibilityHazard", "none")
    meta("schema:accessibilitySummary", accessibility_summary(collection))
    meta("dcterms:conformsTo", CONFORMS_TO)
    if collection.publisher:
        meta("a11y:certifiedBy", collection.publisher.name)  # the publisher declares the claim
    book.add_metadata(None, "meta", "", {"name": "cover", "content": "cover-image"})

    items = {}
    for doc in docs:
        item = epub.EpubItem(uid=doc.id, file_name=doc.href, media_type="application/xhtml+xml",
                             content=doc.content)
        if doc.id == "nav":
            item.properties = ["nav"]
        book.add_item(item)
        items[doc.id] = item
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubItem(uid="css", file_name=CSS_PATH, media_type="text/css", content=_stylesheet()))
    book.add_item(epub.EpubCover(uid="cover-image", file_name=COVER_IMAGE))
    book.get_item_with_id("cover-image").content = cached(
        ctx.parts, lambda: cover_png(collection), "epub-cover", repr(cover_lines(collection)))
    for n, name in enumerate(sorted(FONT_FILES.values()), 1):
        book.add_item(epub.EpubItem(uid=f"font-{n}", file_name=f"{FONT_PATH}/{name}", media_type="font/ttf",
                                    content=font_bytes(name)))
    book.add_item(epub.EpubItem(uid="font-licence", file_name=f"{FONT_PATH}/{FONT_LICENCE}",
                                media_type="text/plain", content=font_bytes(FONT_LICENCE)))
    book.spine = [items[doc.id] for doc in docs]

    # The legacy NCX table of contents (the nav document is written from our template), from
    # the contents alone: ebooklib's NCX is cached under them (see _written).
    ncx: list = []
    for section, section_groups in toc:
        children: list = []
        for group in section_groups:
            links = [epub.Link(topic_href(t), xml_safe(t.title), f"ncx-topic-{t.slug}") for t in group["topics"]]
            if group["series"] is not None and len(links) > 1:
                children.append((epub.Section(xml_safe(group["series"].title), topic_href(group["topics"][0])), links))
            else:
                children.extend(links)
        ncx.append((epub.Section(xml_safe(section.title), section_href(section)), children))
    ncx.append(epub.Link("about.xhtml", "About this book", "ncx-about"))
    book.toc = ncx
    return book, toc_text


def _patch_opf(data: bytes, lang: str) -> bytes:
    """``xml:lang`` on <package> (ebooklib cannot set it); nothing else changes."""
    root = etree.fromstring(data)
    root.set(f"{{{XML_NS}}}lang", lang)
    return etree.tostring(root, pretty_print=True, encoding="utf-8", xml_declaration=True)


class Deflated(NamedTuple):
    """One zip entry's data as a zip stores it: raw deflate at level 9, its CRC-32 and size."""

    crc: int
    size: int
    data: bytes

    @classmethod
    def of(cls, raw: bytes) -> "Deflated":
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        return cls(zlib.crc32(raw), len(raw), packer.compress(raw) + packer.flush())

    def pack(self) -> bytes:
        return struct.pack("<2L", self.crc, self.size) + self.data

    @classmethod
    def unpack(cls, data: bytes) -> "Deflated":
        crc, size = struct.unpack_from("<2L", data)
        return cls(crc, size, data[8:])


def deflated(parts, raw: bytes) -> Deflated:
    """``raw`` deflated, from the part cache when this content was deflated before (the e-book's
    thousand documents and its fonts are mostly the same from one build to the next)."""
    if parts is None:
        return Deflated.of(raw)
    return Deflated.unpack(cached(parts, lambda: Deflated.of(raw).pack(), "deflate-9", hashlib.sha256(raw).digest()))


def reproducible_zip(entries: list[tuple[str, bytes]], epoch: int, parts=None) -> bytes:
    """An EPUB zip: mimetype first and stored; given order, time and permissions for every entry;
    the others deflated at level 9. Written here (the bytes Python's zipfile writes for the
    same entries) so that deflated data can come from the part cache."""
    stamp = epoch_datetime(max(epoch, ZIP_MIN_EPOCH)).timetuple()[:6]
    dostime = stamp[3] << 11 | stamp[4] << 5 | stamp[5] // 2
    dosdate = (stamp[0] - 1980) << 9 | stamp[1] << 5 | stamp[2]
    out: list[bytes] = []
    central: list[bytes] = []
    offset = 0
    for name, raw in entries:
        try:
            encoded, flags = name.encode("ascii"), 0
        except UnicodeEncodeError:
            encoded, flags = name.encode("utf-8"), 0x800
        if name == "mimetype":
            method, entry = 0, Deflated(zlib.crc32(raw), len(raw), raw)
        else:
            method, entry = 8, deflated(parts, raw)
        sizes = (entry.crc, len(entry.data), entry.size, len(encoded))
        header = struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, flags, method, dostime, dosdate, *sizes, 0)
        central.append(struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, flags, method, dostime, dosdate,
                                   *sizes, 0, 0, 0, 0, 0o100644 << 16, offset) + encoded)
        out += [header, encoded, entry.data]
        offset += len(header) + len(encoded) + len(entry.data)
    directory = b"".join(central)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central), len(directory), offset, 0)
    return b"".join(out) + directory + end


class _Entries:
    """What ebooklib would write into its zip, kept as (name, bytes) in its order."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, bytes]] = []

    def writestr(self, name, data, compress_type=None) -> None:
        name = getattr(name, "filename", name)
        self.entries.append((name, data.encode("utf-8") if isinstance(data, str) else bytes(data)))


def _written(book, mtime, parts=None, toc: str = "") -> list[tuple[str, bytes]]:
    """The book's files as ebooklib writes them (container, package document, NCX, items),
    without its zip: the final zip is written once, by :func:`reproducible_zip`. The NCX, made
    from the book's identifier, title and table of contents alone (``toc``: the text of what
    :func:`_book` made it from), comes from the part cache when they are the same."""
    from ebooklib import epub

    writer = epub.EpubWriter(io.BytesIO(), book, {"mtime": mtime, "epub3_landmark": False, "epub2_guide": False,
                                                   "raise_exceptions": True})
    ncx = writer._get_ncx
    writer._get_ncx = lambda: cached(parts, ncx, "epub-ncx", book.uid, book.title, toc)
    writer.out = _Entries()  # what EpubWriter.write does, into a list instead of a zip
    writer.out.writestr("mimetype", "application/epub+zip")
    writer._write_container()
    writer._write_opf()
    writer._write_items()
    return writer.out.entries


def build_epub(collection: Collection, ctx: BuildContext) -> bytes:
    book, toc = _book(collection, ctx)
    written = _written(book, epoch_datetime(ctx.source_date_epoch), ctx.parts, toc)
    opf = f"{FOLDER}/content.opf"
    first = ["mimetype", "META-INF/container.xml", opf]
    by_name = dict(written)
    by_name[opf] = _patch_opf(by_name[opf], collection.language)
    names = first + [name for name, _ in written if name not in first]
    return reproducible_zip([(name, by_name[name]) for name in names], ctx.source_date_epoch, ctx.parts)


def render(collection: Collection, ctx: BuildContext) -> dict[str, bytes]:
    try:
        data = build_epub(collection, ctx)
    except CarepressError:
        raise
    except (jinja2.TemplateError, etree.XMLSyntaxError, OSError, ValueError, KeyError, TypeError,
            AttributeError, zipfile.BadZipFile, ImportError) as exc:
        raise CarepressError([error("CP130", f"epub: {type(exc).__name__}: {exc}")]) from None
    return {f"epub/{collection.id}.epub": data}
