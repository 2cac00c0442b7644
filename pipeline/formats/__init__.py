"""The registry of output formats, in their fixed stage order.

A format's module has ``render(collection, ctx) -> dict[str, bytes]``: relative
paths under ``outputs/`` to file contents. Renderers do no file I/O. Modules are
imported only when their format is built, so heavy libraries (WeasyPrint) load
only when needed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

if TYPE_CHECKING:  # type names only: the registry stays cheap to import (a cached build needs no pydantic)
    from ..cache import PartCache
    from ..config import Config
    from ..dedupe import DedupeResult
    from ..diagnostics import Diagnostic
    from ..model import Collection


@dataclass
class BuildContext:
    config: Config
    source_date_epoch: int
    report: DedupeResult | None = None
    rendered: dict[str, bytes] = field(default_factory=dict)  # files of the stages before this one
    options: Mapping[str, object] = field(default_factory=dict)  # CLI overrides, e.g. paper, profile
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # Existing timed captions to import, by topic slug: (display path, raw bytes) read from
    # <source dir>/captions/<slug>.vtt or .srt by the build (renderers do no file I/O).
    timed_captions: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    # Rendered parts from earlier builds (pipeline.cache.PartCache); None: render everything.
    parts: "PartCache | None" = None


Renderer = Callable[["Collection", BuildContext], dict[str, bytes]]


@dataclass(frozen=True)
class Format:
    name: str
    module: str
    description: str
    requires: tuple[str, ...] = ()

    def renderer(self) -> Renderer:
        return importlib.import_module(self.module).render


# Stage order is fixed: a format may use the files of those before it (HTML links to
# PDF/EPUB with their sizes, and to the captions).
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("content", "pipeline.formats.content", "content.json (the model) and dedupe-report.json"),
        Format("captions", "pipeline.formats.captions", "WebVTT, SRT and TTML/IMSC captions per topic"),
        Format("pdf", "pipeline.formats.pdf", "PDF/UA handouts, large print and the booklet"),
        Format("epub", "pipeline.formats.epub", "EPUB 3 e-book"),
        Format("html", "pipeline.formats.html", "accessible HTML site", requires=("captions", "pdf", "epub")),
    )
}


def available() -> list[str]:
    """Formats whose module exists (a format still being built is not offered)."""
    out = []
    for name, fmt in FORMATS.items():
        if importlib.util.find_spec(fmt.module) is not None:
            out.append(name)
    return out


def resolve(names: list[str]) -> list[Format]:
    """The formats asked for plus what they require, in stage order."""
    wanted: set[str] = set()

    def add(name: str) -> None:
        if name in wanted:
            return
        wanted.add(name)
        for dep in FORMATS[name].requires:
            if dep in available():  # a required stage not built yet is simply skipped
                add(dep)

    for name in names:
        add(name)
    wanted.add("content")
    return [fmt for name, fmt in FORMATS.items() if name in wanted]


import importlib.util  # noqa: E402  (used by available())
