"""Diagnostics: values with a code, a severity and a source location.

Printed as ``path:line: severity[CODE]: message`` (the format compilers use, so editors
and CI annotate the right line). Nothing here raises; :class:`CarepressError` carries
diagnostics out of a stage that cannot go on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


# Every code we emit, with a one-line meaning (README lists them too).
CODES: dict[str, str] = {
    "CP100": "source file not found or unreadable",
    "CP101": "source file is empty",
    "CP102": "source file is binary, not text",
    "CP103": "source file is not valid UTF-8",
    "CP104": "source has no topics (no title followed by text)",
    "CP105": "unsupported source file type",
    "CP106": "pandoc could not read the source",
    "CP110": "configuration: unknown key",
    "CP111": "configuration: wrong type or value",
    "CP112": "configuration: not valid TOML",
    "CP113": "configuration names a topic the source does not have",
    "CP120": "output path refused (outside the output folder)",
    "CP121": "output could not be written",
    "CP130": "a format failed to render",
    "CP140": "a handout does not fit on one page",
    "CP201": "title with no body: dropped",
    "CP202": "same title, different bodies: kept as separate topics",
    "CP203": "near-duplicate body merged into the fuller version",
    "CP204": "slug already taken: a suffix was added",
    "CP205": "repeated blocks disagree on topic order",
    "CP206": "text before the first title with no collection title",
    "CP301": "transcript file names no known topic",
    "CP310": "caption file is malformed (timed-caption import or lint)",
    "CP311": "caption file is empty, binary, not UTF-8 or has no cues",
    "CP312": "timed captions for an unknown topic: not used",
    "CP313": "a generated caption cue breaks the caption profile",
}


@dataclass(frozen=True)
class Diagnostic:
    code: str
    severity: Severity
    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        return f"{where}{self.severity.value}[{self.code}]: {self.message}"

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "file": self.file,
            "line": self.line,
        }


def error(code: str, message: str, file: str | None = None, line: int | None = None) -> Diagnostic:
    return Diagnostic(code, Severity.ERROR, message, file, line)


def warning(code: str, message: str, file: str | None = None, line: int | None = None) -> Diagnostic:
    return Diagnostic(code, Severity.WARNING, message, file, line)


def info(code: str, message: str, file: str | None = None, line: int | None = None) -> Diagnostic:
    return Diagnostic(code, Severity.INFO, message, file, line)


@dataclass
class CarepressError(Exception):
    """A stage could not go on; carries every diagnostic that explains why."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(d) for d in self.diagnostics)


def fails(diagnostics: list[Diagnostic], strict: bool) -> bool:
    """True when the diagnostics fail a run: any error, or any warning under --strict."""
    bad = {Severity.ERROR, Severity.WARNING} if strict else {Severity.ERROR}
    return any(d.severity in bad for d in diagnostics)
