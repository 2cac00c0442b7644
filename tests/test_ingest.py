"""Ingest: plain text layout rules, lists, pandoc sources (Markdown, HTML), exact spans."""

from __future__ import annotations

from pathlib import Path

from conftest import CASES, SEED, load_case

from pipeline.ingest import clean_line, looks_like_title, read_source
from pipeline.model import ListBlock, Paragraph


def segments_of(path: Path):
    doc, segs = read_source(path)
    segs = list(segs)
    return doc, segs


def test_seed_segments_have_exact_spans():
    doc, segs = segments_of(SEED)
    assert doc.title == "Dystonia Education" and doc.title_span.first_line == 1
    assert doc.description_span.first_line == doc.description_span.last_line == 3
    assert len(segs) == 15
    assert (segs[0].title, segs[0].span.first_line, segs[0].span.last_line) == ("What is Cervical Dystonia?", 5, 7)
    assert segs[-1].span.last_line == 63


def test_title_heuristic():
    assert looks_like_title("What is Cervical Dystonia?")
    assert looks_like_title("Deep Brain Stimulation for Dystonia (part 1)")
    assert not looks_like_title("Involuntary twitching movement of facial muscles due to compression of the facial nerve.")
    assert not looks_like_title("- a list item")
    assert not looks_like_title("lower case start")


def test_clean_line():
    assert clean_line("\ufeff  A\u00a0b\u200b c \t ") == "A b c"
    assert clean_line("x\x02y\x7fz\x85w\x1b[31m") == "x y z w [31m"  # control characters are never text


def test_title_with_no_body_and_body_paragraphs(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text(
        "Guide\n\nIntro one.\n\nIntro two\ncontinues here.\n\n"
        "Empty Title\n\nReal Title\n\nFirst paragraph.\n\nSecond paragraph\nwrapped.\n\n"
        "- apples\n- pears\n\n1. one\n2) two\n"
    )
    doc, segs = segments_of(path)
    assert doc.description == ["Intro one.", "Intro two continues here."]
    assert [s.title for s in segs] == ["Empty Title", "Real Title"]
    assert segs[0].blocks == ()
    assert segs[1].blocks == (
        Paragraph(text="First paragraph."),
        Paragraph(text="Second paragraph wrapped."),
        ListBlock(ordered=False, items=("apples", "pears")),
        ListBlock(ordered=True, items=("one", "two")),
    )
    assert (segs[1].span.first_line, segs[1].span.last_line) == (10, 21)


def test_body_with_no_title_becomes_description(tmp_path):
    path = tmp_path / "care-notes.txt"
    path.write_text("this text starts without a title line.\n\nWhat helps?\n\nRest helps.\n")
    _cfg, loaded = load_case(path)
    assert loaded.collection.title == "Care Notes"
    assert loaded.collection.description == "this text starts without a title line."
    assert any(d.code == "CP206" for d in loaded.diagnostics)


def test_markdown_source_through_pandoc(tmp_path):
    path = tmp_path / "guide.md"
    path.write_text(
        "# Dystonia Education\n\nIntro paragraph with *emphasis*.\n\n"
        "## What is Blepharospasm?\n\nBlepharospasm is a focal dystonia.\n\n- blinking\n- light sensitivity\n\n"
        "## What is Hemifacial Spasm?\n\nInvoluntary twitching <b>here</b>.\n"
    )
    _cfg, loaded = load_case(path)
    c = loaded.collection
    assert c.title == "Dystonia Education" and c.description == "Intro paragraph with emphasis."
    assert [t.slug for t in c.topics] == ["what-is-blepharospasm", "what-is-hemifacial-spasm"]
    assert c.topics[0].body[1] == ListBlock(items=("blinking", "light sensitivity"))
    assert c.topics[0].sources[0].first_line == 5
    assert "<b>" in c.topics[1].text  # raw HTML stays text, never markup


def test_html_source_through_pandoc(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(
        "<html><body><h1>Dystonia Education</h1><p>Intro.</p>"
        "<h2>What is Cervical Dystonia?</h2><p>Cervical dystonia is characterized by abnormal postures.</p>"
        '<img src="file:///etc/passwd"><script>alert(1)</script>'
        "<h2>Characteristics and Causes</h2><p>Generally idiopathic.</p></body></html>"
    )
    _cfg, loaded = load_case(path)
    c = loaded.collection
    assert c.title == "Dystonia Education"
    assert [t.title for t in c.topics] == ["What is Cervical Dystonia?", "Characteristics and Causes"]


def test_hostile_case_is_only_text(hostile_case):
    c = hostile_case[1].collection
    assert "<script>" in c.topics[0].title
    assert "file:///etc/passwd" in c.topics[0].text
    assert c.topics[0].slug == "what-is-script-alert-1-script-dystonia"


def test_video_case_config(video_case):
    c = video_case[1].collection
    assert c.topic("what-is-essential-tremor").media.duration_seconds == 42.0
    assert [s.title for s in c.sections] == ["Essential tremor", "Living with tremor"]
    assert c.publisher.url == "https://clinic.example.org/"
    assert CASES.is_dir()


def test_docx_source_through_pandoc(tmp_path):
    import pypandoc

    md = tmp_path / "g.md"
    md.write_text("# Dystonia Education\n\nIntro.\n\n## What is Blepharospasm?\n\nBlepharospasm is a focal dystonia.\n\n"
                  "## What is Hemifacial Spasm?\n\nInvoluntary twitching.\n")
    docx = tmp_path / "guide.docx"
    pypandoc.convert_file(str(md), "docx", outputfile=str(docx), extra_args=["--sandbox"])
    _cfg, loaded = load_case(docx)
    c = loaded.collection
    assert c.title == "Dystonia Education"
    assert [t.slug for t in c.topics] == ["what-is-blepharospasm", "what-is-hemifacial-spasm"]
    assert [s.first_line for t in c.topics for s in t.sources] == [3, 5]  # DOCX blocks are numbered in order


def test_every_pandoc_source_of_a_build_in_one_pandoc_process(tmp_path, monkeypatch):
    import subprocess

    import pypandoc
    import pytest

    from pipeline.config import Config
    from pipeline.content import load
    from pipeline.diagnostics import CarepressError

    one = tmp_path / "one.md"
    one.write_text("# Dystonia Education\n\n## What is Blepharospasm?\n\nA focal dystonia. ![x](file:///etc/passwd)\n")
    two = tmp_path / "two.html"
    two.write_text("<h2>What is Hemifacial Spasm?</h2><p>Involuntary twitching.</p><img src='file:///etc/hostname'>")
    three = tmp_path / "three.docx"
    pypandoc.convert_file(str(one), "docx", outputfile=str(three), extra_args=["--sandbox"])
    calls = []
    real_run = subprocess.run

    def counting(args, *rest, **kwargs):
        calls.append(args)
        return real_run(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "run", counting)
    loaded = load([one, two, three], Config())
    assert [a[1] for a in calls] == ["lua"] and len(calls) == 1  # one pandoc process, not one per file
    titles = [t.title for t in loaded.collection.topics]
    assert titles == ["What is Blepharospasm?", "What is Hemifacial Spasm?"]  # the DOCX repeats the first
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(CarepressError) as caught:
        load([one, broken], Config())
    assert [(d.code, d.file) for d in caught.value.diagnostics if d.code == "CP106"] == [("CP106", str(broken))]
