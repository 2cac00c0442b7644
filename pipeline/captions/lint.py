"""`carepress captions lint FILE...`: check any WebVTT/SRT file against a captioning profile.

Each violation prints as ``file:cue N: code: message`` on stdout; a file that cannot be read
or parsed prints ``file:line: error[CPxxx]: message`` on stderr. Exit status: 0 when every
cue meets the profile, 1 on violations, 2 when a file could not be read or parsed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..diagnostics import CarepressError, error
from .cues import Cue
from .parse import parse_file
from .profiles import Profile, char_count, get_profile, word_count
from .segment import hard_break_reason

TOLERANCE_MS = 1  # times are written in whole milliseconds


@dataclass(frozen=True)
class Violation:
    cue: int  # 1-based
    code: str
    message: str

    def format(self, file: str) -> str:
        return f"{file}:cue {self.cue}: {self.code}: {self.message}"


def lint_cues(cues: Sequence[Cue], profile: Profile) -> list[Violation]:
    """Every way these cues break the profile (an empty list when they meet it)."""
    out: list[Violation] = []
    gap_ms = int(round(profile.min_gap * 1000))
    for n, cue in enumerate(cues, 1):
        lines = [line for line in cue.lines if line.strip()]
        duration = cue.end - cue.start
        if not lines:
            out.append(Violation(n, "empty", "cue has no text"))
        if len(lines) > profile.max_lines:
            out.append(Violation(n, "too-many-lines", f"{len(lines)} lines (at most {profile.max_lines})"))
        for k, line in enumerate(lines, 1):
            if len(line) > profile.chars_per_line:
                out.append(Violation(n, "line-length",
                                     f"line {k} has {len(line)} characters (at most {profile.chars_per_line})"))
        if duration <= 0:
            out.append(Violation(n, "timing", "cue ends before it starts"))
            continue
        if duration + TOLERANCE_MS < profile.min_duration * 1000:
            out.append(Violation(n, "min-duration",
                                 f"on screen {duration / 1000:.3f} s (at least {profile.min_duration:.3f} s)"))
        if duration > profile.max_duration * 1000 + TOLERANCE_MS:
            out.append(Violation(n, "max-duration",
                                 f"on screen {duration / 1000:.3f} s (at most {profile.max_duration:.3f} s)"))
        text = "\n".join(lines)
        seconds = (duration + TOLERANCE_MS) / 1000
        if profile.max_cps and char_count(text) / seconds > profile.max_cps:
            out.append(Violation(n, "reading-rate", f"{char_count(text) / (duration / 1000):.1f} characters "
                                 f"per second (at most {profile.max_cps:g})"))
        if profile.max_wpm and word_count(text) * 60 / seconds > profile.max_wpm:
            out.append(Violation(n, "reading-rate", f"{word_count(text) * 60 / (duration / 1000):.0f} words "
                                 f"per minute (at most {profile.max_wpm:g})"))
        for k in range(len(lines) - 1):
            reason = hard_break_reason(lines[k].split()[-1], lines[k + 1].split()[0])
            if reason:
                out.append(Violation(n, "line-break", f"line {k + 1}: {reason}"))
        if n < len(cues):
            nxt = cues[n]
            if nxt.start < cue.start:
                out.append(Violation(n + 1, "order", "cue starts before the previous cue"))
            elif nxt.start < cue.end:
                out.append(Violation(n, "overlap", f"overlaps cue {n + 1} by {(cue.end - nxt.start) / 1000:.3f} s"))
            elif nxt.start - cue.end + TOLERANCE_MS < gap_ms:
                out.append(Violation(n, "gap", f"{nxt.start - cue.end} ms before cue {n + 1} "
                                     f"(at least {gap_ms} ms)"))
            nxt_lines = [line for line in nxt.lines if line.strip()]
            if lines and nxt_lines:
                reason = hard_break_reason(lines[-1].split()[-1], nxt_lines[0].split()[0])
                if reason:
                    out.append(Violation(n, "cue-break", f"cue ends mid-phrase: {reason}"))
    return out


def lint_file(raw: bytes, path: str, profile: Profile) -> list[Violation]:
    raw_cues = parse_file(raw, path)  # CarepressError when malformed
    return lint_cues([Cue(c.start, c.end, tuple(c.lines)) for c in raw_cues], profile)


def lint_command(files: list[str], profile: str) -> int:
    try:
        prof = get_profile(profile)
    except CarepressError as exc:
        print(exc, file=sys.stderr)
        return 2
    status = 0
    total = 0
    for name in files:
        try:
            raw = Path(name).read_bytes()
        except OSError as exc:
            print(error("CP100", f"cannot read captions: {exc.strerror}", name), file=sys.stderr)
            status = 2
            continue
        try:
            violations = lint_file(raw, name, prof)
        except CarepressError as exc:
            print(exc, file=sys.stderr)
            status = 2
            continue
        for v in violations:
            print(v.format(name))
        total += len(violations)
        if violations and status == 0:
            status = 1
    print(f"{len(files)} file(s) checked against {prof.title}: {total} violation(s)", file=sys.stderr)
    return status
