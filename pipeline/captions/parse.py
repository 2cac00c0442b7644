"""Reading timed captions (WebVTT, SRT) from others: strict about structure, with line numbers.

A file that cannot be read raises CaptionFileError carrying a Diagnostic (file:line) - never a
traceback. Cue text comes back as plain text: tags removed, character references decoded;
inline timestamps (``<00:00:01.480>``, as in automatic captions) are kept per word.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from ..diagnostics import CarepressError, error

TS = r"(?:(\d{1,}):)?(\d{2}):(\d{2})[.,](\d{3})"
TIMING_RE = re.compile(rf"^\s*{TS}\s+-->\s+{TS}(?:[ \t].*)?$")
VTT_TS = r"(?:(\d{2,}):)?(\d{2}):(\d{2})\.(\d{3})"
VTT_TIMING_RE = re.compile(rf"^{VTT_TS}[ \t]+-->[ \t]+{VTT_TS}(?:[ \t].*)?$")
INLINE_TS_RE = re.compile(r"<(?:(\d{1,}):)?(\d{2}):(\d{2})\.(\d{3})>")
TAG_RE = re.compile(r"</?[A-Za-z0-9_.]*(?:[ \t][^>]*)?>|<\d[^>]*>")
SSA_RE = re.compile(r"\{\\[^}]*\}")


@dataclass
class RawCue:
    number: int  # 1-based position in the file
    line: int  # line of its timing line
    start: int  # ms
    end: int  # ms
    lines: list[str]  # plain text lines
    # words with the inline timestamp that precedes them (ms), when the file gives one
    timed_words: list[tuple[str, int | None]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class CaptionFileError(CarepressError):
    pass


def _fail(code: str, message: str, path: str, line: int | None = None) -> CaptionFileError:
    return CaptionFileError([error(code, message, path, line)])


def _ms(groups: tuple) -> int:
    h, m, s, f = groups
    return ((int(h or 0) * 60 + int(m)) * 60 + int(s)) * 1000 + int(f)


def decode(raw: bytes, path: str) -> str:
    if not raw.strip():
        raise _fail("CP311", "caption file is empty", path)
    if b"\x00" in raw[:4096]:
        raise _fail("CP311", "caption file is binary, not text", path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _fail("CP311", "caption file is not valid UTF-8", path, line) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _text_lines(raw_lines: list[str], vtt: bool) -> tuple[list[str], list[tuple[str, int | None]]]:
    lines: list[str] = []
    timed: list[tuple[str, int | None]] = []
    for raw in raw_lines:
        # split on inline timestamps: each piece's words start at that timestamp
        pieces: list[tuple[str, int | None]] = []
        pos, current = 0, None
        for m in INLINE_TS_RE.finditer(raw):
            pieces.append((raw[pos:m.start()], current))
            current = _ms(m.groups())
            pos = m.end()
        pieces.append((raw[pos:], current))
        plain_parts = []
        for piece, at in pieces:
            clean = SSA_RE.sub("", TAG_RE.sub("", piece))
            if vtt:
                clean = html.unescape(clean)
            clean = clean.replace("\u00a0", " ").replace("\u200e", "").replace("\u200f", "")
            plain_parts.append(clean)
            for k, word in enumerate(clean.split()):
                timed.append((word, at if k == 0 else None))
        line = " ".join("".join(plain_parts).split())
        if line:
            lines.append(line)
    return lines, timed


def _blocks(text: str) -> list[tuple[int, list[str]]]:
    """Blocks separated by empty lines: (first line number, lines)."""
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] = []
    first = 0
    for n, line in enumerate(text.split("\n"), 1):
        if line == "":
            if current:
                blocks.append((first, current))
                current = []
            continue
        if not current:
            first = n
        current.append(line)
    if current:
        blocks.append((first, current))
    return blocks


def parse_vtt(raw: bytes, path: str) -> list[RawCue]:
    text = decode(raw, path)
    first = text.split("\n", 1)[0]
    if not re.match(r"^WEBVTT(?:[ \t].*)?$", first):
        raise _fail("CP310", "not a WebVTT file: the first line must be 'WEBVTT'", path, 1)
    cues: list[RawCue] = []
    for n, (line_no, lines) in enumerate(_blocks(text)):
        if n == 0:
            if any("-->" in line for line in lines):
                raise _fail("CP310", "a cue must follow a blank line after the WEBVTT header", path, line_no)
            continue
        head = lines[0]
        if head.startswith(("NOTE", "STYLE", "REGION")) and "-->" not in head:
            continue
        timing_at = 0 if "-->" in head else 1
        if timing_at >= len(lines) or "-->" not in lines[timing_at]:
            raise _fail("CP310", f"block has no cue timing line ('start --> end'): {head[:40]!r}", path, line_no)
        cues.append(_cue(lines, timing_at, len(cues) + 1, line_no, path, vtt=True))
    if not cues:
        raise _fail("CP311", "caption file has no cues", path)
    return cues


def _cue(lines: list[str], timing_at: int, number: int, line_no: int, path: str, vtt: bool) -> RawCue:
    """One cue from its block: the timing line at ``timing_at``, then its text lines."""
    regex, sep = (VTT_TIMING_RE, ".") if vtt else (TIMING_RE, ",")
    m = regex.match(lines[timing_at])
    if not m:
        raise _fail("CP310", f"malformed cue timing {lines[timing_at].strip()[:60]!r} "
                    f"(want hh:mm:ss{sep}mmm --> hh:mm:ss{sep}mmm)", path, line_no + timing_at)
    start, end = _ms(m.groups()[:4]), _ms(m.groups()[4:])
    if end <= start:
        raise _fail("CP310", "cue ends before it starts", path, line_no + timing_at)
    body, timed = _text_lines(lines[timing_at + 1:], vtt=vtt)
    return RawCue(number, line_no + timing_at, start, end, body, timed)


def parse_srt(raw: bytes, path: str) -> list[RawCue]:
    text = decode(raw, path)
    cues: list[RawCue] = []
    for line_no, lines in _blocks(text):
        timing_at = 1 if len(lines) > 1 and "-->" in lines[1] else 0
        if timing_at == 1 and not lines[0].strip().isdigit():
            raise _fail("CP310", f"SRT cue number expected, found {lines[0].strip()[:40]!r}", path, line_no)
        if "-->" not in lines[timing_at]:
            raise _fail("CP310", f"block has no cue timing line ('start --> end'): {lines[0][:40]!r}",
                        path, line_no)
        cues.append(_cue(lines, timing_at, len(cues) + 1, line_no, path, vtt=False))
    if not cues:
        raise _fail("CP311", "caption file has no cues", path)
    return cues


def parse_file(raw: bytes, path: str) -> list[RawCue]:
    """WebVTT when the file says so (or is named .vtt), else SRT."""
    head = raw.lstrip(b"\xef\xbb\xbf")[:6]
    if head == b"WEBVTT" or path.lower().endswith(".vtt"):
        return parse_vtt(raw, path)
    return parse_srt(raw, path)
