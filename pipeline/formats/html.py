"""The ``html`` format: a static, accessible (WCAG 2.2 AA) site.

``html/index.html`` lists the collection's topics by section and series with their
downloads; ``html/<slug>.html`` is one page per topic; ``html/assets/`` holds the
stylesheet and the Atkinson Hyperlegible fonts with their licence. No JavaScript, no
external requests: fonts and CSS are local, the site links to its sibling output
folders (``../pdf``, ``../epub``, ``../captions``) with relative URLs, and only to
files the earlier stages actually produced (``ctx.rendered``), with their real sizes.

All source text goes through autoescaping Jinja2 (``StrictUndefined``); body blocks
are rendered by :func:`common.blocks_html`, which escapes every character.

Video: the model's ``video_url`` is usually the address of a video *page*, not a media
file, so a ``<video>`` element pointing at it could never play. A topic whose URL is a
media file (.mp4, .webm, .ogv, .m4v, .mov) gets ``<video controls preload="none">``
with a ``<track kind="captions" default>`` for the generated WebVTT file; any other URL
gets a plain link to the video page plus the captions file as a download; a topic
with no URL says so in words. The transcript is on every page either way.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple
from urllib.parse import urlsplit

import jinja2
from markupsafe import Markup, escape
from pydantic import BaseModel

from ..cache import cached
from ..diagnostics import CarepressError, error
from ..model import Collection, Organisation, Section, Topic
from . import BuildContext, Later, Pending
from .assets import FONT_FAMILY, FONT_FILES, FONT_LICENCE, TEMPLATE_DIR, epoch_datetime, font_bytes
from .common import (
    SectionHead,
    blocks_html,
    human_duration,
    human_size,
    paragraphs_html,
    pdf_page_count,
    presenter_line,
    stylesheet_with_fonts,
    template_environment,
)

HTML_TEMPLATES = TEMPLATE_DIR / "html"
MEDIA_SUFFIXES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm",
                  ".ogv": "video/ogg", ".mov": "video/quicktime"}
ASSET_FONTS = "assets/fonts"
LANGUAGE_NAMES = {"en": "English", "fr": "Français", "es": "Español", "de": "Deutsch"}


@dataclass(frozen=True)
class Download:
    """A link to a file an earlier stage produced: href relative to ``html/``."""

    href: str
    kind: str  # "PDF", "EPUB", "WebVTT"
    mime: str
    details: str  # "PDF, 1 page, 48 KB"


def _environment() -> jinja2.Environment:
    return template_environment("html")


def _details(kind: str, data: bytes, pages: int | None = None) -> str:
    parts = [kind]
    if kind == "PDF":
        pages = pages or pdf_page_count(data)
        if pages:
            parts.append(f"{pages} page" + ("" if pages == 1 else "s"))
    parts.append(human_size(len(data)))
    return ", ".join(parts)


def _download(ctx: BuildContext, path: str, kind: str, mime: str) -> Download | None:
    """A link to ``path`` if an earlier stage made it (page counts from ``ctx.pages``)."""
    data = ctx.rendered.get(path)
    if data is None:
        return None
    if isinstance(data, Pending):  # still being made (the booklet): its details go in later
        return Download(href=f"../{path}", kind=kind, mime=mime, details=_later(path))
    return Download(href=f"../{path}", kind=kind, mime=mime, details=_details(kind, data, ctx.pages.get(path)))


def _later(path: str) -> str:
    """What stands in a page for the details of a file still being made: it cannot come from
    source text (no NUL survives reading) and autoescaping leaves it as it is."""
    return f"\x00details of {path}\x00"


def _fill_in(page: bytes, ctx: BuildContext, later: dict[str, Download], made: bool) -> bytes:
    """A page rendered before the files in ``later`` were made, with their details put in: all
    of them (``made``: waits for the files), or only their kind."""
    for path, download in later.items():
        details = _details(download.kind, ctx.rendered[path].result(), ctx.pages.get(path)) if made else download.kind
        page = page.replace(_later(path).encode(), escape(details).encode())
    return page


def media_type(url: str | None) -> str | None:
    """The MIME type when the URL names a playable media file, else None (a video page)."""
    if not url:
        return None
    path = urlsplit(url).path.lower()
    for suffix, mime in MEDIA_SUFFIXES.items():
        if path.endswith(suffix):
            return mime
    return None


def _topic_downloads(ctx: BuildContext, topic: Topic) -> dict[str, Download | None]:
    return {
        "handout": _download(ctx, f"pdf/{topic.slug}.pdf", "PDF", "application/pdf"),
        "large_print": _download(ctx, f"pdf/large-print/{topic.slug}.pdf", "PDF", "application/pdf"),
        "captions": _download(ctx, f"captions/{topic.slug}.vtt", "WebVTT", "text/vtt"),
    }


def _stylesheet() -> bytes:
    return stylesheet_with_fonts((HTML_TEMPLATES / "site.css").read_text(encoding="utf-8"), "fonts/", display=True)


def _groups(collection: Collection, section: Section) -> list[dict]:
    """A section's topics with consecutive parts of one series grouped together."""
    groups: list[dict] = []
    for topic in collection.section_topics(section):
        if topic.series and groups and groups[-1]["series"] and groups[-1]["series"].id == topic.series.id:
            groups[-1]["topics"].append(topic)
        else:
            groups.append({"series": topic.series, "topics": [topic]})
    return groups


