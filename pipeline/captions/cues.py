"""A caption cue and the three file formats we write: WebVTT, SRT and TTML (IMSC 1.1 Text)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

IMSC11_TEXT = "http://www.w3.org/ns/ttml/profile/imsc1.1/text"


@dataclass(frozen=True)
class Cue:
    start: int  # milliseconds
    end: int  # milliseconds
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def clock(ms: int, sep: str = ".") -> str:
    hours, rest = divmod(int(ms), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{sep}{millis:03d}"


TIMESTAMP_IN_TEXT = re.compile(r"(?<=\d:\d{2})([.,])(?=\d{2})")


def xml_escape(text: str) -> str:
    """XML character data: & < > escaped, as ``xml.sax.saxutils.escape`` writes it (importing
    that module imports ``urllib.request``, with ``http``, ``email`` and ``ssl``: 30 to 40 ms of
    every build that writes captions)."""
    return html.escape(text, quote=False)


def vtt_escape(text: str) -> str:
    """WebVTT cue text: & < > escaped (so '-->' cannot appear either). A timestamp quoted in the
    text gets its fraction separator as a character reference, so lenient readers that look for timing
    lines anywhere (pysubs2) do not split the cue there; players decode it back."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return TIMESTAMP_IN_TEXT.sub(lambda m: f"&#{ord(m.group(1))};", text)


WORD_JOINER = "\u2060"


def srt_safe(text: str) -> str:
    """SRT has no escapes: keep text that players would take for a tag or a timing line inert by
    putting an invisible WORD JOINER (U+2060) inside '<tag', '{\\', '-->' and quoted timestamps."""
    text = text.replace("-->", "--" + WORD_JOINER + ">")
    text = re.sub(r"<(?=[A-Za-z/!])", "<" + WORD_JOINER, text)
    text = TIMESTAMP_IN_TEXT.sub(lambda m: WORD_JOINER + m.group(1), text)  # not a timing line
    return text.replace("{\\", "{" + WORD_JOINER + "\\")


def _clean_lines(cue: Cue) -> list[str]:
    # A blank line would end the cue early: never write one.
    return [line.strip() for line in cue.lines if line.strip()]


def to_vtt(cues: list[Cue], id_prefix: str = "") -> bytes:
    out = ["WEBVTT", ""]
    for n, cue in enumerate(cues, 1):
        out.append(f"{id_prefix}{n}")
        out.append(f"{clock(cue.start)} --> {clock(cue.end)}")
        out.extend(vtt_escape(line) for line in _clean_lines(cue))
        out.append("")
    return "\n".join(out).encode("utf-8")


def to_srt(cues: list[Cue]) -> bytes:
    out: list[str] = []
    for n, cue in enumerate(cues, 1):
        out.append(str(n))
        out.append(f"{clock(cue.start, ',')} --> {clock(cue.end, ',')}")
        out.extend(srt_safe(line) for line in _clean_lines(cue))
        out.append("")
    return "\r\n".join(out).encode("utf-8")


def to_ttml(cues: list[Cue], language: str, title: str = "") -> bytes:
    """TTML 2 document conforming to the IMSC 1.1 Text profile (declared on <tt>)."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<tt xmlns="http://www.w3.org/ns/ttml" xmlns:ttp="http://www.w3.org/ns/ttml#parameter"'
        ' xmlns:tts="http://www.w3.org/ns/ttml#styling" xmlns:ttm="http://www.w3.org/ns/ttml#metadata"'
        f' xml:lang="{xml_escape(language)}" ttp:timeBase="media" ttp:contentProfiles="{IMSC11_TEXT}">',
        "  <head>",
        "    <metadata>",
        f"      <ttm:title>{xml_escape(title)}</ttm:title>",
        "    </metadata>",
        "    <styling>",
        '      <style xml:id="caption" tts:fontFamily="proportionalSansSerif" tts:fontSize="100%"'
        ' tts:lineHeight="125%" tts:textAlign="center" tts:color="#FFFFFF" tts:backgroundColor="#000000C2"/>',
        "    </styling>",
        "    <layout>",
        '      <region xml:id="bottom" tts:origin="10% 10%" tts:extent="80% 80%" tts:displayAlign="after"/>',
        "    </layout>",
        "  </head>",
        '  <body region="bottom" style="caption">',
        "    <div>",
    ]
    for n, cue in enumerate(cues, 1):
        text = "<br/>".join(xml_escape(line) for line in _clean_lines(cue))
        out.append(f'      <p xml:id="c{n}" begin="{clock(cue.start)}" end="{clock(cue.end)}">{text}</p>')
    out += ["    </div>", "  </body>", "</tt>", ""]
    return "\n".join(out).encode("utf-8")
