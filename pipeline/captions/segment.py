"""Segmentation: words into cues and cues into lines, the way a captioner breaks them.

Cues end at sentence ends and break at clause boundaries; lines break where meaning
allows: never between an article and its noun, a title ("Dr.") and the name, a first
and last name, or a number and its unit, and not after a preposition or conjunction
when that can be avoided. Two-line cues are balanced or bottom-heavy. Words are never
changed, dropped or split: joining the cues' words gives back the text exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

from .profiles import Profile

ARTICLES = frozenset({"a", "an", "the"})
DETERMINERS = frozenset({"my", "your", "his", "her", "its", "our", "their", "this", "these", "those", "each",
                         "every", "some", "any", "no"})
TITLES = frozenset({"dr.", "mr.", "mrs.", "ms.", "prof.", "st.", "mx.", "sr.", "jr.", "rev.", "dr", "mr", "mrs",
                    "ms", "prof"})
ABBREVIATIONS = TITLES | frozenset({"e.g.", "i.e.", "vs.", "approx.", "no.", "fig.", "cf."})
PREPOSITIONS = frozenset(
    "about above across after against along among around at before behind below beneath beside between "
    "beyond by down during for from in inside into like near of off on onto out over per through to toward "
    "towards under until up upon via with within without".split()
)
CONJUNCTIONS = frozenset(
    "and but or nor so yet because although though while whereas if unless since when whenever where "
    "which who whom whose that than as including such".split()
)
UNITS = frozenset(
    "mg g kg mcg µg ug ml l cc mm cm m km % percent hz khz v mv ma hour hours hr hrs minute minutes min mins "
    "second seconds sec secs s ms millisecond milliseconds day days week weeks month months year years unit "
    "units times mg/day mg/kg degrees °c °f lb lbs pound pounds kilogram kilograms milligram milligrams "
    "milliliter milliliters millilitre millilitres microgram micrograms inch inches foot feet ft volts".split()
)
AUXILIARIES = frozenset("is are was were be been being am can could will would shall should may might must "
                        "do does did has have had not to".split())
BOUND_PAIRS = frozenset({("due", "to"), ("such", "as"), ("as", "well"), ("in", "order"), ("order", "to"),
                         ("according", "to"), ("so", "that"), ("rather", "than"), ("as", "if")})
NUMBER_RE = re.compile(r"^[-+]?\$?\d[\d,.:/]*%?$")
TRAIL_PUNCT = "\"'”’)]»"
CLAUSE_END = (",", ";", ":", "—", "–")

FORBIDDEN = 1000.0


def bare(word: str) -> str:
    return word.strip("\"'“”‘’()[]«»").lower()


def is_number(word: str) -> bool:
    return bool(NUMBER_RE.match(word.rstrip(".,;:")))


def is_capitalised(word: str) -> bool:
    w = word.lstrip("\"'“‘([")
    return bool(w) and w[0].isupper()


def ends_sentence(word: str, following: str | None) -> bool:
    core = word.rstrip(TRAIL_PUNCT)
    if not core or core[-1] not in ".!?…":
        return False
    if core[-1] == "." and (core.lower() in ABBREVIATIONS or re.fullmatch(r"(?:[A-Za-z]\.)+", core)):
        return False  # "Dr." and initials ("J.") end no sentence
    if following is None:
        return True
    nxt = following.lstrip("\"'“‘([")
    return bool(nxt) and (nxt[0].isupper() or nxt[0].isdigit())


ADJECTIVE_ENDINGS = ("al", "ic", "ive", "ous", "ful", "less", "ible", "able")
NOT_ADJECTIVES = frozenset("hospital signal interval trial clinic topic music total animal arrival removal "
                           "approval individual alternative relative several table".split())


def looks_adjective(word: str) -> bool:
    """A cheap stand-in for a part-of-speech tagger: common English adjective endings."""
    w = word.lower()
    return w.isalpha() and len(w) > 4 and w.endswith(ADJECTIVE_ENDINGS) and w not in NOT_ADJECTIVES


def hard_break_reason(before: str, after: str) -> str | None:
    """Why a line must never break between these two words (None when it may)."""
    b = bare(before)
    if before.rstrip().endswith(CLAUSE_END):
        return None
    if b in ARTICLES:
        return f"line ends with the article {before!r}"
    if b in TITLES:
        return f"line ends with the title {before!r}, split from the name"
    if is_number(before) and bare(after).rstrip(".,;:") in UNITS:
        return f"number {before!r} split from its unit {after!r}"
    return None


def break_cost(before: str, after: str, pause: float = 0.0) -> float:
    """Cost of breaking a line or a cue after `before` (lower is better)."""
    if hard_break_reason(before, after):
        return FORBIDDEN
    core = before.rstrip(TRAIL_PUNCT)
    if core.endswith((".", "!", "?", "…")) and bare(before) not in ABBREVIATIONS:
        return 0.0
    if pause >= 0.25:  # a real pause in the speech (imported timing)
        return 0.5
    if before.endswith(CLAUSE_END) or after in ("—", "–", "-"):
        return 1.0
    b, a = bare(before), bare(after)
    if b in DETERMINERS or (b, a) in BOUND_PAIRS:
        return 60.0
    if is_capitalised(before) and is_capitalised(after):
        return 100.0  # first and last name, or a multi-word proper name
    if b in PREPOSITIONS or b in CONJUNCTIONS:
        return 25.0
    if b in AUXILIARIES:
        # "is / a focal dystonia" starts the predicate; "is / characterized" splits a verb
        return 5.0 if a in ARTICLES or a in DETERMINERS else 15.0
    if before.endswith(("'s", "’s")) and after[:1].islower():
        return 30.0  # possessive and its noun ("Parkinson’s disease")
    if looks_adjective(before) and after[:1].islower() and after.isalpha():
        return 12.0  # adjective and its noun ("focal dystonia", "abnormal movements")
    if a in CONJUNCTIONS:
        return 3.0
    if a == "of":
        return 9.0
    if a in PREPOSITIONS:
        return 4.0
    return 10.0


@dataclass
class Layout:
    lines: tuple[str, ...]
    cost: float


def layout(words: Sequence[str], profile: Profile) -> Layout | None:
    """The best way to put these words on at most max_lines lines, or None if they do not fit."""
    lengths = [len(w) for w in words]
    pairs = [break_cost(words[k - 1], words[k]) for k in range(1, len(words))]
    return _lines(words, 0, len(words), _split(lengths, pairs, 0, len(words), profile))


def _lines(words: Sequence[str], start: int, end: int, split: tuple[float, int] | None) -> Layout | None:
    """The Layout for a split found by :func:`_split` (None: the words do not fit)."""
    if split is None:
        return None
    cost, k = split
    if k == 0:
        return Layout((" ".join(words[start:end]),), cost)
    return Layout((" ".join(words[start:start + k]), " ".join(words[start + k:end])), cost)


def _split(lengths: Sequence[int], pairs: Sequence[float], start: int, end: int,
           profile: Profile, total: int | None = None) -> tuple[float, int] | None:
    """The cost of the best layout of words ``start:end`` and where its second line starts
    (0: one line), or None when they do not fit. Word lengths and the cost of breaking after
    each word (``pairs[i]``: between words i and i+1) are computed once per sentence by the
    caller, and the lines are joined only for the layouts chosen (:func:`_lines`). ``total``:
    the words' characters joined by spaces, when the caller has counted them."""
    count = end - start
    if total is None:
        total = sum(lengths[start:end]) + count - 1
    if total <= profile.chars_per_line:
        return 0.0, 0
    if profile.max_lines < 2:
        return None
    best_cost, best_k = 0.0, 0
    top = -1
    for k in range(1, count):
        top += lengths[start + k - 1] + 1
        if top > profile.chars_per_line:
            break  # and every later top line is longer still
        bottom = total - top - 1
        if bottom > profile.chars_per_line:
            continue
        diff = top - bottom
        cost = pairs[start + k - 1] + 0.12 * abs(diff) + (0.4 * diff if diff > 0 else 0.0)
        if k == 1 or k == count - 1:
            cost += 6.0  # a lone word on a line reads as a fragment
        if best_k == 0 or cost < best_cost:
            best_cost, best_k = cost, k
    if best_k == 0:
        return None
    return best_cost, best_k


