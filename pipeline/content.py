"""Sources + config -> the frozen Collection (and the dedupe report).

This is the ``content`` stage's input: ingest every source, dedupe the segments,
then add what the raw text lacks from ``collection.toml`` (publisher, presenter,
sections, video facts) and what the text implies (series "part N").
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from .config import Config
from .dedupe import DedupeResult, DraftTopic, dedupe, slugify, title_key
from .diagnostics import CarepressError, Diagnostic, error, warning
from .ingest import SourceDocument, clean_line, iter_lines, read_pandoc_sources, read_source
from .model import Collection, Media, Section, Series, Topic

DEFAULT_SECTION = "Topics"
_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}
_PART = re.compile(
    r"^(?P<base>.+?)[\s,:\-\u2013\u2014]*[(\[]?\s*\bpart\s+(?P<n>\d{1,2}|" + "|".join(_WORDS) + r")"
    r"(?:\s+of\s+(?P<m>\d{1,2}))?\s*[)\]]?\s*$",
    re.IGNORECASE,
)


@dataclass
class Loaded:
    collection: Collection
    report: DedupeResult
    documents: list[SourceDocument]
    diagnostics: list[Diagnostic]


def _series(topics: list[DraftTopic]) -> dict[int, Series]:
    groups: dict[str, list[tuple[DraftTopic, int, int | None, str]]] = {}
    for topic in topics:
        match = _PART.match(topic.title)
        if not match:
            continue
        raw_n = match.group("n").lower()
        part = int(raw_n) if raw_n.isdigit() else _WORDS[raw_n]
        total = int(match.group("m")) if match.group("m") else None
        base = match.group("base").strip(" ,:-\u2013\u2014")
        groups.setdefault(slugify(base), []).append((topic, part, total, base))
    out: dict[int, Series] = {}
    for sid, members in groups.items():
        parts = [p for _, p, _, _ in members]
        stated = max((m for _, _, m, _ in members if m), default=0)
        if not sid or len(set(parts)) != len(parts) or (len(members) < 2 and not stated) or part_gap(parts, stated):
            continue
        total = max(stated, max(parts))
        for topic, part, _, base in members:
            out[topic.id] = Series(id=sid, title=members[0][3], part=part, total=total)
    return out


def part_gap(parts: list[int], stated: int) -> bool:
    return min(parts) < 1 or max(parts) > max(stated, len(parts))


def load_transcripts(folder: Path, slugs: set[str], diagnostics: list[Diagnostic]) -> dict[str, str]:
    """Full transcripts from ``<source dir>/transcripts/<slug>.txt`` (plain UTF-8 text)."""
    out: dict[str, str] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.txt")):
        if path.stem not in slugs:
            diagnostics.append(warning("CP301", f"transcript for unknown topic '{path.stem}'", str(path)))
            continue
        paragraphs: list[str] = []
        current: list[str] = []
        for _n, line in iter_lines(path, str(path)):
            line = clean_line(line)
            if line:
                current.append(line)
            elif current:
                paragraphs.append(" ".join(current))
                current = []
        if current:
            paragraphs.append(" ".join(current))
        if paragraphs:
            out[path.stem] = "\n\n".join(paragraphs)
    return out


def load(sources: list[Path], config: Config, display: dict[Path, str] | None = None,
         transcripts_dir: Path | None = None) -> Loaded:
    """Ingest, dedupe and assemble. Raises CarepressError on input that cannot make a collection."""
    display = display or {}
    documents: list[SourceDocument] = []
    streams = []
    asts = read_pandoc_sources([p for p in sources if p.is_file() and p.stat().st_size])  # one pandoc process
    for path in sources:
        doc, segments = read_source(path, display.get(path, str(path)), asts.get(path))
        documents.append(doc)
        streams.append(segments)
    counter = itertools.count()
    renumbered = (
        seg.__class__(next(counter), seg.title, seg.blocks, seg.span) for seg in itertools.chain.from_iterable(streams)
    )
    result = dedupe(renumbered)
    diagnostics = [d for doc in documents for d in doc.diagnostics] + list(result.diagnostics)
    if not result.topics:
        first = documents[0]
        raise CarepressError(
            diagnostics + [error("CP104", "no topics found: a topic is a short title line followed by its text",
                                 first.file, 1)]
        )
    head = documents[0]
    title = config.title or head.title or re.sub(r"[-_]+", " ", sources[0].stem).strip().title() or "Collection"
    collection_id = config.id or slugify(title) or "collection"
    description = "\n\n".join(p for doc in documents for p in doc.description)

    slugs = {t.slug for t in result.topics}
    for slug in config.topics:
        if slug not in slugs:
            diagnostics.append(warning("CP113", f"config has an entry for topic '{slug}', which the source does not have"))
    transcripts = load_transcripts(transcripts_dir, slugs, diagnostics) if transcripts_dir else {}

    series = _series(result.topics)
    any_section = any(c.section for c in config.topics.values())
    fallback = "More topics" if any_section else DEFAULT_SECTION
    section_titles: dict[str, str] = {}
    for name in config.sections:
        section_titles.setdefault(slugify(name), name)
    topic_section: dict[str, str] = {}
    for topic in result.topics:
        name = (config.topics.get(topic.slug) and config.topics[topic.slug].section) or fallback
        sid = slugify(name) or "topics"
        section_titles.setdefault(sid, name)
        topic_section[topic.slug] = sid
    try:
        topics = tuple(
            Topic(
                slug=t.slug,
                title=t.title,
                aliases=t.aliases,
                body=t.blocks,
                transcript=transcripts.get(t.slug),
                series=series.get(t.id),
                section=topic_section[t.slug],
                tags=config.topics[t.slug].tags if t.slug in config.topics else (),
                media=config.topics[t.slug].media() if t.slug in config.topics else Media(),
                sources=tuple(t.sources),
            )
            for t in result.topics
        )
        sections = tuple(
            Section(slug=sid, title=name, topics=tuple(t.slug for t in topics if t.section == sid))
            for sid, name in section_titles.items()
            if any(t.section == sid for t in topics)
        )
        collection = Collection(
            id=collection_id,
            title=title,
            description=description,
            language=config.language,
            publisher=config.publisher,
            presenter=config.presenter,
            licence=config.licence,
            review_date=config.review_date,
            topics=topics,
            sections=sections,
        )
    except ValidationError as exc:  # should not happen on valid input: report, never a traceback
        raise CarepressError(
            diagnostics + [error("CP130", f"content model rejected: {e['loc']}: {e['msg']}", head.file)
                           for e in exc.errors()]
        ) from None
    return Loaded(collection, result, documents, diagnostics)


__all__ = ["Loaded", "load", "title_key"]
