"""Model invariants (frozen, forbid extras, safe slugs) and the output writer's refusals."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from pipeline.diagnostics import CarepressError
from pipeline.model import Collection, Paragraph, Section, SourceSpan, Topic
from pipeline.writer import publish


def topic(slug: str = "a-topic", **extra) -> Topic:
    return Topic(slug=slug, title="A", body=(Paragraph(text="x"),), section="topics",
                 sources=(SourceSpan(file="f.txt", first_line=1, last_line=1),), **extra)


def test_models_are_frozen_and_strict(seed_collection):
    with pytest.raises(ValidationError):
        seed_collection.topics[0].title = "changed"
    with pytest.raises(ValidationError):
        topic(colour="blue")


@pytest.mark.parametrize("slug", ["../etc", "a/b", "..", ".", "", "A-Upper", "caf\u00e9", "a--b", "-a", "a b"])
def test_unsafe_slugs_are_rejected(slug):
    with pytest.raises(ValidationError):
        topic(slug)


def test_collection_rejects_duplicate_slugs_and_uncovered_sections():
    with pytest.raises(ValidationError):
        Collection(id="c", title="C", topics=(topic(), topic()), sections=(Section(slug="topics", title="T", topics=("a-topic",)),))
    with pytest.raises(ValidationError):
        Collection(id="c", title="C", topics=(topic(),), sections=(Section(slug="topics", title="T", topics=("other",)),))


def test_span_order():
    with pytest.raises(ValidationError):
        SourceSpan(file="f", first_line=5, last_line=4)


def test_round_trip_json(seed_collection):
    again = Collection.model_validate_json(seed_collection.model_dump_json())
    assert again == seed_collection


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/x", "a/../../b", "", "a//b", "a\\b", "./a"])
def test_writer_refuses_paths_outside(tmp_path, name):
    out = tmp_path / "outputs"
    with pytest.raises(CarepressError) as info:
        publish({"ok.txt": b"1", name: b"2"}, out)
    assert info.value.diagnostics[0].code == "CP120"
    assert not (out / "ok.txt").exists()  # checked before anything is written


def test_writer_refuses_symlinked_folder(tmp_path):
    out, elsewhere = tmp_path / "outputs", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "pdf")
    with pytest.raises(CarepressError):
        publish({"pdf/x.pdf": b"1"}, out)
    assert not (elsewhere / "x.pdf").exists()


def test_writer_is_atomic_and_leaves_no_temp_files(tmp_path):
    out = tmp_path / "outputs"
    publish({"a/b.txt": b"one", "c.txt": b"two"}, out)
    publish({"a/b.txt": b"three"}, out)
    assert (out / "a" / "b.txt").read_bytes() == b"three"
    assert sorted(p.name for p in out.rglob("*")) == ["a", "b.txt", "c.txt"]


def test_publication_shows_nothing_before_commit_and_abort_leaves_the_folder_as_it_was(tmp_path):
    from pipeline.writer import STAGING, Publication

    out = tmp_path / "outputs"
    out.mkdir()
    (out / "kept.txt").write_bytes(b"old")
    (out / STAGING).mkdir()  # left by a build that was killed
    (out / STAGING / "stale.txt").write_bytes(b"x")
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    publication = Publication(out)
    publication.add({"pdf/a.pdf": b"a", "kept.txt": b"new"})
    publication.add({"html/deep/b.html": b"b"})
    publication.abort()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if STAGING not in p.parts) == [
        "kept.txt"]  # no new folders, nothing replaced
    assert (out / "kept.txt").read_bytes() == b"old" and not (out / STAGING).exists()
    assert before  # (the stale staging folder was there before)

    publication = Publication(out)
    publication.add({"pdf/a.pdf": b"a", "kept.txt": b"new"})
    publication.add({"html/deep/b.html": b"b"})
    assert not (out / "pdf" / "a.pdf").exists() and (out / "kept.txt").read_bytes() == b"old"
    stats = publication.commit()
    assert (out / "pdf" / "a.pdf").read_bytes() == b"a" and (out / "html" / "deep" / "b.html").read_bytes() == b"b"
    assert (out / "kept.txt").read_bytes() == b"new" and not (out / STAGING).exists()
    assert stats["kept.txt"].st_ino == os.stat(out / "kept.txt").st_ino


def test_a_new_output_folder_is_removed_when_the_publication_is_aborted(tmp_path):
    from pipeline.writer import Publication

    out = tmp_path / "new" / "outputs"
    publication = Publication(out)
    publication.add({"pdf/a.pdf": b"a"})
    publication.abort()
    assert not (tmp_path / "new").exists()
    publication = Publication(out)
    publication.add({"ok.txt": b"1"})
    with pytest.raises(CarepressError):
        publication.add({"a/../../b": b"2"})  # refused when added, before anything is published
    publication.abort()
    assert not (tmp_path / "new").exists()
