"""PDF handouts, large print and booklet: PDF/UA structure, text, fonts, safety, reproducibility."""

from __future__ import annotations

import re
import subprocess
from xml.etree import ElementTree

import pikepdf
import pytest
from conftest import CASES, load_case
from PIL import Image

from pipeline.formats import BuildContext
from pipeline.formats import settle
from pipeline.formats.pdf import render_with
from pipeline.formats.pdfrender import ASSET_BASE, Fetches, make_fetcher


def words(text: str) -> str:
    return " ".join(text.replace("\u2019", "'").split())


def pdftotext(path, page: int | None = None) -> str:
    """The PDF's text (one page's, 1-based, when ``page`` is given), whitespace normalised."""
    pages = ["-f", str(page), "-l", str(page)] if page else []
    out = subprocess.run(["pdftotext", "-enc", "UTF-8", *pages, str(path), "-"], capture_output=True, text=True,
                         check=True)
    return words(out.stdout)


def all_pdfs(folder):
    return sorted((folder / "pdf").rglob("*.pdf"))


@pytest.fixture(scope="module")
def pdf_dir(built):
    return built


@pytest.fixture(scope="module")
def video_pdfs():
    config, loaded = load_case(CASES / "video" / "source.txt", CASES / "video" / "collection.toml")
    ctx = BuildContext(config=config, source_date_epoch=1795564800)
    files, fetches = render_with(loaded.collection, ctx)
    return loaded.collection, files, fetches


def open_bytes(data: bytes) -> pikepdf.Pdf:
    import io

    return pikepdf.open(io.BytesIO(data))


def test_every_pdf_is_tagged_pdf_ua(pdf_dir, seed_collection):
    pdfs = all_pdfs(pdf_dir)
    assert len(pdfs) == 2 * len(seed_collection.topics) + 1
    for path in pdfs:
        with pikepdf.open(path) as pdf:
            root = pdf.Root
            assert "/StructTreeRoot" in root, path
            assert root.MarkInfo.Marked is True
            assert str(root.Lang) == "en"
            assert root.ViewerPreferences.DisplayDocTitle is True
            assert str(pdf.docinfo.Title)
            meta = pdf.open_metadata()
            assert meta.get("pdfuaid:part") == "1", path
            for page in pdf.pages:
                for _name, font in page.Resources.Font.items():
                    assert "/ToUnicode" in font
                    descriptor = font.DescendantFonts[0].FontDescriptor if "/DescendantFonts" in font else font.FontDescriptor
                    assert "/FontFile2" in descriptor or "/FontFile3" in descriptor, f"{path}: font not embedded"
                    assert "Atkinson" in str(font.BaseFont)


def test_handouts_one_page_with_full_text_in_order(pdf_dir, seed_collection):
    for topic in seed_collection.topics:
        path = pdf_dir / "pdf" / f"{topic.slug}.pdf"
        with pikepdf.open(path) as pdf:
            assert len(pdf.pages) == 1, f"{topic.slug} does not fit one page"
            assert str(pdf.docinfo.Title).startswith(topic.title)
            assert pdf.pages[0].MediaBox[2:] == [612, 792]  # US Letter by default
        text = pdftotext(path)
        order = [text.index(words(topic.title)), text.index(words(topic.text)), text.index("Questions for my care team")]
        assert order == sorted(order)
        assert "Rocky Mountain Movement Disorders Center" in text and "Dystonia Education" in text
        assert "Reviewed 25 November 2026" in text and "Presented by Dr. Kumar" in text
        if topic.series:
            assert f"Part {topic.series.part} of {topic.series.total}" in text


def body_sizes(path, body: str) -> set[float]:
    """Font sizes (pt) of the text fragments that belong to the topic's body (pypdf text state)."""
    import pypdf

    body_words = words(body)
    sizes: set[float] = set()

    def visit(text, cm, tm, _font, size):
        fragment = words(text)
        if len(fragment) >= 12 and fragment in body_words:
            sizes.add(round(size * abs(cm[3]) * abs(tm[3]), 2))

    for page in pypdf.PdfReader(path).pages:
        page.extract_text(visitor_text=visit)
    return sizes


def test_large_print_is_at_least_18pt(pdf_dir, seed_collection):
    for topic in seed_collection.topics:
        normal = body_sizes(pdf_dir / "pdf" / f"{topic.slug}.pdf", topic.text)
        assert normal and all(13 <= s <= 14 for s in normal), normal
        large_path = pdf_dir / "pdf" / "large-print" / f"{topic.slug}.pdf"
        large = body_sizes(large_path, topic.text)
        assert large and min(large) >= 18, large
        assert words(topic.text) in pdftotext(large_path)


def test_booklet_outline_toc_and_text(pdf_dir, seed_collection):
    path = pdf_dir / "pdf" / "dystonia-education-booklet.pdf"
    with pikepdf.open(path) as pdf:
        with pdf.open_outline() as outline:
            sections = list(outline.root)
            assert [s.title for s in sections] == [s.title for s in seed_collection.sections]
            topics = [t.title for s in sections for t in s.children]
        assert topics == [t.title for s in seed_collection.sections for t in seed_collection.section_topics(s)]
        pages = len(pdf.pages)
    text = pdftotext(path)
    assert f"Page 2 of {pages}" in text
    positions = [text.index(words(t.text)) for t in seed_collection.topics]
    assert positions == sorted(positions)  # reading order = canonical order (sections are contiguous here)
    contents = text[text.index("Contents"):positions[0]]
    assert re.search(r"What is Cervical Dystonia\?\s*3", contents), contents[:400]
    # every contents entry links to the page it names, and that page starts its topic
    with pikepdf.open(path) as pdf:
        index = {page.objgen: i for i, page in enumerate(pdf.pages)}
        links = {(str(a.Contents), index[a.Dest[0].objgen]) for a in pdf.pages[1].Annots}  # an area per box
        dests = pikepdf.NameTree(pdf.Root.Names.Dests)
        named = {str(k): index[v[0].objgen] for k, v in dests.items()}
    assert len(links) == len(seed_collection.sections) + len(seed_collection.topics)
    for topic in seed_collection.topics:
        label, page = next((label, page) for label, page in links if label.startswith(topic.title + ","))
        assert label == f"{topic.title}, page {page + 1}"
        assert named[f"topic-{topic.slug}"] == page
        assert words(topic.title) in pdftotext(path, page + 1)


