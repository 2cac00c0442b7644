"""Timing: estimated from a speaking rate (spread to the video's duration when known), or
kept from imported timed captions after removing the rolling duplication of auto-captions."""

from __future__ import annotations

import math
import re
from itertools import accumulate
from dataclasses import dataclass

from ..diagnostics import error
from .cues import Cue
from .parse import CaptionFileError, RawCue, parse_file
from .profiles import Profile
from .segment import segment, sentences

SENTENCE_PAUSE = 0.4  # seconds of silence after a sentence
PARAGRAPH_PAUSE = 0.8  # and after a paragraph
MIN_WPM, MAX_WPM = 40.0, 400.0


def _ms(seconds: float) -> int:
    return int(math.ceil(seconds * 1000 - 1e-6))


def paragraphs_of(text: str) -> list[list[str]]:
    """Words of each paragraph (blank-line separated) of a transcript; list markers dropped."""
    out: list[list[str]] = []
    for para in re.split(r"\n\s*\n", text):
        words = para.split()
        if words and words[0] == "•":
            words = words[1:]
        if words:
            out.append(words)
    return out


@dataclass
class _Planned:
    lines: tuple[str, ...]
    words: int
    pause_after: float


def _plan(paragraphs: list[list[str]], profile: Profile, wpm: float) -> list[_Planned]:
    per_word = 60.0 / wpm
    items: list[_Planned] = []
    for para in paragraphs:
        sents = sentences(para)
        for si, (a, b) in enumerate(sents):
            words = para[a:b]
            ends = list(accumulate((len(w) for w in words), initial=0))  # characters before each word

            def fits(s: int, e: int, ends: list[int] = ends) -> bool:
                # the span's words joined by spaces, counted: its words hold no whitespace (split)
                count = e - s
                need = max(count * per_word, profile.reading_time_of(count, ends[e] - ends[s] + count - 1))
                return need <= profile.max_duration

            spans = segment(words, profile, fits)
            for k, (s, e, lines) in enumerate(spans):
                pause = profile.min_gap
                if k == len(spans) - 1:
                    pause = PARAGRAPH_PAUSE if si == len(sents) - 1 else SENTENCE_PAUSE
                items.append(_Planned(lines, e - s, pause))
    return items


def _timeline(items: list[_Planned], profile: Profile, wpm: float) -> list[Cue]:
    cues: list[Cue] = []
    t = 0
    for item in items:
        need = max(item.words * 60.0 / wpm, profile.reading_time("\n".join(item.lines)))
        need = min(need, profile.max_duration)
        start, end = t, t + _ms(need)
        cues.append(Cue(start, end, item.lines))
        t = end + _ms(item.pause_after)
    return cues


def estimate(text: str, profile: Profile, wpm: float, duration: float | None = None) -> list[Cue]:
    """Cues for a transcript with no timing: speaking rate `wpm`, pauses at sentence ends; when the
    video's duration is known, the whole track is spread to end with it."""
    paragraphs = paragraphs_of(text)
    if not paragraphs:
        return []
    rate = float(wpm)
    items = _plan(paragraphs, profile, rate)
    cues = _timeline(items, profile, rate)
    if not duration:
        return cues
    target = int(round(duration * 1000))
    for _ in range(4):  # adjust the speaking rate so the natural timeline is close to the duration
        total = cues[-1].end
        if abs(total - target) <= 50:
            break
        new_rate = min(MAX_WPM, max(MIN_WPM, rate * total / target))
        if new_rate == rate:
            break
        rate = new_rate
        items = _plan(paragraphs, profile, rate)
        cues = _timeline(items, profile, rate)
    return fit_to(cues, target, profile)


def fit_to(cues: list[Cue], target_ms: int, profile: Profile) -> list[Cue]:
    """Scale a timeline so the last cue ends at target_ms, keeping profile gaps and maximum."""
    total = cues[-1].end
    scale = target_ms / total
    scaled = [Cue(int(round(c.start * scale)), int(round(c.end * scale)), c.lines) for c in cues]
    return _settle(scaled, profile)


def _settle(cues: list[Cue], profile: Profile) -> list[Cue]:
    """Hold each cue long enough to read where the next cue allows; keep gaps and the maximum."""
    gap, longest = _ms(profile.min_gap), _ms(profile.max_duration)
    out: list[Cue] = []
    for i, cue in enumerate(cues):
        end = max(cue.end, cue.start + _ms(profile.reading_time(cue.text)))
        end = min(end, cue.start + longest)
        if i + 1 < len(cues):
            end = min(end, cues[i + 1].start - gap)
        end = max(end, cue.start + 1)
        out.append(Cue(cue.start, end, cue.lines))
    return out


