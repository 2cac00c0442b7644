"""Raw source -> segments, each with its exact source location.

Plain text is read as a stream (bounded memory on large files) and survives what
scraped text contains: CRLF/CR endings, BOMs (UTF-8 and UTF-16), non-breaking and
zero-width spaces, trailing whitespace, runs of blank lines. Markdown, HTML and
DOCX go through pandoc (one process for all of a build's sources, each reader in a sandbox)
into the same segments.

Layout of a plain-text source: the first line is the collection title; paragraphs
before the first topic title are the collection description; then each title line
is followed by its body paragraphs. A title is a single short line that does not
end like a sentence.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .diagnostics import CarepressError, Diagnostic, error, info, warning
from .formats_in import PANDOC_READERS, TEXT_SUFFIXES
from .model import ListBlock, Paragraph, SourceSpan, blocks_text

CHUNK = 1 << 20

_INVISIBLE = ("\ufeff", "\u200b", "\u200c", "\u200d", "\u2060", "\u00ad")
# C0/C1 control characters (tab aside, which is whitespace): never text; XML cannot even hold most.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_BULLET = re.compile(r"^(?:[-*\u2022\u2023\u25e6\u2043]|(\d{1,3})[.)])\s+(.*)$")
_SENTENCE_END = (".", ",", ";", ":", "!")


@dataclass(frozen=True)
class Segment:
    """A title and its body as found in the source; ``blocks`` is empty for a title with no body."""

    index: int
    title: str
    blocks: tuple[Paragraph | ListBlock, ...]
    span: SourceSpan


@dataclass
class SourceDocument:
    """What one source file says: its title, description and topic segments."""

    file: str
    title: str | None = None
    title_span: SourceSpan | None = None
    description: list[str] = field(default_factory=list)
    description_span: SourceSpan | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)


def clean_line(text: str) -> str:
    """Drop invisible characters, turn every kind of space (NBSP too) into one plain space, strip."""
    if not text.isascii():
        for char in _INVISIBLE:
            if char in text:
                text = text.replace(char, "")
    if not text.isprintable():
        text = _CONTROLS.sub(" ", text)
    return " ".join(text.split())


def looks_like_title(text: str) -> bool:
    words = text.split()
    return (
        0 < len(text) <= 100
        and len(words) <= 14
        and not text.endswith(_SENTENCE_END)
        and not _BULLET.match(text)
        and (text[0].isupper() or text[0].isdigit())
    )


# ---------------------------------------------------------------- reading bytes


def _check_binary(sample: bytes, display: str) -> None:
    if b"\x00" in sample:
        line = sample[: sample.index(b"\x00")].count(b"\n") + 1
        raise CarepressError([error("CP102", "binary file (NUL byte), not text", display, line)])


def iter_lines(path: Path, display: str) -> Iterator[tuple[int, str]]:
    """Yield (line number, decoded line without terminator), streaming.

    UTF-8 (with or without BOM) and UTF-16 with a BOM are read. Invalid UTF-8 stops
    with CP103 naming the line; a NUL byte with CP102.
    """
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise CarepressError([error("CP100", f"cannot read source: {exc.strerror}", display)]) from None
    with handle:
        head = handle.read(4)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            yield from _iter_utf16(handle, head, display)
            return
        handle.seek(3 if head.startswith(codecs.BOM_UTF8) else 0)
        number = 0
        pending = b""
        first = True
        while True:
            chunk = handle.read(CHUNK)
            if first:
                _check_binary(chunk[:8192], display)
                first = False
            data = pending + chunk
            if not data:
                return
            lines = data.splitlines(keepends=True)
            pending = b""
            if chunk and lines and (lines[-1].endswith(b"\r") or not lines[-1].endswith((b"\n", b"\r"))):
                pending = lines.pop()  # may continue (or be "\r" of "\r\n") in the next chunk
            for raw in lines:
                number += 1
                body = raw.rstrip(b"\r\n")
                if b"\x00" in body:
                    raise CarepressError([error("CP102", "binary file (NUL byte), not text", display, number)])
                try:
                    yield number, body.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise CarepressError(
                        [
                            error(
                                "CP103",
                                f"invalid UTF-8 (byte 0x{body[exc.start]:02x} at column {exc.start + 1}); "
                                "save the file as UTF-8",
                                display,
                                number,
                            )
                        ]
                    ) from None
            if not chunk:
                return


def _iter_utf16(handle, head: bytes, display: str) -> Iterator[tuple[int, str]]:
    encoding = "utf-16-le" if head.startswith(codecs.BOM_UTF16_LE) else "utf-16-be"
    handle.seek(2)
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    number = 0
    pending = ""
    while True:
        chunk = handle.read(CHUNK)
        try:
            text = pending + decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError:
            raise CarepressError(
                [error("CP103", f"invalid {encoding.upper()} text", display, number + 1)]
            ) from None
        lines = text.splitlines(keepends=True)
        pending = ""
        if chunk and lines and (lines[-1].endswith("\r") or not lines[-1].endswith(("\n", "\r"))):
            pending = lines.pop()
        for line in lines:
            number += 1
            if "\x00" in line:
                raise CarepressError([error("CP102", "binary file (NUL character), not text", display, number)])
            yield number, line.rstrip("\r\n\u2028\u2029\x0b\x0c\x1c\x1d\x1e\x85")
        if not chunk:
            return


# ---------------------------------------------------------------- plain text


def _iter_blocks(lines: Iterator[tuple[int, str]]) -> Iterator[tuple[int, int, list[str]]]:
    """Group non-blank cleaned lines into (first line, last line, lines)."""
    current: list[str] = []
    first = last = 0
    for number, raw in lines:
        line = clean_line(raw)
        if line:
            if not current:
                first = number
            current.append(line)
            last = number
        elif current:
            yield first, last, current
            current = []
    if current:
        yield first, last, current


def _block_from_lines(lines: list[str]) -> Paragraph | ListBlock:
    marks = [_BULLET.match(line) for line in lines]
    if all(marks):
        ordered = all(m.group(1) for m in marks)  # type: ignore[union-attr]
        return ListBlock(ordered=ordered, items=tuple(m.group(2) for m in marks))  # type: ignore[union-attr]
    return Paragraph(text=" ".join(lines))


class _Assembler:
    """Turns a stream of (title | block) events into a SourceDocument and segments."""

    def __init__(self, doc: SourceDocument):
        self.doc = doc
        self.index = 0
        self.title: tuple[str, int, int] | None = None
        self.blocks: list[Paragraph | ListBlock] = []
        self.last_line = 0
        self.seen_any = False

    def add_title(self, text: str, first: int, last: int) -> Iterator[Segment]:
        if not self.seen_any and self.doc.title is None:
            self.seen_any = True
            self.doc.title = text
            self.doc.title_span = SourceSpan(file=self.doc.file, first_line=first, last_line=last)
            return
        self.seen_any = True
        yield from self.flush()
        self.title = (text, first, last)

    def add_block(self, block: Paragraph | ListBlock, first: int, last: int) -> None:
        if not self.seen_any:
            self.doc.diagnostics.append(
                info("CP206", "the text does not start with a title line; the collection title comes from the file name",
                     self.doc.file, first)
            )
        self.seen_any = True
        if self.title is None:
            self.doc.description.append(blocks_text((block,)))
            span = self.doc.description_span
            self.doc.description_span = SourceSpan(
                file=self.doc.file, first_line=span.first_line if span else first, last_line=last
            )
            return
        self.blocks.append(block)
        self.last_line = last

    def flush(self) -> Iterator[Segment]:
        if self.title is None:
            return
        text, first, last = self.title
        end = self.last_line if self.blocks else last
        segment = Segment(self.index, text, tuple(self.blocks), SourceSpan(file=self.doc.file, first_line=first, last_line=end))
        self.index += 1
        self.title = None
        self.blocks = []
        yield segment


def read_text(path: Path, display: str, doc: SourceDocument) -> Iterator[Segment]:
    assembler = _Assembler(doc)
    empty = True
    for first, last, lines in _iter_blocks(iter_lines(path, display)):
        empty = False
        if len(lines) == 1 and looks_like_title(lines[0]):
            yield from assembler.add_title(lines[0], first, last)
        else:
            assembler.add_block(_block_from_lines(lines), first, last)
    if empty:
        raise CarepressError([error("CP101", "source file is empty (no text at all)", display, 1)])
    yield from assembler.flush()


# ---------------------------------------------------------------- pandoc sources


def _stringify(inlines: list) -> str:
    out: list[str] = []
    for node in inlines:
        kind = node.get("t")
        content = node.get("c")
        if kind == "Str":
            out.append(content)
        elif kind in ("Space", "SoftBreak", "LineBreak"):
            out.append(" ")
        elif kind in ("Emph", "Strong", "Strikeout", "Superscript", "Subscript", "SmallCaps", "Underline"):
            out.append(_stringify(content))
        elif kind in ("Span", "Link", "Image"):
            out.append(_stringify(content[1]))
        elif kind == "Quoted":
            quote = "\u201c{}\u201d" if content[0]["t"] == "DoubleQuote" else "\u2018{}\u2019"
            out.append(quote.format(_stringify(content[1])))
        elif kind in ("Code", "Math"):
            out.append(content[1])
        elif kind == "RawInline":
            out.append(content[1])
        elif kind in ("Cite",):
            out.append(_stringify(content[1]))
        elif kind == "Note":
            continue
    return clean_line("".join(out))


def _pandoc_events(blocks: list) -> Iterator[tuple[str, object]]:
    for block in blocks:
        kind = block.get("t")
        content = block.get("c")
        if kind == "Header":
            yield "title", (content[0], _stringify(content[2]))
        elif kind in ("Para", "Plain"):
            text = _stringify(content)
            if text:
                yield "block", Paragraph(text=text)
        elif kind in ("BulletList", "OrderedList"):
            items_raw = content if kind == "BulletList" else content[1]
            items = tuple(
                t for t in (" ".join(_stringify(b.get("c", [])) for b in item if b.get("t") in ("Para", "Plain"))
                            for item in items_raw) if t
            )
            if items:
                yield "block", ListBlock(ordered=kind == "OrderedList", items=items)
        elif kind in ("BlockQuote",):
            yield from _pandoc_events(content)
        elif kind == "Div":
            yield from _pandoc_events(content[1])
        elif kind in ("CodeBlock", "RawBlock"):
            text = clean_line(content[1])
            if text:
                yield "block", Paragraph(text=text)
        elif kind == "LineBlock":
            text = " ".join(_stringify(line) for line in content)
            if text:
                yield "block", Paragraph(text=text)


# Reads every pandoc source of a build in one pandoc process (``pandoc lua``), each through a
# reader run in a sandbox that sees no file system: arguments are reader, path, reader, path...;
# it prints a JSON array holding each file's AST, or {"error": message}, in that order.
_READ_ALL = r"""
local out = {}
for i = 1, #arg, 2 do
  local reader, path = arg[i], arg[i + 1]
  local handle, problem = io.open(path, "rb")
  if not handle then
    table.insert(out, pandoc.json.encode({error = tostring(problem)}))
  else
    local content = handle:read("a")
    handle:close()
    local ok, result = pcall(pandoc.read, content, reader, nil, {})
    if ok then
      table.insert(out, pandoc.write(result, "json"))
    else
      table.insert(out, pandoc.json.encode({error = tostring(result)}))
    end
  end
