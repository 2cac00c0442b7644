"""Build cache: nothing changed -> nothing rendered, no renderer imported; any change -> rebuild."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pikepdf
import pytest

from conftest import ROOT, SEED, SEED_CONFIG, run_cli

from pipeline.cache import PartCache, entries


def build(out, *extra):
    return run_cli("build", "--out", str(out), "--source", str(SEED_CONFIG.parent / SEED.name), "--config",
                   str(SEED_CONFIG), *extra)


def test_unchanged_rebuild_renders_nothing_and_imports_no_renderer(tmp_path, built):
    out = tmp_path / "o"
    first = build(out, "--quiet")
    assert first.returncode == 0, first.stderr
    code = (
        "import sys; from pipeline.cli import main; "
        f"rc = main(['build', '--out', {str(out)!r}, '--source', {str(SEED)!r}, '--config', {str(SEED_CONFIG)!r}]); "
        "heavy = [m for m in ('weasyprint', 'ebooklib', 'jinja2', 'pypandoc') if m in sys.modules]; "
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    again = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "is up to date" in again.stdout and "HEAVY []" in again.stdout


def test_any_change_rebuilds(tmp_path):
    out = tmp_path / "o"
    source = tmp_path / SEED.name
    source.write_bytes(SEED.read_bytes())
    args = ("--formats", "content", "--source", str(source), "--config", str(SEED_CONFIG))
    assert run_cli("build", "--out", str(out), *args).returncode == 0
    assert "up to date" in run_cli("build", "--out", str(out), *args).stdout
    source.write_bytes(SEED.read_bytes().replace(b"jerky movements", b"jerky head movements"))
    changed = run_cli("build", "--out", str(out), *args)
    assert changed.returncode == 0 and "up to date" not in changed.stdout
    assert "jerky head movements" in (out / "content.json").read_text()
    (out / "content.json").write_text("{}")  # an output edited by hand is rebuilt
    assert "up to date" not in run_cli("build", "--out", str(out), *args).stdout
    assert json.loads((out / "content.json").read_text())["id"] == "dystonia-education"
    assert "up to date" not in run_cli("build", "--out", str(out), *args, "--force").stdout


def _published(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.relative_to(folder).as_posix().startswith(".")}


def test_one_topic_changed_rerenders_only_what_contains_it(tmp_path):
    source = tmp_path / SEED.name
    source.write_bytes(SEED.read_bytes())
    args = ("--quiet", "--source", str(source), "--config", str(SEED_CONFIG))
    incremental = tmp_path / "inc"
    assert run_cli("build", "--out", str(incremental), *args).returncode == 0
    parts = incremental / ".carepress-cache"
    before = set(entries(parts))
    source.write_bytes(SEED.read_bytes().replace(b"involuntary eye closure", b"involuntary closing of the eyes"))
    assert run_cli("build", "--out", str(incremental), *args).returncode == 0
    after = set(entries(parts))
    # its handout, large print, booklet part, captions, EPUB document (and that document deflated for
    # the zip) and its page of the site; the page counts are rewritten under the same key
    assert len(after - before) == 7
    assert len(after) == len(before)  # as many went stale, and were pruned
    counts = json.loads(entries(parts)[PartCache.key("pdf-page-counts", "letter", os.environ["SOURCE_DATE_EPOCH"])])
    assert set(counts) <= after and len(set(counts) & (after - before)) == 3  # the new PDFs' counts were kept
    clean = tmp_path / "clean"
    assert run_cli("build", "--out", str(clean), *args, "--force").returncode == 0
    assert _published(incremental) == _published(clean)
    assert b"closing of the eyes" in (clean / "content.json").read_bytes()


RETITLED = (b"What is Blepharospasm?", b"What Is Blepharospasm Really?")  # so its slug changes too
GONE = ["captions/what-is-blepharospasm.srt", "captions/what-is-blepharospasm.ttml",
        "captions/what-is-blepharospasm.vtt", "html/what-is-blepharospasm.html",
        "pdf/large-print/what-is-blepharospasm.pdf", "pdf/what-is-blepharospasm.pdf"]


def test_a_retitled_topic_gives_the_folder_a_clean_build_gives(tmp_path):
    """A topic retitled, and so renamed: its old outputs are removed (they were left behind: a
    clinic would have gone on printing the old handout), and the e-book's contents (nav
    document, section pages, NCX), cached under what they show, are made again with the new
    title. The folder is the one a clean build makes. (An edited body makes none of the
    contents again: the seven new parts of the test above.)"""
    import zipfile

    source = tmp_path / SEED.name
    source.write_bytes(SEED.read_bytes())
    args = ("--quiet", "--source", str(source), "--config", str(SEED_CONFIG))
    out = tmp_path / "inc"
    assert run_cli("build", "--out", str(out), *args).returncode == 0
    assert all((out / name).is_file() for name in GONE)
    source.write_bytes(SEED.read_bytes().replace(*RETITLED, 1))
    assert run_cli("build", "--out", str(out), *args).returncode == 0
    assert not any((out / name).exists() for name in GONE)
    clean = tmp_path / "clean"
    assert run_cli("build", "--out", str(clean), *args, "--force").returncode == 0
    assert _published(out) == _published(clean)
    with zipfile.ZipFile(out / "epub" / "dystonia-education.epub") as book:
        sections = "".join(book.read(name).decode() for name in book.namelist() if name.startswith("EPUB/section-"))
        for text in (book.read("EPUB/nav.xhtml").decode(), book.read("EPUB/toc.ncx").decode(), sections):
            assert "What Is Blepharospasm Really?" in text and "What is Blepharospasm?" not in text


def test_a_build_of_fewer_formats_removes_only_its_own_old_outputs(tmp_path):
    """Outputs are removed only in the folders the build makes files in, and never what the last
    manifest did not record, a symbolic link, or a name no build publishes."""
    from pipeline.build import stale
    from pipeline.writer import remove

    source = tmp_path / SEED.name
    source.write_bytes(SEED.read_bytes())
    args = ("--quiet", "--source", str(source), "--config", str(SEED_CONFIG))
    out = tmp_path / "out"
    assert run_cli("build", "--out", str(out), *args).returncode == 0
    mine = out / "pdf" / "mine.pdf"  # not carepress's: never in a manifest
    mine.write_bytes(b"%PDF-1.7 kept")
    source.write_bytes(SEED.read_bytes().replace(*RETITLED, 1))
    assert run_cli("build", "--out", str(out), *args, "--formats", "pdf").returncode == 0
    assert [name for name in GONE if (out / name).exists()] == GONE[:4]  # the captions and site were not built
    assert (out / "pdf" / "what-is-blepharospasm-really.pdf").is_file() and mine.read_bytes() == b"%PDF-1.7 kept"
    assert stale({"html/a.html": [], "pdf/b.pdf": [], "content.json": [], ".carepress-cache/pack-00": []},
                 {"pdf/c.pdf": b""}) == ["pdf/b.pdf"]
    outside = tmp_path / "outside.pdf"
    outside.write_bytes(b"kept")
    (out / "pdf" / "link.pdf").symlink_to(outside)
    remove(out, ["pdf/link.pdf", "../outside.pdf", "pdf/../../outside.pdf", "pdf", "pdf/gone.pdf"])
    assert (out / "pdf" / "link.pdf").is_symlink() and outside.read_bytes() == b"kept" and (out / "pdf").is_dir()


def _contents_numbers(booklet) -> list[int]:
    """The page numbers the booklet's contents (its second page) shows, in order."""
    text = subprocess.run(["pdftotext", "-f", "2", "-l", "2", "-layout", str(booklet), "-"], capture_output=True,
                          text=True, check=True).stdout
    return [int(m) for m in re.findall(r"(\d+)\s*$", text, re.MULTILINE)][:-1]  # but its "Page 2 of N"


