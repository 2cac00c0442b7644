"""A labelled synthetic corpus for benchmarks: realistic topics with known duplicates.

Each generated segment carries the id of the topic it truly belongs to, so dedupe can
be scored (pairwise precision and recall) against the labels.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .ingest import Segment
from .model import Paragraph, SourceSpan

_SYLLABLES = ("ba be bi bo ca ce co da de di do fa fe fi ga go ha he la le li lo ma me mi mo na ne ni no "
              "pa pe pi po ra re ri ro sa se si so ta te ti to va ve vi vo za ze").split()
_COMMON = ("the a of and to in is for with may can your care team muscle nerve brain pain treatment symptoms "
           "movement doctor patients often help daily life sleep injections therapy").split()
_TITLE_HEADS = ("What is", "Living with", "Treating", "Understanding", "Questions about", "Caring for")
_QUALIFIERS = ("for Dystonia", "in Adults", "at Home", "and You")


@dataclass(frozen=True)
class Labelled:
    segments: list[Segment]
    labels: list[int]  # true topic id of each segment
    topics: int


def _vocabulary(rng: random.Random, size: int) -> list[str]:
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def _sentence(rng: random.Random, vocab: list[str]) -> str:
    words = [rng.choice(vocab) if rng.random() < 0.6 else rng.choice(_COMMON) for _ in range(rng.randint(8, 18))]
    return " ".join(words).capitalize() + "."


def corpus(segments: int = 100_000, seed: int = 7, exact: float = 0.30, retitled: float = 0.10,
           near: float = 0.05, conflicts: float = 0.005, file: str = "synthetic.txt") -> Labelled:
    """Generate ``segments`` segments: unique topics plus exact, re-titled and near repeats."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng, 4000)
    topics: list[tuple[str, str]] = []
    out: list[Segment] = []
    labels: list[int] = []
    line = 1

    def emit(title: str, body: str, label: int) -> None:
        nonlocal line
        out.append(Segment(len(out), title, (Paragraph(text=body),),
                           SourceSpan(file=file, first_line=line, last_line=line + 2)))
        labels.append(label)
        line += 4

    def new_topic(title: str | None = None) -> None:
        n = len(topics)
        title = title or f"{rng.choice(_TITLE_HEADS)} {rng.choice(vocab).capitalize()} {rng.choice(vocab)} {n}"
        body = " ".join(_sentence(rng, vocab) for _ in range(rng.randint(3, 6)))
        topics.append((title, body))
        emit(title, body, n)

    while len(out) < segments:
        roll = rng.random()
        if not topics or roll >= exact + retitled + near + conflicts:
            new_topic()
            continue
        label = rng.randrange(len(topics))
        title, body = topics[label]
        if roll < exact:
            emit(title, body, label)
        elif roll < exact + retitled:
            emit(f"{title} {rng.choice(_QUALIFIERS)}" if rng.random() < 0.5 else title.replace(" ", "  ", 1) + " (video)",
                 body, label)
        elif roll < exact + retitled + near:
            words = body.split()
            if rng.random() < 0.5:  # a typo
                k = rng.randrange(len(words))
                w = words[k]
                words[k] = w[:-2] + w[-1] + w[-2] if len(w) > 3 else w + "e"
                emit(title, " ".join(words), label)
            else:  # an added sentence
                emit(title, body + " " + _sentence(rng, vocab), label)
        else:  # same title, a different body: truly another topic
            new_topic(title)
    return Labelled(out, labels, len(topics))


def pair_scores(predicted: list[str], labels: list[int]) -> tuple[float, float]:
    """Pairwise precision and recall of a clustering against labels (no all-pairs loop)."""
    from collections import Counter

    def pairs(counts) -> int:
        return sum(c * (c - 1) // 2 for c in counts)

    both = pairs(Counter(zip(predicted, labels)).values())
    pred = pairs(Counter(predicted).values())
    true = pairs(Counter(labels).values())
    return (both / pred if pred else 1.0), (both / true if true else 1.0)