def test_booklet_structure_tree_is_whole(pdf_dir):
    """The assembled booklet: one tree root; every page's marked content and every annotation
    is in the parent tree, pointing at elements of that page; parts' fonts stored once."""
    with pikepdf.open(pdf_dir / "pdf" / "dystonia-education-booklet.pdf") as pdf:
        roots = [o for o in pdf.objects if isinstance(o, pikepdf.Dictionary) and o.get("/Type") == "/StructTreeRoot"]
        assert len(roots) == 1
        tree = pdf.Root.StructTreeRoot
        flat = list(tree.ParentTree.Nums)
        nums = {int(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
        keys = set()
        for page in pdf.pages:
            elements = nums[int(page.StructParents)]
            keys.add(int(page.StructParents))
            assert all(e.Pg.objgen == page.objgen for e in elements)
            streams = page.Contents if isinstance(page.Contents, pikepdf.Array) else [page.Contents]
            content = b"".join(s.read_bytes() for s in streams)
            assert {int(m) for m in re.findall(rb"/MCID (\d+)", content)} == set(range(len(elements)))
            for annot in page.get("/Annots", []):
                keys.add(int(annot.StructParent))
                objr = [k for k in nums[int(annot.StructParent)].K
                        if isinstance(k, pikepdf.Dictionary) and k.get("/Type") == "/OBJR"]
                assert objr[0].Obj.objgen == annot.objgen
        assert int(tree.ParentTreeNextKey) == len(nums) == len(keys)

        def check(element):
            for kid in element.get("/K", []) if isinstance(element.get("/K"), pikepdf.Array) else []:
                if isinstance(kid, pikepdf.Dictionary) and kid.get("/Type") == "/StructElem":
                    assert kid.P.objgen == element.objgen
                    check(kid)

        check(tree.K[0])
        descriptors = [o for o in pdf.objects if isinstance(o, pikepdf.Dictionary) and o.get("/Type") == "/FontDescriptor"]
        files = [d.FontFile2.objgen for d in descriptors]
        assert len(set(files)) < len(files)  # the parts' whole fonts are stored once


def test_a4_option(tmp_path):
    from conftest import build_to

    out = build_to(tmp_path / "o", "--formats", "pdf", "--paper", "a4")
    with pikepdf.open(out / "pdf" / "what-is-blepharospasm.pdf") as pdf:
        assert [round(float(v)) for v in pdf.pages[0].MediaBox[2:]] == [595, 842]


def test_video_handout_has_qr_with_alt_and_printed_url(video_pdfs):
    collection, files, fetches = video_pdfs
    topic = collection.topic("what-is-essential-tremor")
    pdf = open_bytes(files[f"pdf/{topic.slug}.pdf"])
    figures = []

    def walk(node):
        if isinstance(node, pikepdf.Dictionary):
            if node.get("/S") == "/Figure":
                figures.append(str(node.get("/Alt", "")))
            kids = node.get("/K")
            if isinstance(kids, pikepdf.Array):
                for kid in kids:
                    walk(kid)
            elif isinstance(kids, pikepdf.Dictionary):
                walk(kids)

    walk(pdf.Root.StructTreeRoot)
    assert figures == [f"QR code: scan it to open the video for \u201c{topic.title}\u201d at {topic.media.video_url}"]
    # the assembled booklet keeps every topic's QR code figure and its alt text
    figures.clear()
    booklet = open_bytes(files[f"pdf/{collection.id}-booklet.pdf"])
    walk(booklet.Root.StructTreeRoot)
    with_video = [t for t in collection.topics if t.media.video_url]
    assert len(figures) == len(with_video) and all(f.startswith("QR code: scan it") for f in figures)
    assert fetches.refused == []
    assert all(u.startswith((ASSET_BASE, "data:")) for u in fetches.served)


def test_hostile_text_is_text_and_nothing_is_fetched(hostile_case, tmp_path):
    config, loaded = hostile_case
    files, fetches = render_with(loaded.collection, BuildContext(config=config, source_date_epoch=0))
    assert fetches.refused == []
    assert all(u.startswith((ASSET_BASE, "data:")) for u in fetches.served)
    topic = loaded.collection.topics[0]
    path = tmp_path / "h.pdf"
    path.write_bytes(files[f"pdf/{topic.slug}.pdf"])
    text = pdftotext(path)
    assert "<script>alert(1)</script>" in text
    assert 'src="file:///etc/passwd"' in text and "http://example.com/tracker.png" in text and "R&D" in text
    with pikepdf.open(path) as pdf:
        images = [o for o in pdf.objects if isinstance(o, pikepdf.Stream) and o.get("/Subtype") == "/Image"]
        assert images == [], "an image was embedded from hostile markup"
        for page in pdf.pages:  # the only form is ours: the ruled lines of the notes, with nothing inside
            for form in page.Resources.get("/XObject", {}).values():
                assert form.Subtype == "/Form" and not len(form.get("/Resources", {}).get("/XObject", {}))
                assert b" l\n" in form.read_bytes() and b"BT" not in form.read_bytes()
    booklet = tmp_path / "b.pdf"
    booklet.write_bytes(files[f"pdf/{loaded.collection.id}-booklet.pdf"])
    assert "<script>alert(1)</script>" in pdftotext(booklet)
    with pikepdf.open(booklet) as pdf:
        images = [o for o in pdf.objects if isinstance(o, pikepdf.Stream) and o.get("/Subtype") == "/Image"]
        assert images == [], "an image was embedded from hostile markup"
        body = pdf.pages[len(pdf.pages) - 1]  # past the contents (whose leader is a form): only our overlay
        assert [str(name) for name in body.Resources.get("/XObject", {}).keys()] == ["/CarepressOverlay"]


def test_without_a_publisher_the_pdfs_name_the_collection_once(hostile_case, tmp_path):
    """A collection with no publisher (the hostile case has no config): a handout's masthead,
    the booklet's cover and its running header name the collection once, with no line for the
    publisher (they showed the collection's title in its place, so twice), and no PDF gives an
    author."""
    config, loaded = hostile_case
    c = loaded.collection
    assert c.publisher is None
    files = settle(render_with(c, BuildContext(config=config, source_date_epoch=1795564800))[0])
    title = words(c.title)
    for path, pages in ((f"pdf/{c.topics[0].slug}.pdf", [1]), (f"pdf/large-print/{c.topics[0].slug}.pdf", [1]),
                        (f"pdf/{c.id}-booklet.pdf", [1, 2, 3])):
        target = tmp_path / path.replace("/", "-")
        target.write_bytes(files[path])
        for page in pages:
            assert pdftotext(target, page).count(title) == 1, (path, page)
    for path, data in files.items():
        with open_bytes(data) as pdf:
            assert "/Author" not in pdf.docinfo, path


def test_fetcher_refuses_everything_but_assets():
    record = Fetches()
    fetcher = make_fetcher(record)
    for url in ("file:///etc/passwd", "http://example.com/x.png", ASSET_BASE + "fonts/../../etc/passwd",
                ASSET_BASE + "../secret", "https://assets.carepress.invalid.evil.com/fonts/x.ttf"):
        with pytest.raises(ValueError):
            fetcher.fetch(url)
    assert len(record.refused) == 5
    ok = fetcher.fetch(ASSET_BASE + "fonts/AtkinsonHyperlegible-Regular.ttf")
    assert ok.read()[:4] == b"\x00\x01\x00\x00"


def test_two_renders_are_byte_identical(seed):
    config, loaded = seed
    one, _ = render_with(loaded.collection, BuildContext(config=config, source_date_epoch=1795564800))
    two, _ = render_with(loaded.collection, BuildContext(config=config, source_date_epoch=1795564800))
    assert one == two


@pytest.mark.parametrize("case", ["seed", "video", "hostile"])
def test_fast_parse_gives_the_pdfs_weasyprints_parser_gives(case, seed):
    """Our documents are parsed by expat (pdfrender._parsed), not WeasyPrint's HTML5 parser: same PDFs."""
    import weasyprint

    from pipeline.formats import pdf, pdfrender

    if case == "seed":
        config, loaded = seed
    else:
        config, loaded = load_case(CASES / case / "source.txt", *[p for p in [CASES / case / "collection.toml"]
                                                                  if p.is_file()])
    c = loaded.collection
    documents = [(pdf.handout_html(c, t), ("base",)) for t in c.topics] + [
        (pdf.handout_html(c, t), ("base", "large")) for t in c.topics[:2]] + [
        (job.html(), job.sheets) for job in pdf.booklet_parts(c)]
    for html, _sheets in documents:  # well-formed XML: the fast path is the one taken
        ElementTree.fromstring(html)
    renderer = pdfrender.Renderer("letter", 1795564800)
    original = pdfrender._parsed
    try:
        fast = [renderer.pdf(html, [getattr(renderer, s) for s in sheets], "x") for html, sheets in documents]
        pdfrender._parsed = lambda html, fetcher: weasyprint.HTML(string=html, base_url=ASSET_BASE, url_fetcher=fetcher)
        slow = [renderer.pdf(html, [getattr(renderer, s) for s in sheets], "x") for html, sheets in documents]
    finally:
        pdfrender._parsed = original
    assert fast == slow


def _long_case(tmp_path):
    """A collection whose second topic's handout takes more than one page, between two short ones."""
    long = " ".join(f"Sentence {n} of a long topic about care, treatment and daily life." for n in range(90))
    source = tmp_path / "long.txt"
    source.write_text(f"Long Topics\n\nWhat Comes First\n\nA short topic.\n\nA Very Long Topic\n\n{long}\n\n"
                      "What Comes Last\n\nAnother short topic.\n")
    return load_case(source)


def _every_kind(*cases) -> list:
    """Every PDF of each loaded case as a worker is sent it: handouts and their large print,
    booklet parts, the front and the overlay."""
    from pipeline.formats import pdf

    return [job.document() for _, loaded in cases for c in [loaded.collection]
            for job in pdf._handouts(c, pdf.shown_topics(c)) + pdf.booklet_parts(c) + pdf._front(c)]


def _ours_and_the_librarys(owner, name: str, install, render) -> tuple:
    """``render()`` with our ``owner.name`` (installed), then with the one it replaced
    (``.original``) in its place; ours is installed again after."""
    ours = render()
    assert getattr(getattr(owner, name), "carepress", False)
    try:
        setattr(owner, name, getattr(owner, name).original)
        plain = render()
    finally:
        install()
    assert getattr(getattr(owner, name), "carepress", False)
    return ours, plain


def _weasyprints(function):
    """WeasyPrint's own function under ours (each keeps the one it replaced as ``original``)."""
    while hasattr(function, "original"):
        function = function.original
    return function


def _on_both_papers(documents: list) -> list:
    """``documents`` rendered on Letter and on A4: for each, ({path: bytes}, {path: pages})."""
    from pipeline.formats import pdfrender

    return [pdfrender.render_part(documents, paper, 1795564800)[::2] for paper in ("letter", "a4")]


def test_margin_boxes_made_only_where_generated_give_the_pdfs_weasyprint_gives(seed, tmp_path):
    """pdfrender._margin_boxes_only_where_generated: WeasyPrint's make_margin_boxes without the
    sides and corners that generate nothing is installed (for the pinned WeasyPrint), and every
    kind of PDF is the same as with WeasyPrint's own: handouts alone and laid out together,
    large print, a handout of several pages (its running header from page 2), booklet parts, the
    front and the overlay, on both papers."""
    import weasyprint.layout
    from weasyprint.layout import page

    from pipeline.formats import pdf, pdfrender

    config, loaded = seed
    _, long_loaded = _long_case(tmp_path)
    documents = [job.document() for c in (loaded.collection, long_loaded.collection)
                 for job in pdf._handouts(c, pdf.shown_topics(c)) + pdf.booklet_parts(c) + pdf._front(c)]

    def rendered():
        return [pdfrender.render_part(documents, paper, 1795564800)[::2] for paper in ("letter", "a4")]

    patched = rendered()
    assert getattr(weasyprint.layout.make_margin_boxes, "carepress", False)
    try:
        weasyprint.layout.make_margin_boxes = page.make_margin_boxes
        plain = rendered()
    finally:
        pdfrender._margin_boxes_only_where_generated()
    assert getattr(weasyprint.layout.make_margin_boxes, "carepress", False)
    assert patched == plain
    pages = patched[0][1]
    assert pages["pdf/a-very-long-topic.pdf"] > 1 and pages[f"{pdf.PART_PREFIX}overlay"] == 3
    assert sum(1 for path in pages if path.startswith("pdf/")) == 2 * (len(loaded.collection.topics) + len(long_loaded.collection.topics))


def test_margin_boxes_left_to_weasyprint_without_its_source(tmp_path, monkeypatch):
    """No source to read for WeasyPrint's page layout, tagging, text drawing, Pango layouts,
    computed styles, line breaking or percentages, or pydyf's writing (an install that compiled them, say, which gives a binary file; or none at
    all): their own functions stay, no error."""
    import pydyf
    import weasyprint.layout
    from weasyprint import css
    from weasyprint.draw import text
    from weasyprint.layout import page, percent
    from weasyprint.pdf import tags
    from weasyprint.text import line_break

    from pipeline.formats import pdfrender

    binary = tmp_path / "page.cpython-311-x86_64-linux-gnu.so"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00\xf0\xff")
    pdfrender._text_runs_in_their_element()
    plain_tagging = tags._build_box_tree.original
    pdfrender._objects_serialised_once()
    plain_write = pydyf.PDF.write.original
    pdfrender._glyphs_read_at_once()
    plain_drawing = text.draw_first_line.original
    pdfrender._pango_setups_kept()
    plain_setup = line_break.Layout.setup.original
    pdfrender._initial_values_straight()
    plain_missing = css.ComputedStyle.__missing__.original
    plain_breaking = _weasyprints(line_break.split_first_line)
    pdfrender._percentages_resolved_inline()
    plain_percentages = percent.resolve_percentages.original
    try:
        for path in (binary, tmp_path / "missing.py"):
            monkeypatch.setattr(weasyprint.layout, "make_margin_boxes", page.make_margin_boxes)
            monkeypatch.setattr(page, "__file__", str(path))
            pdfrender._margin_boxes_only_where_generated()
            assert weasyprint.layout.make_margin_boxes is page.make_margin_boxes
            monkeypatch.setattr(tags, "_build_box_tree", plain_tagging)  # the tagging likewise
            monkeypatch.setattr(tags, "__file__", str(path))
            pdfrender._text_runs_in_their_element()
            assert tags._build_box_tree is plain_tagging
            monkeypatch.setattr(pydyf.PDF, "write", plain_write)  # and pydyf's writing
            monkeypatch.setattr(pydyf, "__file__", str(path))
            pdfrender._objects_serialised_once()
            assert pydyf.PDF.write is plain_write
            monkeypatch.setattr(text, "draw_first_line", plain_drawing)  # drawing text
            monkeypatch.setattr(text, "__file__", str(path))
            pdfrender._glyphs_read_at_once()
            assert text.draw_first_line is plain_drawing
            monkeypatch.setattr(line_break.Layout, "setup", plain_setup)  # Pango layouts
            monkeypatch.setattr(line_break, "__file__", str(path))
            pdfrender._pango_setups_kept()
            assert line_break.Layout.setup is plain_setup
            monkeypatch.setattr(css.ComputedStyle, "__missing__", plain_missing)  # computed styles
            monkeypatch.setattr(css, "__file__", str(path))
            pdfrender._initial_values_straight()
            assert css.ComputedStyle.__missing__ is plain_missing
            monkeypatch.setattr(line_break, "split_first_line", plain_breaking)  # line breaking
            pdfrender._retries_only_where_a_word_might_fit()
            assert line_break.split_first_line is plain_breaking
            monkeypatch.setattr(percent, "resolve_percentages", plain_percentages)  # percentages
            monkeypatch.setattr(percent, "__file__", str(path))
            pdfrender._percentages_resolved_inline()
            assert percent.resolve_percentages is plain_percentages
    finally:
        monkeypatch.undo()
        pdfrender._margin_boxes_only_where_generated()
        pdfrender._text_runs_in_their_element()
        pdfrender._objects_serialised_once()
        pdfrender._glyphs_read_at_once()
        pdfrender._pango_setups_kept()
        pdfrender._initial_values_straight()
    assert getattr(weasyprint.layout.make_margin_boxes, "carepress", False)
    assert getattr(tags._build_box_tree, "carepress", False)
    assert getattr(pydyf.PDF.write, "carepress", False)
    assert getattr(text.draw_first_line, "carepress", False)
    assert getattr(line_break.Layout.setup, "carepress", False)
    assert getattr(css.ComputedStyle.__missing__, "carepress", False)


def test_our_user_agent_stylesheet_gives_the_pdfs_weasyprints_gives(seed, video_case, hostile_case, tmp_path,
                                                                     monkeypatch):
    """pdfrender._user_agent: WeasyPrint's user-agent stylesheet less the pseudo-elements and page
    areas no document of ours uses is in use (for the pinned WeasyPrint), and every kind of PDF
    is byte for byte the one WeasyPrint's own gives: handouts alone and laid out together, large
    print, a handout of two pages, booklet parts, the front, the overlay, lists, the QR codes'
    figures and hostile text, on both papers. A process given a few documents (a rebuild's
    worker) does not make it. A stylesheet that reads otherwise is used as it is."""
    import weasyprint.html

    from pipeline.formats import pdfrender

    lists = tmp_path / "lists.txt"
    lists.write_text("Lists\n\nBefore the Visit\n\nWrite these down:\n\n- when it started\n- what helps\n\n"
                     "Then, in order:\n\n1. bring the list\n2. ask about the next step\n")
    documents = _every_kind(seed, video_case, hostile_case, _long_case(tmp_path), load_case(lists))
    assert len(documents) > pdfrender.OWN_UA_FROM
    ours = _on_both_papers(documents)  # so many documents: with ours
    assert pdfrender._OWN_UA == [list(pdfrender._user_agent())]
    assert pdfrender._user_agent() != (weasyprint.html.UA_STYLESHEET,)
    assert all(any(tag in doc.html for doc in documents) for tag in ("<ul><li>", "<ol><li>", "<img"))
    monkeypatch.setattr(pdfrender, "_OWN_UA", [[weasyprint.html.UA_STYLESHEET]])
    assert _on_both_papers(documents) == ours
    monkeypatch.setattr(pdfrender, "_OWN_UA", [])  # a rebuild's worker: WeasyPrint's
    few = documents[:pdfrender.OWN_UA_FROM]
    assert pdfrender.render_part(few, "letter", 1795564800)[0] == {doc.path: ours[0][0][doc.path] for doc in few}
    assert pdfrender._OWN_UA == []
    assert len(ours[0][0]) > 40 and ours[0][1]["pdf/a-very-long-topic.pdf"] > 1
    monkeypatch.undo()
    pdfrender._user_agent.cache_clear()
    monkeypatch.setattr(weasyprint.html, "UA", weasyprint.html.UA.replace("::marker {", "::marker{"))
    try:
        assert pdfrender._user_agent() == (weasyprint.html.UA_STYLESHEET,)
    finally:
        pdfrender._user_agent.cache_clear()
        monkeypatch.undo()
    assert pdfrender._user_agent() != (weasyprint.html.UA_STYLESHEET,)


def _tree(pdf: pikepdf.Pdf, unwrap_spans: bool) -> list:
    """The structure tree as nested lists ([type, alt text, kids...]; a marked-content id as its
    number, a link's annotation as "OBJR"), each page's MCIDs with the type of the element the
    parent tree gives; ``unwrap_spans``: a run of text's Span (WeasyPrint's, around one marked
    content) as that, in its place (a ``<span>``'s element is a Span around such a Span)."""
    def kids(element) -> list:
        k = element.get("/K")
        out: list = []
        for kid in (k if isinstance(k, pikepdf.Array) else [k] if k is not None else []):
            if isinstance(kid, pikepdf.Dictionary) and kid.get("/Type") == "/OBJR":
                out.append("OBJR")
            elif isinstance(kid, pikepdf.Dictionary):
                out.extend(kids(kid) if unwrap_spans and _run(kid) else [node(kid)])
            else:
                out.append(int(kid))
        return out

    def node(element) -> list:
        return [str(element.S), str(element.get("/Alt", "")), *kids(element)]

    flat = list(pdf.Root.StructTreeRoot.ParentTree.Nums)
    nums = {int(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
    owners = []
    for page in pdf.pages:
        owners.append([str(e.P.S if unwrap_spans and _run(e) else e.S) for e in nums[int(page.StructParents)]])
    return [node(pdf.Root.StructTreeRoot.K[0]), owners]


def _run(element) -> bool:
    """A run of text's Span element, as WeasyPrint's own tagging makes one."""
    k = element.get("/K")
    return element.S == "/Span" and isinstance(k, pikepdf.Array) and len(k) == 1 and isinstance(k[0], int)


def _spans(pdf: pikepdf.Pdf) -> list:
    return [o for o in pdf.objects if isinstance(o, pikepdf.Dictionary) and o.get("/S") == "/Span"]


def test_text_runs_tagged_in_their_element_give_the_pages_and_tree_weasyprint_gives(seed, video_case, tmp_path):
    """pdfrender._text_runs_in_their_element: WeasyPrint's tagging without a Span element around
    each run of text is installed (for the pinned WeasyPrint). Every kind of PDF (handouts, large
    print, a handout of two pages, booklet parts, the front with its links, the QR codes' figures)
    draws the same pages, and its structure tree is WeasyPrint's own with each Span replaced by
    its marked content, every page's marked content owned by the element it is now in."""
    from weasyprint.pdf import tags

    from pipeline.formats import pdf, pdfrender

    documents = [job.document() for _, loaded in (seed, video_case, _long_case(tmp_path))
                 for c in [loaded.collection]
                 for job in pdf._handouts(c, pdf.shown_topics(c)) + pdf.booklet_parts(c) + pdf._front(c)
                 if job.kind != "overlay"]  # the overlay is drawn as an artifact: not tagged

    def rendered():
        return pdfrender.render_part(documents, "letter", 1795564800)[0]

    patched, plain = _ours_and_the_librarys(tags, "_build_box_tree", pdfrender._text_runs_in_their_element, rendered)
    assert patched.keys() == plain.keys() and len(patched) > 20
    runs = 0
    for path in patched:
        with open_bytes(patched[path]) as new, open_bytes(plain[path]) as old:
            assert [p.Contents.read_bytes() for p in new.pages] == [p.Contents.read_bytes() for p in old.pages], path
            assert _tree(new, unwrap_spans=False) == _tree(old, unwrap_spans=True), path
            assert len(_spans(new)) == len([e for e in _spans(old) if not _run(e)])  # a <span>'s element stays
            runs += len(_spans(old)) - len(_spans(new))
            assert len(patched[path]) < len(plain[path])
    assert runs > 500


def test_objects_serialised_once_give_the_files_pydyf_gives(seed, video_case, hostile_case, tmp_path, monkeypatch):
    """pdfrender._objects_serialised_once: pydyf's PDF.write making each object's data once is
    installed (for the pinned pydyf), and every kind of PDF (handouts alone and laid out
    together, large print, a handout of two pages, booklet parts, the front, the untagged
    overlay, the QR codes' figures, hostile text) is byte for byte the file pydyf's own gives,
    on both papers. pydyf's made every stream's data (deflating it) twice; ours, once."""
    import pydyf

    from pipeline.formats import pdfrender

    documents = _every_kind(seed, video_case, hostile_case, _long_case(tmp_path))
    made: list[dict[int, int]] = []  # for each file written, how often each stream's data was made
    data = pydyf.Stream.data

    def counted(stream):
        made[-1][id(stream)] = made[-1].get(id(stream), 0) + 1
        return data.fget(stream)

    def rendered():
        made.clear()
        for paper in ("letter", "a4"):
            pdfrender._renderer(paper, 1795564800)  # made now: a new one installs ours
        write = pydyf.PDF.write

        def writing(*args, **kwargs):
            made.append({})
            return write(*args, **kwargs)

        with monkeypatch.context() as m:
            m.setattr(pydyf.Stream, "data", property(counted))
            m.setattr(pydyf.PDF, "write", writing)
            files = _on_both_papers(documents)
        return files, max(n for counts in made for n in counts.values()), sum(map(len, made))

    ours, most, streams = rendered()
    assert getattr(pydyf.PDF.write, "carepress", False) and most == 1
    try:
        pydyf.PDF.write = pydyf.PDF.write.original
        plain, most, plain_streams = rendered()
    finally:
        pdfrender._objects_serialised_once()
    assert getattr(pydyf.PDF.write, "carepress", False)
    assert most == 2 and plain_streams == streams > 10 * len(documents)
    assert ours == plain
    assert len(ours[0][0]) > 40 and ours[0][1]["pdf/a-very-long-topic.pdf"] > 1 and any(
        "<img" in doc.html for doc in documents)


def test_page_styles_shared_give_the_pdfs_weasyprint_gives(seed, video_case, hostile_case, tmp_path):
    """pdfrender._page_styles_shared: a page given the computed styles of an earlier page the
    same @page rules match gives every kind of PDF byte for byte as WeasyPrint's function does,
    on both papers (handouts laid out together, a handout of several pages, parts, the front of
    several pages, the overlay); and a document whose pages match different rules (first, left,
    right, a named page) keeps each page's own styles."""
    import weasyprint
    from weasyprint.layout import page

    from pipeline.formats import pdfrender

    documents = _every_kind(seed, video_case, hostile_case, _long_case(tmp_path))
    renderer = pdfrender._renderer("letter", 1795564800)
    paragraphs = "".join(f"<p>Paragraph {n} of a document of several pages, some of them named.</p>" for n in range(90))
    pages = weasyprint.CSS(string="""
        @page { @bottom-right { content: "Page " counter(page) " of " counter(pages); } }
        @page :first { margin-top: 60mm; @top-center { content: "First"; } }
        @page :left { @bottom-left { content: "Left " counter(page); } }
        @page :right { margin-right: 30mm; }
        @page wide { size: landscape; @top-left { content: "Wide"; } }
        section { page: wide; }""")
    varied = (f'<!DOCTYPE html><html lang="en"><head><title>Varied</title></head><body>{paragraphs}'
              f'<section>{paragraphs}</section>{paragraphs}</body></html>')

    def rendered():
        return _on_both_papers(documents), pdfrender._parsed(varied, renderer.fetcher).write_pdf(
            stylesheets=[renderer.base, pages], font_config=renderer.fonts)

    ours, plain = _ours_and_the_librarys(page, "set_page_type_computed_styles", pdfrender._page_styles_shared, rendered)
    assert ours == plain
    with open_bytes(ours[1]) as pdf_file:
        sizes = {tuple(float(v) for v in p.MediaBox) for p in pdf_file.pages}
        assert len(pdf_file.pages) > 6 and len(sizes) == 2  # portrait and the named landscape pages


def test_svg_drawings_kept_give_the_pdfs_weasyprint_gives(seed, video_case, hostile_case, tmp_path):
    """pdfrender._svg_drawings_kept: an SVG of shapes drawn again into a new group gives what it
    drew before, and every kind of PDF (the notes' ruled lines on handouts and large print, QR
    codes on the video case's) is byte for byte what WeasyPrint's method gives, on both papers;
    an SVG with text, a gradient, a clip path or a marker is never kept."""
    from weasyprint import images

    from pipeline.formats import pdfrender

    documents = _every_kind(seed, video_case, hostile_case, _long_case(tmp_path))
    pdfrender._svg_drawings_kept()
    drawing = images.SVGImage.draw
    ours, plain = _ours_and_the_librarys(images.SVGImage, "draw", pdfrender._svg_drawings_kept,
                                         lambda: _on_both_papers(documents))
    assert ours == plain and drawing.kept  # the ruled lines, for each paper and size

    def svg(body: str):
        tree = ElementTree.fromstring(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10">{body}</svg>')
        return images.SVGImage(tree, "", None, None)

    assert pdfrender._plain_svg(svg('<path d="M0 1H10" stroke="#333"/><g><rect width="2" height="2"/></g>'))
    for body in ('<text x="1" y="5">A</text>', '<defs><linearGradient id="g"/></defs><rect fill="url(#g)"/>',
                 '<path d="M0 0H9" clip-path="url(#c)"/>', '<path d="M0 0H9" marker-end="url(#m)"/>',
                 '<image href="x.png" width="2" height="2"/>'):
        assert not pdfrender._plain_svg(svg(body)), body


def test_percentages_resolved_inline_give_the_pdfs_weasyprint_gives(seed, video_case, hostile_case, tmp_path):
    """pdfrender._percentages_resolved_inline: resolve_percentages doing each property's work in
    one loop is what every layout module (and our make_margin_boxes) calls, and every kind of
    PDF is byte for byte what WeasyPrint's function gives, on both papers."""
    import importlib

    import weasyprint.layout

    from pipeline.formats import pdfrender

    documents = _every_kind(seed, video_case, hostile_case, _long_case(tmp_path))
    ours = _on_both_papers(documents)
    callers = [importlib.import_module(f"weasyprint.layout.{name}") for name in pdfrender._PERCENT_CALLERS]
    namespaces = [vars(module) for module in callers] + [weasyprint.layout.make_margin_boxes.__globals__]
    function = callers[0].resolve_percentages
    assert getattr(function, "carepress", False) and all(n["resolve_percentages"] is function for n in namespaces)
    try:
        for namespace in namespaces:
            namespace["resolve_percentages"] = function.original
        plain = _on_both_papers(documents)
    finally:
        for namespace in namespaces:
            namespace["resolve_percentages"] = function
    assert ours == plain


def test_subsets_and_deflated_streams_kept_give_the_pdfs_weasyprint_gives(seed, video_case, hostile_case,
                                                                          tmp_path):
    """pdfrender._subsets_kept and _Remembered: a font subset made before for the same font and
    glyphs, and a stream deflated before, given again, give every kind of PDF byte for byte as
    WeasyPrint's subsetting and zlib's object do, on both papers (a topic's handout and large
    print share their subsets); a stream given in pieces deflates as zlib's object does."""
    import random
    import zlib

    import pydyf
    from weasyprint.pdf import fonts

    from pipeline.formats import pdfrender

    documents = _every_kind(seed, video_case, hostile_case, _long_case(tmp_path))
    pdfrender._SUBSETS.clear()
    ours = _on_both_papers(documents)
    assert getattr(fonts.Font.subset, "carepress", False) and pdfrender._SUBSETS and pdfrender._DEFLATED

    class Plain:  # pydyf's zlib with only the level carepress sets
        def __getattr__(self, name):
            return getattr(zlib, name)

        @staticmethod
        def compressobj(level=-1, *args, **kwargs):
            return zlib.compressobj(min(level, 6), *args, **kwargs)

    remembered = pydyf.zlib
    try:
        fonts.Font.subset, pydyf.zlib = fonts.Font.subset.original, Plain()
        plain = _on_both_papers(documents)
    finally:
        pydyf.zlib = remembered
        pdfrender._subsets_kept()
    assert getattr(fonts.Font.subset, "carepress", False)
    assert ours == plain
    rng = random.Random(7)
    for size in (0, 100, 5000, 70000, 70000):
        data = bytes(rng.choice(b"abc def\n") for _ in range(size))
        deflate, reference = remembered.compressobj(level=9), zlib.compressobj(6)
        pieces = [data[:size // 3], data[size // 3:]]
        assert b"".join(deflate.compress(piece) for piece in pieces) + deflate.flush() == (
            b"".join(reference.compress(piece) for piece in pieces) + reference.flush())


def test_dictionaries_written_directly_give_the_files_pydyf_gives(seed, video_case, hostile_case, tmp_path):
    """pdfrender._dictionaries_written_directly: pydyf's Dictionary.data and Array.data writing
    bytes, strings and integers themselves give every kind of PDF byte for byte as pydyf's own
    do, on both papers; and a float, a nested object, a subclass of str or int and a boolean
    are written as pydyf writes them."""
    import pydyf

    from pipeline.formats import pdfrender

    documents = _every_kind(seed, video_case, hostile_case, _long_case(tmp_path))
    ours = _on_both_papers(documents)
    assert getattr(pydyf.Dictionary.data.fget, "carepress", False)

    class Name(str):
        def __str__(self):
            return "Other"

    odd = pydyf.Dictionary({"A": 1.5, "B": 2.0, "C": pydyf.Array([1, 0.25, b"/X", "y", True, Name("n")]),
                            "D": pydyf.String("t(e)xt"), Name("k"): 7, "E": False, "F": -3})
    written = odd.data, odd["C"].data
    try:
        pydyf.Dictionary.data = pydyf.Dictionary.data.fget.original
        pydyf.Array.data = pydyf.Array.data.fget.original
        plain = _on_both_papers(documents)
        assert written == (odd.data, odd["C"].data)
    finally:
        pdfrender._dictionaries_written_directly()
    assert getattr(pydyf.Array.data.fget, "carepress", False)
    assert ours == plain


@pytest.mark.parametrize("case", ["seed", "video", "hostile", "long"])
def test_handouts_laid_out_together_are_the_pdfs_each_gives_alone(case, seed, tmp_path):
    """Workers lay out runs of handouts as one document (Renderer.handouts) and write each
    from its page, with its own metadata (pdfrender._metadata): the same bytes as rendering each
    alone, a handout of two pages included."""
    from pipeline.formats import pdf, pdfrender

    if case == "seed":
        config, loaded = seed
    elif case == "long":
        config, loaded = _long_case(tmp_path)
    else:
        config, loaded = load_case(CASES / case / "source.txt", *[p for p in [CASES / case / "collection.toml"]
                                                                  if p.is_file()])
    c = loaded.collection
    renderer = pdfrender.Renderer("letter", 1795564800)
    for folder, sheets in (("pdf", ("base",)), ("pdf/large-print", ("base", "large"))):
        documents = [pdfrender.Document(f"{folder}/{t.slug}.pdf", pdf.handout_html(c, t), sheets) for t in c.topics]
        alone = [renderer.pdf(d.html, [getattr(renderer, s) for s in sheets], d.path) for d in documents]
        assert renderer.handouts(documents) == alone
        if case == "long":  # the fallback was taken: the long topic's footer says "Page 1 of 2", "Page 2 of 2"
            assert alone[0][1] == alone[2][1] == 1 and alone[1][1] > 1


def test_metadata_read_from_the_tree_is_weasyprints(seed, video_case, hostile_case):
    """pdfrender._metadata (a handout's metadata, found by ElementTree's iter) gives what
    WeasyPrint's get_html_metadata gives through cssselect2, for every kind of PDF: title,
    description, keywords, author, language; and a document expat refuses goes through
    WeasyPrint's parser."""
    from weasyprint.html import get_html_metadata

    from pipeline.formats import pdfrender

    fetcher = pdfrender._renderer("letter", 1795564800).fetcher
    documents = _every_kind(seed, video_case, hostile_case)
    found = [pdfrender._metadata(doc.html, fetcher) for doc in documents]
    assert found == [get_html_metadata(pdfrender._parsed(doc.html, fetcher)) for doc in documents]
    assert any(m["authors"] for m in found) and any(m["keywords"] for m in found) and all(m["lang"] for m in found)
    broken = "<!DOCTYPE html><html lang=en><head><title>A &amp B</title><meta name=description content=x></head>"
    assert pdfrender._metadata(broken, fetcher) == get_html_metadata(pdfrender._parsed(broken, fetcher))
    assert pdfrender._metadata(broken, fetcher)["title"] == "A & B"
    # only a head is parsed when the body has no element metadata is read from; one that has is
    # parsed whole, as WeasyPrint reads it
    late = documents[0].html.replace("</body>", '<meta name="keywords" content="late, keywords" /></body>')
    assert pdfrender._metadata(late, fetcher) == get_html_metadata(pdfrender._parsed(late, fetcher))
    assert "late" in pdfrender._metadata(late, fetcher)["keywords"]


def test_metadata_and_stylesheets_found_from_the_tree_give_the_pdfs_weasyprint_gives(seed, video_case,
                                                                                  hostile_case):
    """pdfrender._read_from_the_tree: render's metadata read through _Tree and no stylesheet
    looked for in a document without a style or link element give every kind of PDF byte for
    byte as WeasyPrint's functions do, on both papers; a document with a style element in it
    still has it applied."""
    from weasyprint import css, document

    from pipeline.formats import pdfrender

    documents = _every_kind(seed, video_case, hostile_case)
    ours = _on_both_papers(documents)
    assert getattr(document.get_html_metadata, "carepress", False)
    assert getattr(css.find_stylesheets, "carepress", False)
    try:
        document.get_html_metadata = document.get_html_metadata.original
        css.find_stylesheets = css.find_stylesheets.original
        plain = _on_both_papers(documents)
    finally:
        pdfrender._read_from_the_tree()
    assert getattr(css.find_stylesheets, "carepress", False)
    assert ours == plain
    renderer = pdfrender._renderer("letter", 1795564800)
    styled = ('<!DOCTYPE html><html lang="en"><head><title>Styled</title><style>p { font-size: 40pt; }</style>'
              '</head><body><p>Big</p></body></html>')
    assert not pdfrender._parsed(styled, renderer.fetcher).wrapper_element.carepress_no_sheets
    box = pdfrender._parsed(styled, renderer.fetcher).render(stylesheets=[renderer.base], font_config=renderer.fonts)
    html = box.pages[0]._page_box.children[0]
    assert html.children[0].children[0].style["font_size"] == pytest.approx(40 * 4 / 3)  # the style element's rule


def test_first_pages_render_not_blank(pdf_dir, tmp_path):
    for name in ("what-is-blepharospasm.pdf", "large-print/what-is-blepharospasm.pdf", "dystonia-education-booklet.pdf"):
        prefix = tmp_path / name.replace("/", "-")
        subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", str(pdf_dir / "pdf" / name),
                        str(prefix)], check=True)
        [png] = list(tmp_path.glob(prefix.name + "*.png"))
        image = Image.open(png).convert("L")
        dark = sum(image.point(lambda v: 255 if v < 128 else 0).histogram()[255:])
        assert dark > 0.01 * image.width * image.height, f"{name}: first page looks blank"


def test_parallel_rendering_gives_the_same_bytes(tmp_path):
    source = tmp_path / "many.txt"
    topics = "\n\n".join(f"Topic Number {n}\n\nThis is the text of topic {n}, about care and daily life."
                         for n in range(1, 11))
    source.write_text(f"Many Topics\n\nA collection with ten topics.\n\n{topics}\n")
    config, loaded = load_case(source)
    serial, _ = render_with(loaded.collection, BuildContext(config=config, source_date_epoch=0, options={"jobs": 1}))
    parallel, fetches = render_with(loaded.collection, BuildContext(config=config, source_date_epoch=0,
                                                                    options={"jobs": 2}))
    parallel = settle(parallel)  # the booklet was assembled in a child process
    assert list(serial) == list(parallel) and serial == parallel
    assert len(serial) == 21 and fetches.refused == []


def test_handouts_are_handed_over_as_each_chunk_comes_back(tmp_path):
    """``ctx.early`` gets every handout once, as its worker's chunk comes back (so the build
    writes them while the others render), with the bytes the stage returns; never a booklet
    part, nor the booklet, which the stage returns (pending) as before."""
    source = tmp_path / "many.txt"
    topics = "\n\n".join(f"Topic Number {n}\n\nThis is the text of topic {n}, about care and daily life."
                         for n in range(1, 31))
    source.write_text(f"Many Topics\n\nA collection with thirty topics.\n\n{topics}\n")
    config, loaded = load_case(source)
    for jobs in (1, 2):
        handed: list[dict[str, bytes]] = []
        ctx = BuildContext(config=config, source_date_epoch=0, options={"jobs": jobs}, early=handed.append)
        files = settle(render_with(loaded.collection, ctx)[0])
        names = [name for chunk in handed for name in chunk]
        assert sorted(names) == sorted(name for name in files if not name.endswith("-booklet.pdf"))
        assert len(names) == 60 and all(files[name] == data for chunk in handed for name, data in chunk.items())
        if jobs == 2:  # chunk by chunk, not all at once
            assert len(handed) > 1


def test_page_numbers_are_written_in_right_aligned():
    """The assembly writes page numbers over tabular-digit placeholders: each run of digits
    becomes the next number, and its text run moves left by what it grew (kerning kept)."""
    from pipeline.formats.pdfmerge import _Face, _Numbers

    face = _Face(digits=list(range(100, 110)), widths={**{g: 500.0 for g in range(100, 110)}, 1: 300.0})
    runs = (b"BT\n1 0 0 -1 100 50 Tm\n/F1 20 Tf\n[<0001>10<0064>0] TJ\nET\n"  # "P0" (P kerned by 10)
            b"BT\n1 0 0 -1 7 9 Tm\n/F1 20 Tf\n[<00010001>0] TJ\nET\n"  # no digit
            b"BT\n1 0 0 -1 7 9 Tm\n/F2 20 Tf\n[<0064>0] TJ\nET\n"  # another font's glyph 100
            b"BT\n1 0 0 -1 300.5 9 Tm\n/F1 10 Tf\n[<0065>0<0001>0<0064>5] TJ\nET\n")  # "1P0": two numbers
    numbers = _Numbers(runs, {b"F1": face})
    assert numbers.fill(iter([123, 7, 45])) == (
        b"BT\n1 0 0 -1 80 50 Tm\n/F1 20 Tf\n[<0001>10<0065>0<0066>0<0067>0] TJ\nET\n"  # 2 digits more: 20 left
        b"BT\n1 0 0 -1 7 9 Tm\n/F1 20 Tf\n[<00010001>0] TJ\nET\n"
        b"BT\n1 0 0 -1 7 9 Tm\n/F2 20 Tf\n[<0064>0] TJ\nET\n"
        b"BT\n1 0 0 -1 295.5 9 Tm\n/F1 10 Tf\n[<006b>0<0001>0<0068>0<0069>5] TJ\nET\n")
    with pytest.raises(ValueError, match="more page numbers"):
        numbers.fill(iter([1, 2]))


def test_contents_leaders_are_drawn_in_at_assembly(pdf_dir, seed_collection):
    """Each contents entry's content box is filled with a marker colour (booklet.css); the
    assembly draws a dotted leader at its foot instead, as an artifact, on the entry's baseline
    and short of its page number, and no marker is left."""
    from pipeline.formats.pdfmerge import _LEADER_MARK, _content, _leader

    mark = b"0.996078 0.996078 0.992157 rg\n10 20.5 300 27 re\nW\nn\n10 20.5 300 27 re\nf"
    assert _LEADER_MARK.sub(_leader, mark) == (b"0.333333 G\n1.306667 w\n[1.866667 3.733333] 0 d\n"
                                               b"11.333333 39.006667 m\n310 39.006667 l\nS")
    leader = re.compile(rb"0\.333333 G\n[\d.]+ w\n\[[\d.]+ [\d.]+\] 0 d\n([\d.]+) ([\d.]+) m\n([\d.]+) ([\d.]+) l\nS")
    run = re.compile(rb"1 0 0 -1 ([\d.]+) ([\d.]+) Tm\n/\S+ [\d.]+ Tf\n\[<[0-9a-f]+>[^\]]*\] TJ")
    found = 0
    with pikepdf.open(pdf_dir / "pdf" / "dystonia-education-booklet.pdf") as pdf:
        for page in pdf.pages:
            content = _content(page.obj)
            assert b"0.996078 0.996078 0.992157 rg" not in content
            runs = [(float(x), float(y)) for x, y in run.findall(content)]
            for match in leader.finditer(content):
                x1, y1, x2, y2 = (float(v) for v in match.groups())
                assert y1 == y2 and x1 < x2
                assert content.rfind(b"/Artifact\nBMC", 0, match.start()) > content.rfind(b"EMC", 0, match.start())
                # the entry's page number: on (about) the leader's line, to its right
                assert any(x > x2 and abs(y - y1) < 4 for x, y in runs), (x2, y1)
                found += 1
    assert found == len(seed_collection.sections) + len(seed_collection.topics)


def test_booklet_parts_end_where_their_topics_say():
    """A part ends after a topic chosen by its slug's hash (within PART_MIN..PART_MAX topics), so a
    topic added or removed changes the part it is in, now and then a few more (where a run of
    parts cut at PART_MAX shifts), not every part after it: counting 24 topics at a time from
    the section's start changed 13.6 parts on average here, and up to 26."""
    from pipeline.formats.pdf import PART_MAX, PART_MIN, part_runs

    slugs = [f"topic-{n}" for n in range(600)]
    runs = part_runs(slugs)
    assert [s for run in runs for s in run] == slugs
    assert all(PART_MIN <= len(run) <= PART_MAX for run in runs[:-1]) and PART_MIN < len(slugs) / len(runs) < PART_MAX
    before = set(map(tuple, runs))
    changes = [len(set(map(tuple, part_runs(changed))) - before)
               for i in range(0, 600, 7) for changed in (slugs[:i] + ["a-new-topic"] + slugs[i:], slugs[:i] + slugs[i + 1:])]
    assert max(changes) <= 8 and sum(changes) / len(changes) < 1.6, changes
    assert part_runs([]) == [[]] and part_runs(["one"]) == [["one"]]


FAST_IMPORT_PROBE = r"""
import hashlib, json, sys
if sys.argv[1] == "plain":
    import weasyprint  # cffi parses the declarations, fontTools' subsetter is imported: as WeasyPrint does
from conftest import SEED, SEED_CONFIG, load_case
from pipeline.formats import pdf, pdfrender

cache = pdfrender._PrecompiledFFI.CACHE
if sys.argv[1] == "unknown":  # a WeasyPrint whose declarations do not load this way: imported as it is
    def refuse(cls, real_ffi, source):
        raise RuntimeError("not as expected")
    pdfrender._PrecompiledFFI.compiled = classmethod(refuse)
if sys.argv[1] == "fresh" and cache.is_dir():  # the declarations' module written anew, then read
    for old in cache.iterdir():
        old.unlink()
config, loaded = load_case(SEED, SEED_CONFIG)
c = loaded.collection
jobs = [*pdf._handouts(c, pdf.shown_topics(c)), *pdf.booklet_parts(c), *pdf._front(c)]
documents = [pdfrender.Document(j.path, j.html if isinstance(j.html, str) else j.html(), j.sheets, j.kind) for j in jobs]
files, _fetches, _pages = pdfrender.render_part(documents, "letter", 1795564800)
import weasyprint.pdf.fonts, weasyprint.text.ffi
print(json.dumps({
    "pdfs": {path: hashlib.sha256(data).hexdigest() for path, data in files.items()},
    "ffi": type(weasyprint.text.ffi.ffi).__module__,
    "subsetter imported": "fontTools.subset" in sys.modules,
    "cached": sorted(p.name for p in cache.glob("*.py")) if cache.is_dir() else [],
}))
from fontTools import subset  # a later import gets the real module, and the stand-in leads to it
assert subset.Subsetter is weasyprint.pdf.fonts.subset.Subsetter and "Lazy" not in repr(subset)
"""


def _probe(mode: str) -> dict:
    import json
    import sys

    from conftest import ROOT

    result = subprocess.run([sys.executable, "-c", FAST_IMPORT_PROBE, mode], capture_output=True, text=True,
                            cwd=ROOT, env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "tests")},
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_fast_weasyprint_import_gives_the_pdfs_a_plain_import_gives():
    """load_weasyprint: cffi's declarations precompiled (written once into the package's
    __pycache__, then read) and fontTools' subsetter left unimported: every PDF of the seed
    (handouts, large print, booklet parts, front, overlay) the same as with a plain import."""
    plain, fresh, cached = _probe("plain"), _probe("fresh"), _probe("cached")
    assert plain["ffi"] == "cffi.api" and plain["subsetter imported"]
    for fast in (fresh, cached):
        assert fast["ffi"] == "_cffi_backend" and not fast["subsetter imported"]
        assert len(fast["cached"]) == 1 and fast["cached"][0].startswith("_weasyprint_ffi_")
        assert fast["pdfs"] == plain["pdfs"]
    assert len(plain["pdfs"]) > 10
    unknown = _probe("unknown")  # the fallback: WeasyPrint imported again, as it is
    assert unknown["ffi"] == "cffi.api" and unknown["pdfs"] == plain["pdfs"]


def test_pdfs_of_topics_without_a_video_import_no_qr_code_library():
    """segno (and the urllib it imports: 30 ms) is imported only to draw a QR code: the seed's
    topics have no video URL, so neither its handouts' nor its booklet parts' HTML needs it."""
    from conftest import SEED, SEED_CONFIG, modules_imported

    probe = ("from pathlib import Path\nfrom pipeline.build import Inputs, load_inputs\n"
             "from pipeline.formats import pdf\n"
             f"config, loaded = load_inputs(Inputs([Path({str(SEED)!r})], Path({str(SEED_CONFIG)!r}), None))\n"
             "c = loaded.collection\n"
             "jobs = pdf.booklet_parts(c) + pdf._handouts(c, pdf.shown_topics(c))\n"
             "assert all('<html' in job.html() for job in jobs)")
    assert modules_imported(probe, ("segno",)) == []


def test_qr_codes_are_drawn_once_and_kept_in_the_part_cache(tmp_path, monkeypatch):
    """A rebuild that renders a booklet part again draws none of its topics' QR codes (8 to 12 ms
    each): they come from the part cache, where every video URL's code is kept while its topic
    is there, even through builds that render nothing with it; the PDFs are a clean build's."""
    from pipeline import build as build_module
    from pipeline.build import Inputs
    from pipeline.cache import PARTS_DIR, PartCache, entries
    from pipeline.formats import pdf

    case = CASES / "video"
    source, config = tmp_path / "source.txt", tmp_path / "collection.toml"
    source.write_bytes((case / "source.txt").read_bytes())
    config.write_bytes((case / "collection.toml").read_bytes())
    urls = ["https://videos.example.org/tremor/what-is-essential-tremor",
            "https://videos.example.org/tremor/living-part-1"]
    out = tmp_path / "out"
    assert build_module.build(Inputs([source], config, None), ["content", "pdf"], out).status == 0
    codes = {PartCache.key("qr", url) for url in urls}
    assert codes <= set(entries(out / PARTS_DIR))
    drawn: list[str] = []
    draw = pdf.qr_data_url
    monkeypatch.setattr(pdf, "qr_data_url", lambda url: drawn.append(url) or draw(url))
    # part 2 has no video, but its booklet part holds part 1, which has one; the other section's
    # part (and its code) is not rendered again
    source.write_text(source.read_text().replace("physical therapy", "physiotherapy"))
    assert build_module.build(Inputs([source], config, None), ["content", "pdf"], out).status == 0
    assert drawn == [] and codes <= set(entries(out / PARTS_DIR))
    clean = tmp_path / "clean"
    assert build_module.build(Inputs([source], config, None), ["content", "pdf"], clean, use_cache=False).status == 0
    assert set(drawn) == set(urls)  # no cache: drawn as they are needed
    for name in ("pdf/tremor-talks-booklet.pdf", "pdf/living-with-tremor-part-1.pdf"):
        assert (out / name).read_bytes() == (clean / name).read_bytes()


def test_glyphs_read_at_once_pango_setups_struts_initial_values_lines_and_layouts_give_weasyprints_pdfs(
        seed, video_case, hostile_case, tmp_path):
    """pdfrender._glyphs_read_at_once, _pango_setups_kept, _struts_kept, _initial_values_straight,
    _retries_only_where_a_word_might_fit, _lines_kept and _layouts_kept_to_draw: WeasyPrint's
    draw_first_line reading a run's glyphs as
    one list of integers, its Layout.setup keeping each Pango context and font description, its
    strut kept with its style, its ComputedStyle giving a plain initial value at once, a short
    line of text it has broken before given again (here across documents, papers and kinds), a
    broken line not laid out again with the next word when that word cannot fit, a shorter start
    of a paragraph laid out to find its first line (then WeasyPrint's, then the whole paragraph,
    when it fits on one line: a paragraph of narrow letters), and a line's Pango layout kept from
    breaking it to drawing it, are installed
    (for the pinned WeasyPrint), and every kind of PDF is byte
    for byte the one WeasyPrint's own give, on both papers: handouts alone and laid out
    together, large print, a handout of two pages, booklet parts, the front, the overlay, the QR
    codes' figures, hostile text, and text our fonts do not have (Arabic and Hebrew, right to
    left, in a fallback font; Chinese and an emoji, drawn as missing glyphs), which goes through
    WeasyPrint's own loop."""
    from weasyprint import css
    from weasyprint.css import computed_values, units
    from weasyprint.draw import text
    from weasyprint.layout import inline, preferred
    from weasyprint.text import line_break

    from pipeline.formats import pdfrender

    struts = (line_break, inline, units, computed_values)
    breaks = (line_break, inline, preferred)
    scripts = tmp_path / "scripts.txt"
    scripts.write_text("Other Scripts\n\nSaying Hello\n\nHello in Arabic is مرحبا بكم and in Hebrew שלום עליכם; "
                       "in Chinese 你好. A smile 🙂 and a café, naïve, Ærø.\n\n"
                       # narrow letters: the start of the text laid out first fits on one line
                       + " ".join(["il lil i.l, fill il; ill it"] * 30) + "\n", encoding="utf-8")
    documents = _every_kind(seed, video_case, hostile_case, _long_case(tmp_path), load_case(scripts))
    ours = _on_both_papers(documents)
    assert getattr(text.draw_first_line, "carepress", False)
    assert getattr(line_break.Layout.setup, "carepress", False)
    assert all(getattr(module.strut, "carepress", False) for module in struts)
    assert getattr(css.ComputedStyle.__missing__, "carepress", False)
    assert all(getattr(module.split_first_line, "carepress", False) for module in breaks)
    assert line_break.split_first_line.kept  # lines were kept, and given again
    assert getattr(line_break.split_first_line.original, "carepress", False)  # retries left out
    assert getattr(line_break.Layout.deactivate, "carepress", False)
    assert getattr(line_break.Layout.reactivate, "carepress", False)
    try:
        text.draw_first_line = text.draw_first_line.original
        line_break.Layout.setup = line_break.Layout.setup.original
        for module in struts:
            module.strut = module.strut.original
        css.ComputedStyle.__missing__ = css.ComputedStyle.__missing__.original
        for module in breaks:
            module.split_first_line = _weasyprints(module.split_first_line)
        line_break.Layout.deactivate = line_break.Layout.deactivate.original
        line_break.Layout.reactivate = line_break.Layout.reactivate.original
        plain = _on_both_papers(documents)
    finally:
        pdfrender._glyphs_read_at_once()
        pdfrender._pango_setups_kept()
        pdfrender._struts_kept()
        pdfrender._initial_values_straight()
        pdfrender._retries_only_where_a_word_might_fit()
        pdfrender._lines_kept()
        pdfrender._layouts_kept_to_draw()
    assert getattr(text.draw_first_line, "carepress", False)
    assert getattr(line_break.Layout.reactivate, "carepress", False)
    assert all(getattr(module.split_first_line, "carepress", False) for module in breaks)
    assert getattr(line_break.Layout.setup, "carepress", False)
    assert all(getattr(module.strut, "carepress", False) for module in struts)
    assert getattr(css.ComputedStyle.__missing__, "carepress", False)
    assert ours == plain
    assert len(ours[0][0]) > 40 and ours[0][1]["pdf/a-very-long-topic.pdf"] > 1
    with open_bytes(ours[0][0]["pdf/saying-hello.pdf"]) as handout:
        fonts = {str(font.BaseFont).split("+")[-1]
                 for page in handout.pages for font in page.Resources.Font.values()}
    assert any(not name.startswith("Atkinson") for name in fonts), fonts  # a fallback font drew some of it
