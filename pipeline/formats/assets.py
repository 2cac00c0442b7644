"""Where the package's fonts and templates are, and the few facts every renderer shares: light
to import (no pydantic, no Jinja), so a PDF worker process starts quickly."""

from __future__ import annotations

import datetime as _dt
from functools import lru_cache
from importlib import resources
from pathlib import Path

PACKAGE = resources.files("pipeline")
FONT_DIR = Path(str(PACKAGE / "fonts"))
TEMPLATE_DIR = Path(str(PACKAGE / "templates"))
FONT_FILES = {
    ("normal", 400): "AtkinsonHyperlegible-Regular.ttf",
    ("normal", 700): "AtkinsonHyperlegible-Bold.ttf",
    ("italic", 400): "AtkinsonHyperlegible-Italic.ttf",
    ("italic", 700): "AtkinsonHyperlegible-BoldItalic.ttf",
}
FONT_FAMILY = "Atkinson Hyperlegible"
FONT_LICENCE = "OFL.txt"


@lru_cache(maxsize=None)
def font_bytes(name: str) -> bytes:
    return (FONT_DIR / name).read_bytes()


def epoch_datetime(epoch: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc)