def force_layout(words: Sequence[str], profile: Profile) -> tuple[str, ...]:
    """Lines for words that cannot fit (a word longer than a line): greedy, reported by lint."""
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= profile.chars_per_line:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return tuple(lines)


CUE_COST = 8.0
SHORT_CUE_COST = 12.0

Fits = Callable[[int, int], bool]  # (first word index, end index) -> the span is allowed as one cue
Extra = Callable[[int, int], float]  # extra cost of a span (reading rate under imported timing)


def segment(words: Sequence[str], profile: Profile, fits: Fits | None = None, extra: Extra | None = None,
            pauses: Sequence[float] | None = None) -> list[tuple[int, int, tuple[str, ...]]]:
    """Split one sentence (or any run of words) into cues: [(start, end, lines)], ends exclusive."""
    n = len(words)
    if n == 0:
        return []
    inf = float("inf")
    best = [inf] * (n + 1)
    choice: list[tuple[int, tuple[float, int] | None] | None] = [None] * (n + 1)
    best[0] = 0.0
    lengths = [len(w) for w in words]
    pairs = [break_cost(words[k], words[k + 1]) for k in range(n - 1)]  # no pause: within a cue's lines
    for end in range(1, n + 1):
        chars = -1
        for start in range(end - 1, -1, -1):
            chars += lengths[start] + 1
            if chars > profile.chars_per_line * profile.max_lines:
                if start < end - 1:
                    break
            if best[start] == inf:
                continue
            single = start == end - 1
            if not single and fits is not None and not fits(start, end):
                break
            split = _split(lengths, pairs, start, end, profile, chars)
            if split is None and not single:
                continue
            cost = best[start] + CUE_COST + (split[0] if split is not None else FORBIDDEN)
            if end < n:
                cost += break_cost(words[end - 1], words[end], pauses[end - 1]) if pauses else pairs[end - 1]
            if end - start < 3 and n > 3:
                cost += SHORT_CUE_COST
            if extra is not None:
                cost += extra(start, end)
            if cost < best[end]:
                best[end] = cost
                choice[end] = (start, split)
    spans: list[tuple[int, int, tuple[str, ...]]] = []
    end = n
    while end > 0:
        start, split = choice[end]  # type: ignore[misc]
        lay = _lines(words, start, end, split)
        spans.append((start, end, lay.lines if lay is not None else force_layout(words[start:end], profile)))
        end = start
    return spans[::-1]


def sentences(words: Sequence[str], hard_ends: Sequence[bool] | None = None) -> list[tuple[int, int]]:
    """Index ranges of sentences; `hard_ends[i]` forces an end after word i (paragraph ends)."""
    out: list[tuple[int, int]] = []
    start = 0
    for i, word in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else None
        if (hard_ends and hard_ends[i]) or ends_sentence(word, nxt) or nxt is None:
            out.append((start, i + 1))
            start = i + 1
    return out