end
io.write("[" .. table.concat(out, ",") .. "]")
"""


def read_pandoc_sources(paths: list[Path]) -> dict[Path, dict | str]:
    """Each pandoc source's AST (or pandoc's error message), all from one pandoc process."""
    paths = [p for p in paths if p.suffix.lower() in PANDOC_READERS]
    if not paths:
        return {}  # plain text only: pypandoc is not even imported (a fiftieth of a second)
    import subprocess

    import pypandoc

    args = [item for p in paths for item in (PANDOC_READERS[p.suffix.lower()], str(p))]
    try:
        proc = subprocess.run([pypandoc.get_pandoc_path(), "lua", "-", *args], input=_READ_ALL.encode(),
                              capture_output=True, timeout=600)
        if proc.returncode != 0:
            raise OSError(proc.stderr.decode("utf-8", "replace").strip()[:300] or f"exit status {proc.returncode}")
        results = json.loads(proc.stdout)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return {p: f"pandoc failed: {exc}" for p in paths}
    return {p: (r["error"] if isinstance(r, dict) and "error" in r else r) for p, r in zip(paths, results)}


def _line_finder(lines: list[str] | None) -> "callable":
    """Locate text in the raw file's lines to give pandoc-read blocks their source lines."""
    if lines is None:
        counter = iter(range(1, 1 << 62))
        return lambda _text: next(counter)  # DOCX has no lines: number blocks in order
    lowered = [clean_line(line).lower() for line in lines]
    state = {"pos": 0}

    def find(text: str) -> int:
        needle = text.lower()[:40]
        for n in range(state["pos"], len(lowered)):
            if needle and needle in lowered[n]:
                state["pos"] = n + 1
                return n + 1
        return max(1, state["pos"])

    return find


