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
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable

from rapidfuzz import fuzz

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
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold()).strip()


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
    topics: list[DraftTopic]
    segments: list[SegmentRecord]
    merges: list[MergeRecord]
    drops: list[DropRecord]
    conflicts: list[ConflictRecord]
    diagnostics: list[Diagnostic]

    def counts(self) -> dict[str, int]:
        kinds = [m.kind for m in self.merges]
        return {
            "segments": len(self.segments),
            "topics": len(self.topics),
            "exact": kinds.count("exact"),
            "title_variant": kinds.count("title-variant"),
            "near_duplicate": kinds.count("near-duplicate"),
            "dropped": len(self.drops),
            "conflicts": len(self.conflicts),
        }

    def to_dict(self) -> dict:
        def span(s: SourceSpan) -> dict:
            return {"file": s.file, "first_line": s.first_line, "last_line": s.last_line}

        return {
            "summary": self.counts(),
            "segments": [
                {"index": r.index, "title": r.title, "source": span(r.span), "disposition": r.disposition, "topic": r.topic}
                for r in self.segments
            ],
            "merges": [
                {
                    "kind": m.kind, "topic": m.topic, "segment": m.segment, "source": span(m.span), "title": m.title,
                    "reason": m.reason, "score": m.score, **({"merged_text": m.merged_text} if m.merged_text else {}),
                }
                for m in self.merges
            ],
            "drops": [
                {"segment": d.segment, "source": span(d.span), "title": d.title, "code": d.code, "reason": d.reason}
                for d in self.drops
            ],
            "conflicts": [{"title": c.title, "topics": list(c.topics), "score": c.score} for c in self.conflicts],
            "diagnostics": [d.to_dict() for d in self.diagnostics],
        }


# ---------------------------------------------------------------- algorithm


def _specificity(title: str) -> int:
    return len(title_key(title).split())


def _word_count(blocks: tuple[Paragraph | ListBlock, ...]) -> int:
    return len(blocks_text(blocks).split())


def dedupe(segments: Iterable[Segment]) -> DedupeResult:
    topics: list[DraftTopic] = []
    exact: dict[tuple[str, str], DraftTopic] = {}
    by_body: dict[str, DraftTopic] = {}
    by_title: dict[str, list[DraftTopic]] = {}
    body_keys: dict[int, str] = {}  # topic id -> key of its current canonical body
    raw_seen: dict[tuple[str, str], str] = {}  # exact key -> raw title+body of first sighting
    records: list[tuple[Segment, str, DraftTopic | None]] = []
    merges: list[tuple[str, Segment, DraftTopic, str, float, str | None]] = []
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
            records.append((seg, "dropped", None))
            continue
        text = blocks_text(seg.blocks)
        tkey, bkey = title_key(seg.title), normalise(text)
        raw = seg.title + "\n" + text
        topic = exact.get((tkey, bkey))
        if topic is not None:
            reason = "identical" if raw_seen[(tkey, bkey)] == raw else "identical after normalisation"
            merges.append(("exact", seg, topic, reason, 1.0, None))
            records.append((seg, "exact-duplicate", topic))
        elif bkey in by_body:
            topic = by_body[bkey]
            topic.titles.setdefault(tkey, seg.title)
            if _specificity(seg.title) > _specificity(topic.title):
                topic.title = seg.title
            merges.append(("title-variant", seg, topic, "same body under another title", 1.0, None))
            records.append((seg, "title-variant", topic))
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
                merges.append(("near-duplicate", seg, topic, "same title, body differs a little; kept the fuller body",
                               round(score / 100, 4), kept_away))
                diagnostics.append(
                    info("CP203", f"'{seg.title}': near-duplicate body (similarity {score / 100:.2f}) merged",
                         seg.span.file, seg.span.first_line)
                )
                records.append((seg, "near-duplicate", topic))
            else:
                topic = DraftTopic(len(topics), seg.title, seg.blocks, seg.index, [], {tkey: seg.title})
                topics.append(topic)
                body_keys[topic.id] = bkey
                by_title.setdefault(tkey, []).append(topic)
                records.append((seg, "topic", topic))
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
        segments=[SegmentRecord(s.index, s.title, s.span, d, t.slug if t else None) for s, d, t in records],
        merges=[MergeRecord(k, t.slug, s.index, s.span, s.title, r, sc, mt) for k, s, t, r, sc, mt in merges],
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
    while len(order) < len(topics):
        if not ready:  # blocks disagree (a cycle): take the earliest remaining topic
            tid = min((t for t in by_id if t not in done), key=first.__getitem__)
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