def test_topics_moving_to_other_pages_render_neither_contents_nor_overlay(tmp_path):
    """The contents and the overlay show page numbers, written in at assembly: an edit that
    moves every later topic down a page renders only what contains the edited topic, and the
    booklet, its contents' numbers included, is the one a clean build makes."""
    source = tmp_path / SEED.name
    source.write_bytes(SEED.read_bytes())
    args = ("--quiet", "--source", str(source), "--config", str(SEED_CONFIG))
    out = tmp_path / "inc"
    assert run_cli("build", "--out", str(out), *args).returncode == 0
    booklet = out / "pdf" / "dystonia-education-booklet.pdf"
    numbers = _contents_numbers(booklet)
    before = set(entries(out / ".carepress-cache"))
    site = {name: data for name, data in _published(out).items() if name.startswith("html/")}
    longer = b"repetitive neck muscle contractions." + b" A sentence more about what this feels like day to day." * 40
    source.write_bytes(SEED.read_bytes().replace(b"repetitive neck muscle contractions.", longer, 1))
    assert run_cli("build", "--out", str(out), *args).returncode == 0
    moved = _contents_numbers(booklet)
    assert len(moved) == len(numbers) and moved[0] == numbers[0] and moved[-1] > numbers[-1]
    # its handout, large print, booklet part, captions, EPUB document (and that deflated), its site page
    assert len(set(entries(out / ".carepress-cache")) - before) == 7
    # of the site, only its page and the index (the booklet's length) changed
    now = {name: data for name, data in _published(out).items() if name.startswith("html/")}
    assert {name for name in site if now[name] != site[name]} == {"html/index.html", "html/what-is-cervical-dystonia.html"}
    clean = tmp_path / "clean"
    assert run_cli("build", "--out", str(clean), *args, "--force").returncode == 0
    assert _published(out) == _published(clean)
    with pikepdf.open(booklet) as pdf:  # every entry shows the page its link goes to
        index = {page.objgen: i for i, page in enumerate(pdf.pages)}
        links = [(str(a.Contents), index[a.Dest[0].objgen] + 1) for a in pdf.pages[1].Annots]
    entries_ = [link for n, link in enumerate(links) if n == 0 or link != links[n - 1]]  # a link per line
    assert [page for _, page in entries_] == moved
    assert all(label.endswith(f", page {page}") for label, page in entries_)