def read_pandoc(path: Path, display: str, doc: SourceDocument, ast: dict | str | None = None) -> Iterator[Segment]:
    """Segments of a pandoc source; ``ast`` as :func:`read_pandoc_sources` gave it (read now if None)."""
    reader = PANDOC_READERS[path.suffix.lower()]
    if path.stat().st_size == 0:
        raise CarepressError([error("CP101", "source file is empty (no text at all)", display, 1)])
    # Text sources get the plain-text encoding/binary checks; their lines locate the blocks.
    lines = None if reader == "docx" else [line for _n, line in iter_lines(path, display)]
    if ast is None:
        ast = read_pandoc_sources([path])[path]
    if isinstance(ast, str):
        raise CarepressError([error("CP106", f"pandoc could not read it: {ast.strip()[:300]}", display)])
    events = list(_pandoc_events(ast.get("blocks", [])))
    if not events:
        raise CarepressError([error("CP101", "source file is empty (no text at all)", display, 1)])
    find = _line_finder(lines)
    levels = [lvl for kind, payload in events if kind == "title" for lvl in [payload[0]]]
    top = min(levels) if levels else None
    # The first heading is the collection title when it is the only one at the top level.
    collection_heading = bool(levels) and events[0][0] == "title" and levels.count(top) == 1 and levels[0] == top and len(levels) > 1
    assembler = _Assembler(doc)
    if not collection_heading:
        assembler.seen_any = True  # every heading is a topic
    for kind, payload in events:
        if kind == "title":
            _level, text = payload  # type: ignore[misc]
            line = find(text)
            yield from assembler.add_title(text, line, line)
        else:
            block = payload
            probe = block.text if isinstance(block, Paragraph) else block.items[0]  # type: ignore[union-attr]
            line = find(probe)
            assembler.add_block(block, line, line)  # type: ignore[arg-type]
    yield from assembler.flush()


# ---------------------------------------------------------------- entry point


def read_source(path: Path, display: str | None = None,
                ast: dict | str | None = None) -> tuple[SourceDocument, Iterator[Segment]]:
    """Open a source; return its document head (filled while iterating) and its segments.
    A pandoc source's ``ast`` may come from :func:`read_pandoc_sources` (one process a build)."""
    display = display or str(path)
    doc = SourceDocument(file=display)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise CarepressError([error("CP100", "source file not found", display)])
    if suffix in PANDOC_READERS:
        return doc, read_pandoc(path, display, doc, ast)
    if suffix in TEXT_SUFFIXES:
        return doc, read_text(path, display, doc)
    raise CarepressError(
        [error("CP105", f"unsupported source type '{suffix}' (use .txt, .md, .html or .docx)", display)]
    )


def warn_title_without_body(segment: Segment) -> Diagnostic:
    return warning(
        "CP201",
        f"title '{segment.title}' has no text under it; dropped (recorded in the dedupe report)",
        segment.span.file,
        segment.span.first_line,
    )