class SiteHead(NamedTuple):
    """What of the collection every page's header and footer show (all a topic page gets)."""

    title: str
    publisher: Organisation | None
    licence: str | None


def _site_context(collection: Collection, ctx: BuildContext) -> dict:
    """What every page gets; topic pages get nothing else but their own :func:`_topic_context`."""
    return {
        "collection": SiteHead(collection.title, collection.publisher, collection.licence),
        "lang": collection.language,
        "review_date": collection.review_date,
        "published": epoch_datetime(ctx.source_date_epoch).date(),
        "booklet": _download(ctx, f"pdf/{collection.id}-booklet.pdf", "PDF", "application/pdf"),
        "track_label": LANGUAGE_NAMES.get(collection.language.split("-")[0].lower(), collection.language),
        "font_family": FONT_FAMILY,
        "font_licence": f"{ASSET_FONTS}/{FONT_LICENCE}",
    }


def _index_context(collection: Collection, ctx: BuildContext, site: dict,
                   downloads: dict[str, dict[str, Download | None]]) -> dict:
    rendered = ctx.rendered
    return {
        **site,
        "collection": collection,
        "presenter": presenter_line(collection),
        "epub": _download(ctx, f"epub/{collection.id}.epub", "EPUB", "application/epub+zip"),
        "downloads": downloads,
        "has_handouts": any(f"pdf/{t.slug}.pdf" in rendered for t in collection.topics),
        "description_html": paragraphs_html(collection.description),
        "section_groups": {s.slug: _groups(collection, s) for s in collection.sections},
    }


def _topic_context(collection: Collection, topic: Topic, section: Section,
                   files: dict[str, Download | None]) -> dict:
    parts = collection.series_topics(topic) if topic.series else ()
    index = parts.index(topic) if parts else 0
    url = topic.media.video_url
    return {
        "topic": topic,
        "section": SectionHead(section.slug, section.title),
        "files": files,
        "body": blocks_html(topic.body),
        "transcript": paragraphs_html(topic.transcript) if topic.transcript else None,
        "parts": parts,
        "previous": parts[index - 1] if parts and index > 0 else None,
        "next": parts[index + 1] if parts and index + 1 < len(parts) else None,
        "video_url": url,
        "video_host": urlsplit(url).hostname if url else None,
        "video_mime": media_type(url),
        "duration": human_duration(topic.media.duration_seconds),
    }


def context_key(values: dict) -> str:
    """A stable text of a page's whole context (models as JSON but for where topics came from
    in the source, which no page shows): pages are cached under it."""
    def encode(value):
        if isinstance(value, Topic):
            return value.model_dump(mode="json", exclude={"sources"})
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        if isinstance(value, (_dt.date, Markup)):
            return str(value)
        if isinstance(value, Download):
            return list(value.__dict__.values())
        raise TypeError(f"no cache key for {type(value).__name__}")

    return json.dumps(values, default=encode, sort_keys=True, ensure_ascii=False)


def _page(template: str, **values) -> bytes:
    text = _environment().get_template(template).render(**values)
    text = re.sub(r"[ \t]+\n", "\n", text)  # no trailing spaces: stable, tidy bytes
    return text.encode("utf-8")


def render(collection: Collection, ctx: BuildContext) -> dict[str, bytes | Pending]:
    try:
        site = _site_context(collection, ctx)
        downloads = {t.slug: _topic_downloads(ctx, t) for t in collection.topics}
        index = _index_context(collection, ctx, site, downloads)
        later = {d.href[3:]: d for d in (site["booklet"], index["epub"]) if d is not None and d.details.startswith("\x00")}
        files: dict[str, bytes | Pending] = {}
        # The index shows the booklet's pages and size, so it is published once the booklet is
        # made. A topic page says only that the booklet is a PDF: it is written while the booklet
        # is made, and an edit that changes the booklet's length or size leaves it as it was.
        front = _page("index.html", page="index", **index)
        files["html/index.html"] = Later(partial(_fill_in, front, ctx, later, True)) if later else front
        section_of = {slug: s for s in collection.sections for slug in s.topics}
        for topic in collection.topics:
            values = {"page": "topic", **site,
                      **_topic_context(collection, topic, section_of[topic.slug], downloads[topic.slug])}
            # cached under all it is given: a template reaching for more fails (StrictUndefined)
            page = cached(ctx.parts, partial(_page, "topic.html", **values), "html-topic", context_key(values))
            files[f"html/{topic.slug}.html"] = _fill_in(page, ctx, later, False)
        files["html/assets/site.css"] = _stylesheet()
        for name in sorted(FONT_FILES.values()):
            files[f"html/{ASSET_FONTS}/{name}"] = font_bytes(name)
        files[f"html/{ASSET_FONTS}/{FONT_LICENCE}"] = font_bytes(FONT_LICENCE)
    except CarepressError:
        raise
    except (jinja2.TemplateError, OSError, ValueError, KeyError) as exc:
        raise CarepressError([error("CP130", f"html: {type(exc).__name__}: {exc}")]) from None
    return files
