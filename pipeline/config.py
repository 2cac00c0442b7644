"""Editorial metadata and build options: ``source/collection.toml``.

Validated by pydantic with ``extra="forbid"``; every problem is reported at once,
each with the file and the line it is on.
"""

from __future__ import annotations

import datetime as _dt
import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .diagnostics import CarepressError, Diagnostic, error
from .model import SLUG_PATTERN, Media, Organisation, Person


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TopicConfig(_Strict):
    """Per-topic editorial facts, keyed by the topic's slug."""

    video_url: str | None = Field(default=None, pattern=r"^https?://[^\s<>\"']+$")
    duration: float | None = Field(default=None, gt=0, description="video duration in seconds")
    section: str | None = Field(default=None, min_length=1, description="section (condition) title")
    tags: tuple[str, ...] = ()

    def media(self) -> Media:
        return Media(video_url=self.video_url, duration_seconds=self.duration)


class PdfConfig(_Strict):
    paper: Literal["letter", "a4"] = "letter"


class CaptionsConfig(_Strict):
    profile: Literal["dcmp", "netflix-en", "bbc"] = "dcmp"
    words_per_minute: int = Field(default=150, ge=60, le=300)


class Config(_Strict):
    id: str | None = Field(default=None, pattern=SLUG_PATTERN)
    title: str | None = Field(default=None, min_length=1)
    language: str = Field(default="en", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
    publisher: Organisation | None = None
    presenter: Person | None = None
    licence: str | None = None
    review_date: _dt.date | None = None
    subjects: tuple[str, ...] = ()
    sections: tuple[str, ...] = Field(default=(), description="section titles in reading order")
    topics: dict[str, TopicConfig] = {}
    pdf: PdfConfig = PdfConfig()
    captions: CaptionsConfig = CaptionsConfig()


def _line_of(lines: list[str], loc: tuple) -> int | None:
    """Best line number for a pydantic error location in a TOML file.

    Walks the location: a table header ``[a.b]`` or a dotted/bare key ``b =``.
    """
    keys = [str(k) for k in loc if not isinstance(k, int)]
    if not keys:
        return None
    best: int | None = None
    table: list[str] = []
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        header = re.match(r"^\[+\s*([^\]]+?)\s*\]+", line)
        if header:
            table = [p.strip().strip('"\'') for p in header.group(1).split(".")]
            if table == keys[: len(table)] and (best is None or len(table) == len(keys)):
                best = n
            continue
        key = re.match(r"^([A-Za-z0-9_\-\"'. ]+?)\s*=", line)
        if key:
            path = table + [p.strip().strip('"\'') for p in key.group(1).split(".")]
            if path == keys[: len(path)]:
                best = n
                if len(path) == len(keys):
                    return n
    return best


def load_config(path: Path, display: str | None = None) -> Config:
    """Read and validate a config file; raise CarepressError listing every problem."""
    name = display or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CarepressError([error("CP100", f"cannot read config: {exc.strerror}", name)]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CarepressError([error("CP111", "config is not UTF-8 text", name)]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise CarepressError(
            [error("CP112", f"not valid TOML: {exc}", name, int(match.group(1)) if match else None)]
        ) from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = text.splitlines()
        diags: list[Diagnostic] = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            dotted = ".".join(str(p) for p in loc)
            if err["type"] == "extra_forbidden":
                diags.append(error("CP110", f"unknown key '{dotted}'", name, _line_of(lines, loc)))
            else:
                diags.append(error("CP111", f"'{dotted}': {err['msg']}", name, _line_of(lines, loc)))
        diags.sort(key=lambda d: (d.line or 0, d.code))
        raise CarepressError(diags) from None
