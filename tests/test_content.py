"""The seed expectation, exactly as issue 2 states it, and its noise variants."""

from __future__ import annotations

import codecs

import pytest
from conftest import SEED, SEED_CONFIG, load_case, modules_imported

EXPECTED_SLUGS = [
    "what-is-cervical-dystonia",
    "characteristics-and-causes",
    "general-treatment-options",
    "what-is-blepharospasm",
    "what-is-hemifacial-spasm",
    "treatment-of-cervical-dystonia",
    "deep-brain-stimulation-for-dystonia-part-1",
    "deep-brain-stimulation-for-dystonia-part-2",
]
SEED_TEXT = SEED.read_text(encoding="utf-8")


def test_seed_counts(seed):
    counts = seed[1].report.counts()
    assert counts == {
        "segments": 15, "topics": 8, "exact": 5, "title_variant": 2,
        "near_duplicate": 0, "dropped": 0, "conflicts": 0,
    }


def test_seed_order_and_slugs(seed_collection):
    assert [t.slug for t in seed_collection.topics] == EXPECTED_SLUGS


def test_seed_collection_head(seed_collection):
    assert seed_collection.title == "Dystonia Education"
    assert seed_collection.id == "dystonia-education"
    assert seed_collection.description.startswith("This unique resource is designed to educate")
    assert seed_collection.description.endswith("Rocky Mountain Movement Disorders Center.")
    assert seed_collection.language == "en"
    assert seed_collection.publisher.name == "Rocky Mountain Movement Disorders Center"
    assert seed_collection.presenter.name == "Dr. Kumar"


def test_seed_series_and_aliases(seed_collection):
    part1 = seed_collection.topic("deep-brain-stimulation-for-dystonia-part-1")
    part2 = seed_collection.topic("deep-brain-stimulation-for-dystonia-part-2")
    assert part1.title == "Deep Brain Stimulation for Dystonia (part 1)"
    assert part1.aliases == ("Deep Brain Stimulation (part 1)",)
    assert part2.aliases == ("Deep Brain Stimulation (part 2)",)
    assert part1.series.id == part2.series.id
    assert (part1.series.part, part1.series.total) == (1, 2)
    assert (part2.series.part, part2.series.total) == (2, 2)
    assert seed_collection.series_topics(part2) == (part1, part2)
    others = [t for t in seed_collection.topics if t.slug not in (part1.slug, part2.slug)]
    assert all(t.series is None and t.aliases == () for t in others)


def test_seed_sources_list_every_span(seed_collection):
    spans = {t.slug: [(s.first_line, s.last_line) for s in t.sources] for t in seed_collection.topics}
    assert spans["what-is-cervical-dystonia"] == [(5, 7), (33, 35)]
    assert spans["what-is-hemifacial-spasm"] == [(49, 51)]
    assert spans["deep-brain-stimulation-for-dystonia-part-2"] == [(29, 31), (61, 63)]
    assert all(s.file.endswith("dystonia-education.txt") for t in seed_collection.topics for s in t.sources)
    assert sum(len(v) for v in spans.values()) == 15


def test_seed_text_kept_exactly(seed_collection):
    body = seed_collection.topic("deep-brain-stimulation-for-dystonia-part-2").text
    assert "Parkinson\u2019s disease" in body and "Tourette\u2019s syndrome" in body


def _variants() -> dict[str, bytes]:
    text = SEED_TEXT
    lines = text.split("\n")
    return {
        "crlf": text.replace("\n", "\r\n").encode(),
        "cr": text.replace("\n", "\r").encode(),
        "bom": codecs.BOM_UTF8 + text.encode(),
        "utf16-bom": codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
        "nbsp": text.replace("is characterized", "is\u00a0characterized").replace("Deep brain", "Deep\u00a0brain").encode(),
        "zero-width": text.replace("Blepharospasm is", "Bleph\u200barospasm is").replace("What is", "\u200bWhat is").encode(),
        "blank-lines": text.replace("\n\n", "\n\n\n\n \n").encode(),
        "trailing-space": "\n".join(line + "  \t" for line in lines).encode(),
        "straight-quotes": text.replace("\u2019", "'").encode(),
        "mixed-quotes": (text[: len(text) // 2] + text[len(text) // 2:].replace("\u2019", "'")).encode(),
        "third-block": (text.rstrip("\n") + "\n\n" + "\n".join(lines[32:])).encode(),  # block 2 again
        "all-noise": (codecs.BOM_UTF8 + text.replace("\u2019", "'").replace(" is ", " is\u00a0")
                      .replace("\n\n", "\n \n\n").replace("\n", "\r\n").encode()),
    }


@pytest.mark.parametrize("name", sorted(_variants()))
def test_noise_variants_give_the_same_topics(name, tmp_path, seed_collection):
    path = tmp_path / "dystonia-education.txt"
    path.write_bytes(_variants()[name])
    _cfg, loaded = load_case(path, SEED_CONFIG)
    got = loaded.collection
    assert [t.slug for t in got.topics] == EXPECTED_SLUGS
    assert got.title == "Dystonia Education"
    assert got.description == seed_collection.description.replace("\u00a0", " ")
    counts = loaded.report.counts()
    assert counts["topics"] == 8 and counts["title_variant"] >= 2 and counts["dropped"] == 0
    # Canonical text has no invisible or non-breaking characters left.
    for topic in got.topics:
        assert not any(c in topic.text for c in "\u00a0\u200b\ufeff\r")
        assert topic.title == topic.title.strip()


def test_third_block_adds_exact_merges(tmp_path):
    path = tmp_path / "seed.txt"
    path.write_bytes(_variants()["third-block"])
    _cfg, loaded = load_case(path, SEED_CONFIG)
    counts = loaded.report.counts()
    assert counts["segments"] == 23 and counts["topics"] == 8
    assert counts["exact"] + counts["title_variant"] == 15


def test_default_config_needs_nothing(tmp_path):
    """A newcomer's text needs no config: id and title come from the text."""
    path = tmp_path / "notes.txt"
    path.write_text("Living Well With Tremor\n\nA short guide.\n\nWhat helps?\n\nRest and routine help.\n")
    _cfg, loaded = load_case(path)
    c = loaded.collection
    assert (c.id, c.title, c.description) == ("living-well-with-tremor", "Living Well With Tremor", "A short guide.")
    assert [t.slug for t in c.topics] == ["what-helps"]
    assert [s.title for s in c.sections] == ["Topics"]


def test_loading_plain_text_imports_neither_pandoc_nor_pydantics_plugin_search():
    """Plain-text sources never need pandoc, and carepress answers pydantic's plugin search with
    none (it would import importlib.metadata and read every installed distribution's entry
    points): neither is imported to load the seed, and the models still validate."""
    probe = ("from pathlib import Path\nfrom pipeline.build import Inputs, load_inputs\n"
             f"config, loaded = load_inputs(Inputs([Path({str(SEED)!r})], Path({str(SEED_CONFIG)!r}), None))\n"
             "assert loaded.collection.topics\n"
             "from pydantic import ValidationError\nfrom pipeline.model import Person\n"
             "try:\n    Person(name='A', unknown=1)\nexcept ValidationError:\n    pass\n"
             "else:\n    raise SystemExit('not validated')")
    assert modules_imported(probe, ("pypandoc", "importlib.metadata")) == []
