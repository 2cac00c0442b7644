"""Segments -> unique topics, with a record of every decision.

Candidates are found by hashing, never by comparing all pairs:

* exact duplicates: same normalised title and body (NFKC, case, whitespace, quotes);
* title variants: same normalised body under another title -> one topic, the most
  specific title is canonical, the others are aliases;
* near duplicates: same normalised title, a body that differs a little (token-set
  similarity >= ``NEAR_THRESHOLD``) -> one topic with the fuller body;
* conflicts: same title, bodies that differ a lot -> both kept, warning CP202.

Topic order is a topological merge of the order in every repeated block, ties broken
by first appearance, so a topic that appears only in a later block lands where that
block puts it.
"""

from __future__ import annotations

import heapq
import json
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable

from rapidfuzz import fuzz

from .collector import paused
from .diagnostics import Diagnostic, info, warning
from .ingest import Segment
from .model import ListBlock, Paragraph, SourceSpan, blocks_text

NEAR_THRESHOLD = 85.0
MAX_TITLE_CANDIDATES = 16

_QUOTES = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'", "\u00b4": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
        "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2010": "-", "\u2011": "-",
    }
)
_WS = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]")


def normalise(text: str) -> str:
    """Comparison key for text: NFKC, straight quotes, case-folded, single spaces."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    return " ".join(text.replace("`", "'").casefold().split())


@lru_cache(maxsize=1 << 18)
def title_key(title: str) -> str:
    return _WS.sub(" ", _PUNCT.sub(" ", normalise(title))).strip()


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text.translate(_QUOTES)).encode("ascii", "ignore").decode("ascii")
    ascii_text = ascii_text.lower().replace("'", "")
    return re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:80].strip("-")


# ---------------------------------------------------------------- results


@dataclass
class DraftTopic:
    """A topic as dedupe sees it; turned into a model Topic by pipeline.content."""

    id: int
    title: str
    blocks: tuple[Paragraph | ListBlock, ...]
    first_index: int
    sources: list[SourceSpan]
    titles: dict[str, str] = field(default_factory=dict)  # title key -> first raw title seen
    slug: str = ""

    @property
    def aliases(self) -> tuple[str, ...]:
        canonical = title_key(self.title)
        return tuple(t for k, t in self.titles.items() if k != canonical)


@dataclass(frozen=True)
class SegmentRecord:
    index: int
    title: str
    span: SourceSpan
    disposition: str  # topic | exact-duplicate | title-variant | near-duplicate | dropped
    topic: str | None


@dataclass(frozen=True)
class MergeRecord:
    kind: str  # exact | title-variant | near-duplicate
    topic: str
    segment: int
    span: SourceSpan
    title: str
    reason: str
    score: float
    merged_text: str | None = None  # the body text that was not kept (near duplicates)


@dataclass(frozen=True)
class DropRecord:
    segment: int
    span: SourceSpan
    title: str
    code: str
    reason: str


@dataclass(frozen=True)
class ConflictRecord:
    title: str
    topics: tuple[str, ...]
    score: float


@dataclass
class DedupeResult:
    """Every decision. Per-segment rows are compact tuples so huge sources stay small in memory:
    (index, title, span, disposition, topic slug, reason, score, merged text)."""

    topics: list[DraftTopic]
    rows: list[tuple]
    drops: list[DropRecord]
    conflicts: list[ConflictRecord]
    diagnostics: list[Diagnostic]

    @property
    def segments(self) -> list[SegmentRecord]:
        return [SegmentRecord(r[0], r[1], r[2], r[3], r[4]) for r in self.rows]

    @property
    def merges(self) -> list[MergeRecord]:
        return [
            MergeRecord(_MERGE_KIND[r[3]], r[4], r[0], r[2], r[1], r[5], r[6], r[7])
            for r in self.rows
            if r[3] in _MERGE_KIND
        ]

    def counts(self) -> dict[str, int]:
        kinds = [r[3] for r in self.rows]
        return {
            "segments": len(self.rows),
            "topics": len(self.topics),
            "exact": kinds.count("exact-duplicate"),
            "title_variant": kinds.count("title-variant"),
            "near_duplicate": kinds.count("near-duplicate"),
            "dropped": len(self.drops),
            "conflicts": len(self.conflicts),
        }

    def to_dict(self) -> dict:
        return json.loads(self.to_json())

    def to_json(self) -> bytes:
        """The report as JSON: one line per segment, so a huge report is built line by line."""

        def dump(value: object) -> str:
            return json.dumps(value, ensure_ascii=False)

        def span(s: SourceSpan) -> dict:
            return {"file": s.file, "first_line": s.first_line, "last_line": s.last_line}

        def row(r: tuple) -> str:
            record = {"index": r[0], "title": r[1], "source": span(r[2]), "disposition": r[3], "topic": r[4]}
            if r[3] in _MERGE_KIND:
                record.update(kind=_MERGE_KIND[r[3]], reason=r[5], score=r[6])
                if r[7]:
                    record["merged_text"] = r[7]
            elif r[3] == "dropped":
                record.update(reason=r[5])
            return dump(record)

        parts = ['{\n  "summary": ', dump(self.counts()), ',\n  "segments": [']
        parts.append(",".join("\n    " + row(r) for r in self.rows))
        parts.append('\n  ],\n  "drops": [')
        parts.append(",".join("\n    " + dump({"segment": d.segment, "source": span(d.span), "title": d.title,
                                              "code": d.code, "reason": d.reason}) for d in self.drops))
        parts.append('\n  ],\n  "conflicts": [')
        parts.append(",".join("\n    " + dump({"title": c.title, "topics": list(c.topics), "score": c.score})
                              for c in self.conflicts))
        parts.append('\n  ],\n  "diagnostics": [')
        parts.append(",".join("\n    " + dump(d.to_dict()) for d in self.diagnostics))
        parts.append("\n  ]\n}\n")
        return "".join(parts).encode("utf-8")


_MERGE_KIND = {"exact-duplicate": "exact", "title-variant": "title-variant", "near-duplicate": "near-duplicate"}


# ---------------------------------------------------------------- algorithm


def _specificity(title: str) -> int:
    return len(title_key(title).split())


def _word_count(blocks: tuple[Paragraph | ListBlock, ...]) -> int:
    return len(blocks_text(blocks).split())


def dedupe(segments: Iterable[Segment]) -> DedupeResult:
    # dedupe makes a few objects per segment and frees none of them: a collection would only
    # walk the growing heap again (a third of the time for 100,000 segments)
    with paused():
        return _dedupe(segments)


def _dedupe(segments: Iterable[Segment]) -> DedupeResult:
    topics: list[DraftTopic] = []
    exact: dict[tuple[str, str], DraftTopic] = {}
    by_body: dict[str, DraftTopic] = {}
    by_title: dict[str, list[DraftTopic]] = {}
    body_keys: dict[int, str] = {}  # topic id -> key of its current canonical body
    raw_seen: dict[tuple[str, str], str] = {}  # exact key -> raw title+body of first sighting
    records: list[list] = []  # [index, title, span, disposition, topic, reason, score, merged text]
    drops: list[DropRecord] = []
    conflicts: list[tuple[str, DraftTopic, DraftTopic, float]] = []
    diagnostics: list[Diagnostic] = []
    sequence: list[int] = []

    for seg in segments:
        if not seg.blocks:
            drops.append(DropRecord(seg.index, seg.span, seg.title, "CP201", "title with no body"))
            diagnostics.append(
                warning("CP201", f"title '{seg.title}' has no text under it; dropped (see dedupe report)",
                        seg.span.file, seg.span.first_line)
            )
            records.append([seg.index, seg.title, seg.span, "dropped", None, "title with no body", None, None])
            continue
        text = blocks_text(seg.blocks)
        tkey, bkey = title_key(seg.title), normalise(text)
        raw = seg.title + "\n" + text
        topic = exact.get((tkey, bkey))
        if topic is not None:
            reason = "identical" if raw_seen[(tkey, bkey)] == raw else "identical after normalisation"
            records.append([seg.index, seg.title, seg.span, "exact-duplicate", topic, reason, 1.0, None])
        elif bkey in by_body:
            topic = by_body[bkey]
            topic.titles.setdefault(tkey, seg.title)
            if _specificity(seg.title) > _specificity(topic.title):
                topic.title = seg.title
            records.append([seg.index, seg.title, seg.span, "title-variant", topic,
                            "same body under another title", 1.0, None])
        else:
            best, score = None, 0.0
            for candidate in by_title.get(tkey, ())[:MAX_TITLE_CANDIDATES]:
                s = fuzz.token_set_ratio(bkey, body_keys[candidate.id])
                if s > score:
                    best, score = candidate, s
            if best is not None and score >= NEAR_THRESHOLD:
                topic = best
                old_text = blocks_text(topic.blocks)
                if _word_count(seg.blocks) > _word_count(topic.blocks):
                    topic.blocks = seg.blocks
                    body_keys[topic.id] = bkey
                    kept_away = old_text
                else:
                    kept_away = text
                records.append([seg.index, seg.title, seg.span, "near-duplicate", topic,
                                "same title, body differs a little; kept the fuller body", round(score / 100, 4),
                                kept_away])
                diagnostics.append(
                    info("CP203", f"'{seg.title}': near-duplicate body (similarity {score / 100:.2f}) merged",
                         seg.span.file, seg.span.first_line)
                )
            else:
                topic = DraftTopic(len(topics), seg.title, seg.blocks, seg.index, [], {tkey: seg.title})
                topics.append(topic)
                body_keys[topic.id] = bkey
                by_title.setdefault(tkey, []).append(topic)
                records.append([seg.index, seg.title, seg.span, "topic", topic, None, None, None])
                if best is not None:
                    conflicts.append((seg.title, best, topic, round(score / 100, 4)))
        topic.sources.append(seg.span)
        exact.setdefault((tkey, bkey), topic)
        raw_seen.setdefault((tkey, bkey), raw)
        by_body.setdefault(bkey, topic)
        sequence.append(topic.id)

    ordered = _merge_order(topics, sequence, diagnostics)
    _assign_slugs(ordered, diagnostics)
    for title, first, second, score in conflicts:
        diagnostics.append(
            warning("CP202", f"'{title}' appears with two different bodies (similarity {score:.2f}); "
                    f"kept both as '{first.slug}' and '{second.slug}'",
                    second.sources[0].file, second.sources[0].first_line)
        )
    return DedupeResult(
        topics=ordered,
        rows=[(r[0], r[1], r[2], r[3], r[4].slug if r[4] else None, r[5], r[6], r[7]) for r in records],
        drops=drops,
        conflicts=[ConflictRecord(title, (a.slug, b.slug), sc) for title, a, b, sc in conflicts],
        diagnostics=diagnostics,
    )


def _merge_order(topics: list[DraftTopic], sequence: list[int], diagnostics: list[Diagnostic]) -> list[DraftTopic]:
    """Topological merge of every block's order; ties (and cycles) go by first appearance.

    The segment sequence is cut into blocks where a topic comes round again; within a
    block each topic must follow the one before it.
    """
    successors: dict[int, set[int]] = {t.id: set() for t in topics}
    indegree = dict.fromkeys(successors, 0)
    in_block: set[int] = set()
    previous: int | None = None
    for tid in sequence:
        if tid in in_block:
            in_block, previous = set(), None
        if previous is not None and tid != previous and tid not in successors[previous]:
            successors[previous].add(tid)
            indegree[tid] += 1
        in_block.add(tid)
        previous = tid
    first = {t.id: t.first_index for t in topics}
    by_id = {t.id: t for t in topics}
    ready = [(first[t], t) for t, d in indegree.items() if d == 0]
    heapq.heapify(ready)
    done: set[int] = set()
    order: list[DraftTopic] = []
    warned = False
    remaining = sorted((first[t], t) for t in by_id)  # earliest first; consumed lazily on cycles
    cursor = 0
    while len(order) < len(topics):
        if not ready:  # blocks disagree (a cycle): take the earliest remaining topic
            while remaining[cursor][1] in done:
                cursor += 1
            tid = remaining[cursor][1]
            if not warned:
                span = by_id[tid].sources[0]
                diagnostics.append(info("CP205", "repeated blocks list topics in different orders; "
                                        "first appearance decides", span.file, span.first_line))
                warned = True
            indegree[tid] = 0
            heapq.heappush(ready, (first[tid], tid))
        _, tid = heapq.heappop(ready)
        if tid in done:
            continue
        done.add(tid)
        order.append(by_id[tid])
        for nxt in successors[tid]:
            if nxt in done:
                continue
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                heapq.heappush(ready, (first[nxt], nxt))
    return order


def _assign_slugs(topics: list[DraftTopic], diagnostics: list[Diagnostic]) -> None:
    taken: set[str] = set()
    for n, topic in enumerate(topics, 1):
        base = slugify(topic.title) or f"topic-{n}"
        slug, k = base, 2
        while slug in taken:
            slug = f"{base}-{k}"
            k += 1
        if slug != base:
            span = topic.sources[0]
            diagnostics.append(info("CP204", f"slug '{base}' is taken; '{topic.title}' becomes '{slug}'",
                                    span.file, span.first_line))
        taken.add(slug)
        topic.slug = slug
