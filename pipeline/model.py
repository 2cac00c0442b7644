"""The canonical content model: what every output format renders.

All models are frozen and forbid unknown fields. ``schema/collection.schema.json``
is generated from :class:`Collection` by ``carepress schema``; a test fails when
the committed schema drifts from these classes.
"""

from __future__ import annotations

import datetime as _dt
import re
import sys
import types
from typing import Annotated, Literal, Union


def _without_pydantic_plugins() -> None:
    """pydantic looks for plugins when it makes its first model class: it imports
    ``importlib.metadata`` and reads the entry points of every installed distribution, two to
    four hundredths of a second of every build that loads the sources. carepress uses no
    plugin, so that search is answered with none (unless something imported it already)."""
    name = "pydantic.plugin._loader"
    if name not in sys.modules:
        loader = types.ModuleType(name)
        loader.get_plugins = lambda: ()  # type: ignore[attr-defined]
        sys.modules[name] = loader


_without_pydantic_plugins()

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator  # noqa: E402

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SLUG_PATTERN = SLUG_RE.pattern


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Slug = Annotated[
    str,
    Field(
        pattern=SLUG_PATTERN,
        max_length=120,
        description="ASCII lower-case words joined by '-': safe as a file name, never a path.",
    ),
]


class SourceSpan(_Frozen):
    """Where a piece of content came from: a file and an inclusive line range (1-based)."""

    file: str
    first_line: int = Field(ge=1)
    last_line: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "SourceSpan":
        if self.last_line < self.first_line:
            raise ValueError("last_line is before first_line")
        return self

    def __str__(self) -> str:  # "source/x.txt:3-5"
        if self.first_line == self.last_line:
            return f"{self.file}:{self.first_line}"
        return f"{self.file}:{self.first_line}-{self.last_line}"


class Paragraph(_Frozen):
    type: Literal["paragraph"] = "paragraph"
    text: str = Field(min_length=1)


class ListBlock(_Frozen):
    type: Literal["list"] = "list"
    ordered: bool = False
    items: tuple[str, ...] = Field(min_length=1)


Block = Annotated[Union[Paragraph, ListBlock], Field(discriminator="type")]


def blocks_text(blocks: tuple[Paragraph | ListBlock, ...]) -> str:
    """Plain text of blocks: paragraphs and list items separated by blank lines."""
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Paragraph):
            parts.append(block.text)
        else:
            for n, item in enumerate(block.items, 1):
                parts.append(f"{n}. {item}" if block.ordered else f"• {item}")
    return "\n\n".join(parts)


class Series(_Frozen):
    """A topic that is one part of a multi-part video series."""

    id: Slug
    title: str = Field(min_length=1)
    part: int = Field(ge=1)
    total: int = Field(ge=1)

    @model_validator(mode="after")
    def _part_in_range(self) -> "Series":
        if self.part > self.total:
            raise ValueError("part is greater than total")
        return self


class Media(_Frozen):
    """The education video behind a topic, when the editors know it."""

    video_url: str | None = Field(default=None, pattern=r"^https?://[^\s<>\"']+$")
    duration_seconds: float | None = Field(default=None, gt=0)


class Person(_Frozen):
    name: str = Field(min_length=1)
    role: str | None = None


class Organisation(_Frozen):
    name: str = Field(min_length=1)
    url: str | None = Field(default=None, pattern=r"^https?://[^\s<>\"']+$")


class Topic(_Frozen):
    slug: Slug
    title: str = Field(min_length=1)
    aliases: tuple[str, ...] = ()
    body: tuple[Block, ...] = Field(min_length=1)
    transcript: str | None = Field(
        default=None, description="Full spoken transcript, when one is known (source/transcripts/<slug>.txt)."
    )
    series: Series | None = None
    section: Slug
    tags: tuple[str, ...] = ()
    media: Media = Media()
    sources: tuple[SourceSpan, ...] = Field(min_length=1)

    @property
    def text(self) -> str:
        """The body as plain text."""
        return blocks_text(self.body)

    @property
    def summary(self) -> str:
        """First sentence of the body: a one-line summary for indexes."""
        text = self.text
        match = re.search(r"(?<=[.!?])\s", text)
        return text[: match.start()] if match else text.split("\n\n", 1)[0]


class Section(_Frozen):
    slug: Slug
    title: str = Field(min_length=1)
    topics: tuple[Slug, ...] = Field(min_length=1)


class Collection(_Frozen):
    id: Slug
    title: str = Field(min_length=1)
    description: str = ""
    language: str = Field(default="en", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
    publisher: Organisation | None = None
    presenter: Person | None = None
    licence: str | None = None
    review_date: _dt.date | None = None
    topics: tuple[Topic, ...] = Field(min_length=1)
    sections: tuple[Section, ...] = Field(min_length=1)

    @field_validator("topics")
    @classmethod
    def _unique_slugs(cls, topics: tuple[Topic, ...]) -> tuple[Topic, ...]:
        seen: set[str] = set()
        for topic in topics:
            if topic.slug in seen:
                raise ValueError(f"duplicate topic slug {topic.slug!r}")
            seen.add(topic.slug)
        return topics

    @model_validator(mode="after")
    def _sections_cover_topics(self) -> "Collection":
        slugs = [t.slug for t in self.topics]
        listed = [s for section in self.sections for s in section.topics]
        if sorted(listed) != sorted(slugs):
            raise ValueError("sections must list every topic exactly once")
        for topic in self.topics:
            section = next(s for s in self.sections if topic.slug in s.topics)
            if section.slug != topic.section:
                raise ValueError(f"topic {topic.slug!r} names section {topic.section!r} but is listed in {section.slug!r}")
        return self

    def topic(self, slug: str) -> Topic:
        for topic in self.topics:
            if topic.slug == slug:
                return topic
        raise KeyError(slug)

    def section_topics(self, section: Section) -> tuple[Topic, ...]:
        """The topics of a section, in the section's (canonical) order."""
        by_slug = {t.slug: t for t in self.topics}
        return tuple(by_slug[s] for s in section.topics)

    def series_topics(self, topic: Topic) -> tuple[Topic, ...]:
        """All parts of the topic's series in part order (just the topic when it has none)."""
        if topic.series is None:
            return (topic,)
        parts = [t for t in self.topics if t.series and t.series.id == topic.series.id]
        return tuple(sorted(parts, key=lambda t: t.series.part))  # type: ignore[union-attr]


def collection_json_schema() -> dict:
    schema = Collection.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://carepress.invalid/schema/collection.schema.json"
    return schema