def test_moved_source_lines_rerender_nothing(tmp_path):
    """Outputs are cached by what they show: a topic's source lines are not shown, so a blank line
    added near the top (every topic moves down a line) renders no PDF, page or document again."""
    source = tmp_path / SEED.name
    source.write_bytes(SEED.read_bytes())
    args = ("--quiet", "--source", str(source), "--config", str(SEED_CONFIG))
    out = tmp_path / "out"
    assert run_cli("build", "--out", str(out), *args).returncode == 0
    before = entries(out / ".carepress-cache")
    content = (out / "content.json").read_bytes()
    title, rest = SEED.read_bytes().split(b"\n", 1)
    source.write_bytes(title + b"\n\n" + rest)
    assert run_cli("build", "--out", str(out), *args).returncode == 0
    assert (out / "content.json").read_bytes() != content  # the model records the new lines
    assert entries(out / ".carepress-cache") == before


def test_packs_round_trip_and_a_damaged_pack_is_only_a_miss(tmp_path):
    from pipeline.cache import pack_bytes, read_pack

    parts = {"a" * 64: b"one", "b" * 64: b"", "0" * 64: bytes(range(256))}
    data = pack_bytes(parts)
    assert read_pack(data) == parts and pack_bytes(dict(reversed(parts.items()))) == data
    for damaged in (data[:-1], b"junk", data.replace(b"carepress-pack", b"carepress-pock"), b""):
        assert read_pack(damaged) == {}
    source = tmp_path / SEED.name
    source.write_bytes(SEED.read_bytes())
    args = ("--quiet", "--source", str(source), "--config", str(SEED_CONFIG))
    out = tmp_path / "out"
    assert run_cli("build", "--out", str(out), *args).returncode == 0
    for pack in (out / ".carepress-cache").iterdir():  # every pack damaged: the build renders again
        pack.write_bytes(pack.read_bytes()[:100])
    source.write_bytes(SEED.read_bytes().replace(b"jerky movements", b"jerky head movements"))
    assert run_cli("build", "--out", str(out), *args).returncode == 0
    clean = tmp_path / "clean"
    assert run_cli("build", "--out", str(clean), *args).returncode == 0
    assert _published(out) == _published(clean)


def test_library_versions_are_importlib_metadatas(tmp_path, monkeypatch):
    from importlib import metadata

    from pipeline.cache import LIBRARIES, library_versions

    assert library_versions(LIBRARIES) == {lib: metadata.version(lib) for lib in LIBRARIES}
    assert library_versions(["no-such-library"]) == {}
    (tmp_path / "Some_Lib-1.2.3.dist-info").mkdir()
    (tmp_path / "jinja2-0.0.1.dist-info").mkdir()  # later on sys.path than the installed one: not used
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path)])
    assert library_versions(["some.lib", "jinja2"]) == {"some.lib": "1.2.3", "jinja2": metadata.version("jinja2")}


def test_the_part_cache_is_sealed_once_its_packs_are_made(tmp_path):
    """The build makes the packs once every stage has rendered and writes them while the booklet
    is still being assembled: a part used or added after that would be lost, so it is an error."""
    cache = PartCache(tmp_path)
    key = PartCache.key("a part")
    cache.put(key, b"data")
    assert cache.get(key) == b"data"
    packs = cache.files()
    assert len(packs) == 1
    with pytest.raises(RuntimeError):
        cache.put(PartCache.key("late"), b"more")
    with pytest.raises(RuntimeError):
        cache.get(key)
