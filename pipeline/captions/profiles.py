"""Captioning guideline profiles: the numbers each guideline sets (sources: README, "Caption profiles")."""

from __future__ import annotations

from dataclasses import dataclass

from ..diagnostics import CarepressError, error


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    chars_per_line: int
    max_lines: int
    min_duration: float  # seconds a cue stays on screen at least
    max_duration: float  # seconds a cue stays on screen at most
    min_gap: float  # seconds between one cue's end and the next one's start
    max_cps: float | None = None  # reading rate in characters per second (Netflix)
    max_wpm: float | None = None  # reading rate in words per minute (DCMP, BBC)

    def reading_time(self, text: str) -> float:
        """Seconds a cue with this text needs on screen to be read under the profile."""
        return self.reading_time_of(word_count(text), char_count(text))

    def reading_time_of(self, words: int, chars: int) -> float:
        """:meth:`reading_time` of a text of ``words`` words and ``chars`` characters as
        :func:`char_count` counts them (what the estimate's search asks of every span it tries,
        counted, not joined and split again)."""
        need = self.min_duration
        if self.max_cps:
            need = max(need, chars / self.max_cps)
        if self.max_wpm:
            need = max(need, words * 60.0 / self.max_wpm)
        return need


def char_count(text: str) -> int:
    """Characters a reader reads: line breaks count as one space (as in most subtitle tools)."""
    return len(" ".join(line.strip() for line in text.split("\n")))


def word_count(text: str) -> int:
    return len(text.split())


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        # DCMP Captioning Key / Captioning Guidelines for the DCMP: 32-character line, two lines,
        # 150-160 wpm for adult special-interest media, no caption under 2 seconds.
        Profile("dcmp", "DCMP Captioning Key", 32, 2, 2.0, 7.0, 0.067, max_wpm=160),
        # Netflix Timed Text Style Guide, English (USA): 42 characters, 2 lines, 20 cps (adult),
        # 5/6 s minimum, 7 s maximum, 2-frame gap (24 fps).
        Profile("netflix-en", "Netflix Timed Text Style Guide: English", 42, 2, 5 / 6, 7.0, 0.084, max_cps=20),
        # BBC Subtitle Guidelines: about 37 characters (68% of a 16:9 frame), 2 lines,
        # 160-180 words per minute.
        Profile("bbc", "BBC Subtitle Guidelines", 37, 2, 1.0, 7.0, 0.08, max_wpm=180),
    )
}

DEFAULT_PROFILE = "dcmp"


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise CarepressError(
            [error("CP130", f"unknown caption profile {name!r} (choose {', '.join(PROFILES)})")]
        ) from None