# ---- import of existing timed captions -------------------------------------------------

@dataclass
class Word:
    text: str
    start: int
    end: int


def _norm(word: str) -> str:
    return re.sub(r"[^\w]", "", word.casefold())


def _overlap(acc: list[Word], cue_words: list[str], prev: RawCue | None) -> int:
    """How many leading words of a cue repeat what was already shown (rolling captions)."""
    if not acc or prev is None:
        return 0
    tail = [_norm(w.text) for w in acc[-len(cue_words):]]
    head = [_norm(w) for w in cue_words]
    prev_words = [_norm(w) for w in prev.text.split()]
    prev_last_line = [_norm(w) for w in prev.lines[-1].split()] if prev.lines else []
    for k in range(min(len(tail), len(head)), 0, -1):
        if tail[-k:] == head[:k]:
            if k >= 3 or k == len(head) or head[:k] == prev_last_line or k == len(prev_words):
                return k
            return 0
    return 0


def deroll(raw_cues: list[RawCue]) -> list[Word]:
    """The words of a caption file once each, with times; repeated (rolled-up) text removed."""
    acc: list[Word] = []
    prev: RawCue | None = None
    for cue in raw_cues:
        timed = cue.timed_words
        k = _overlap(acc, [w for w, _ in timed], prev)
        prev = cue if cue.lines else prev
        new = timed[k:]
        if not new:
            continue
        starts: list[int | None] = [at for _, at in new]
        if starts[0] is None:
            starts[0] = cue.start
        # words without their own timestamp share the time between the known ones by length
        i = 0
        while i < len(new):
            if starts[i] is not None:
                i += 1
                continue
            j = i
            while j < len(new) and starts[j] is None:
                j += 1
            lo = starts[i - 1]
            hi = starts[j] if j < len(new) else cue.end
            weights = [len(new[x][0]) + 1 for x in range(i - 1, j)]
            total = sum(weights)
            acc_w = 0
            for x in range(i, j):
                acc_w += weights[x - i]
                starts[x] = lo + (hi - lo) * acc_w // total  # type: ignore[operator]
            i = j
        for x, (word, _) in enumerate(new):
            s = max(cue.start, min(int(starts[x]), cue.end))  # type: ignore[arg-type]
            e = int(starts[x + 1]) if x + 1 < len(new) else cue.end  # type: ignore[arg-type]
            acc.append(Word(word, s, max(s, min(e, cue.end))))
    # Files give when words start, rarely when they end: a word that "lasts" far longer than it
    # takes to say hides a pause, which is where a captioner would break.
    for i, w in enumerate(acc):
        said = 180 + 70 * len(w.text)  # generous: few speakers are slower than this
        if w.end - w.start > said:
            w.end = w.start + said
    return acc


LONG_PAUSE = 500  # ms of silence that ends a "sentence" in unpunctuated auto-captions


def import_timed(raw: bytes, path: str, profile: Profile) -> list[Cue]:
    """Re-segment an existing VTT/SRT to the profile, keeping its timing (CaptionFileError if bad)."""
    words = deroll(parse_file(raw, path))
    if not words:
        raise CaptionFileError([error("CP311", "caption file has no text", path)])
    texts = [w.text for w in words]
    pauses = [(words[i + 1].start - words[i].end) / 1000 if i + 1 < len(words) else 0.0 for i in range(len(words))]
    hard = [p * 1000 >= LONG_PAUSE for p in pauses]
    longest, gap = _ms(profile.max_duration), _ms(profile.min_gap)
    cues: list[Cue] = []
    for a, b in sentences(texts, hard):
        ws, sub = words[a:b], texts[a:b]

        def fits(s: int, e: int, ws: list[Word] = ws) -> bool:
            return ws[e - 1].end - ws[s].start <= longest

        def extra(s: int, e: int, ws: list[Word] = ws, sub: list[str] = sub, b: int = b) -> float:
            # the cue can stay up until the next word is spoken: can it be read by then?
            until = words[a + e].start - gap if a + e < len(words) else ws[e - 1].start + longest
            available = max(min(until, ws[s].start + longest) - ws[s].start, 1) / 1000
            return 200.0 if profile.reading_time(" ".join(sub[s:e])) > available else 0.0

        for s, e, lines in segment(sub, profile, fits, extra, pauses[a:b]):
            cues.append(Cue(ws[s].start, ws[e - 1].end, lines))
    return _settle(cues, profile)
