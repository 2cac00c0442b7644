"""The html format: an accessible static site, checked in real Chromium and by the Nu HTML Checker.

Three sites are served over 127.0.0.1 from one folder:
- ``seed/``: the session-wide real CLI build of the seed (``built``), with whatever other
  formats exist in this tree (the download links follow ``ctx.rendered``);
- ``video/``: a direct ``render()`` of ``tests/cases/video`` with stand-in PDF/EPUB/WebVTT
  files in ``ctx.rendered`` (one topic's URL changed to a media file so the ``<video>``
  path is covered next to a video-page URL and a topic with no URL);
- ``hostile/``: a direct ``render()`` of ``tests/cases/hostile``.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import posixpath
import re
import shutil
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

import pytest

from conftest import ROOT, java
from pipeline.diagnostics import CarepressError
from pipeline.formats import BuildContext
from pipeline.formats import html as html_format
from pipeline.formats.common import human_size, pdf_page_count

AXE_JS = ROOT / "node_modules" / "axe-core" / "axe.min.js"
VNU_JAR = ROOT / "node_modules" / "vnu-jar" / "build" / "dist" / "vnu.jar"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
EPOCH = 1764028800
MEDIA_SLUG = "what-is-essential-tremor"
MEDIA_URL = "https://videos.example.org/tremor/what-is-essential-tremor.mp4"
PAGE_URL_SLUG = "living-with-tremor-part-1"
NO_URL_SLUG = "living-with-tremor-part-2"
VTT = (
    "WEBVTT\n\n"
    "1\n00:00:00.000 --> 00:00:03.500\nEssential tremor is a nervous system condition\n\n"
    "2\n00:00:03.500 --> 00:00:07.000\nthat causes involuntary &amp; rhythmic shaking.\n"
).encode("utf-8")


def fake_pdf(pages: int) -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=612, height=792)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def render_case(collection, config, rendered: dict[str, bytes] | None = None) -> dict[str, bytes]:
    ctx = BuildContext(config=config, source_date_epoch=EPOCH, rendered=dict(rendered or {}))
    return html_format.render(collection, ctx)


def video_collection(video_case):
    """The video case with one topic's URL pointing at a media file (.mp4)."""
    collection = video_case[1].collection
    topics = tuple(
        t.model_copy(update={"media": t.media.model_copy(update={"video_url": MEDIA_URL})}) if t.slug == MEDIA_SLUG else t
        for t in collection.topics
    )
    return collection.model_copy(update={"topics": topics})


def video_rendered(collection) -> dict[str, bytes]:
    """Stand-ins for what the captions, pdf and epub stages make (real PDFs, so pages count)."""
    files = {f"epub/{collection.id}.epub": b"PK\x03\x04" + b"\0" * 5000,
             f"pdf/{collection.id}-booklet.pdf": fake_pdf(3)}
    for n, topic in enumerate(collection.topics):
        files[f"pdf/{topic.slug}.pdf"] = fake_pdf(1)
        files[f"pdf/large-print/{topic.slug}.pdf"] = fake_pdf(2)
        if n < 2:  # the last topic has no captions file: no track, no captions link
            files[f"captions/{topic.slug}.vtt"] = VTT
    return files


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def video_files(video_case):
    collection = video_collection(video_case)
    rendered = video_rendered(collection)
    return collection, rendered, render_case(collection, video_case[0], rendered)


@pytest.fixture(scope="module")
def hostile_files(hostile_case):
    return render_case(hostile_case[1].collection, hostile_case[0])


@pytest.fixture(scope="module")
def site(built, video_files, hostile_files, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    shutil.copytree(built, root / "seed")
    _collection, rendered, pages = video_files
    write_tree(root / "video", {**rendered, **pages})
    write_tree(root / "hostile", hostile_files)
    return root


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".vtt": "text/vtt",
                      ".css": "text/css", ".html": "text/html; charset=utf-8", ".ttf": "font/ttf"}

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def server(site):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def pages(site) -> list[str]:
    """Every HTML page of the three sites, as paths relative to the served root."""
    found = sorted(p.relative_to(site).as_posix() for p in site.glob("*/html/*.html"))
    assert len(found) == 9 + 4 + 3, found
    return found


# --------------------------------------------------------------------------- render() unit tests


def test_render_files_and_determinism(seed):
    config, loaded = seed
    first = render_case(loaded.collection, config)
    second = render_case(loaded.collection, config)
    assert first == second  # byte-identical
    slugs = [t.slug for t in loaded.collection.topics]
    expected = {"html/index.html", "html/assets/site.css", "html/assets/fonts/OFL.txt"}
    expected |= {f"html/{s}.html" for s in slugs}
    expected |= {f"html/assets/fonts/AtkinsonHyperlegible-{v}.ttf" for v in ("Regular", "Bold", "Italic", "BoldItalic")}
    assert set(first) == expected
    for name, data in first.items():
        if name.endswith(".html"):
            text = data.decode("utf-8")
            assert text.startswith("<!DOCTYPE html>\n<html lang=\"en\">")
            assert "<script" not in text and "http://" not in text  # no JS, no insecure/external assets
            assert not re.search(r"[ \t]\n", text)
    # nothing built yet by other stages: no links to files that do not exist
    assert "../pdf/" not in first["html/index.html"].decode() and "../epub/" not in first["html/index.html"].decode()
    assert 'Content reviewed <time datetime="2026-11-25">25 November 2026</time>' in first["html/index.html"].decode()


def test_downloads_follow_rendered_files(video_files):
    collection, rendered, files = video_files
    index = files["html/index.html"].decode()
    assert re.search(r'href="\.\./pdf/tremor-talks-booklet\.pdf" type="application/pdf">Booklet with every topic '
                     r'<span class="file-details">\(PDF, 3 pages, \d+ (?:bytes|KB)\)</span>', index)
    assert re.search(r'href="\.\./epub/tremor-talks\.epub" type="application/epub\+zip">E-book for reading apps '
                     r'<span class="file-details">\(EPUB, 5 KB\)</span>', index)
    for topic in collection.topics:
        assert f'href="../pdf/{topic.slug}.pdf"' in index
        assert f'href="../pdf/large-print/{topic.slug}.pdf"' in index
    page = files[f"html/{MEDIA_SLUG}.html"].decode()
    assert re.search(r"Printable handout <span class=\"file-details\">\(PDF, 1 page, \d+ (?:bytes|KB)\)</span>", page)
    assert re.search(r"Large-print handout <span class=\"file-details\">\(PDF, 2 pages, \d+ (?:bytes|KB)\)</span>", page)
    assert f"Caption file for this topic’s video <span class=\"file-details\">(WebVTT, {len(VTT)} bytes)</span>" in page
    # every relative link points at a file the build has (or will publish) or at an html page
    everything = {**rendered, **files}
    for name, data in files.items():
        if name.endswith(".html"):
            for href in re.findall(r'(?:href|src)="([^"]+)"', data.decode()):
                if href.startswith(("http://", "https://", "#")):
                    continue
                target = posixpath.normpath(posixpath.join(posixpath.dirname(name), urldefrag(href)[0]))
                assert target in everything, (name, href)
    # missing files give no links: a topic with no captions has neither track nor captions link
    no_caps = files[f"html/{NO_URL_SLUG}.html"].decode()
    assert "../captions/" not in no_caps


def test_pdf_page_count():
    import weasyprint

    pdf = weasyprint.HTML(string="<h1>a</h1><h1 style='break-before: page'>b</h1><h1 style='break-before: page'>c</h1>",
                          ).write_pdf(pdf_variant="pdf/ua-1")  # compressed object streams, as the pdf format writes
    assert pdf_page_count(pdf) == 3
    assert pdf_page_count(fake_pdf(2)) == 2
    assert pdf_page_count(b"%PDF-1.7 not really") is None
    assert pdf_page_count(b"PK\x03\x04") is None


def test_video_markup(video_files):
    _collection, _rendered, files = video_files
    media = files[f"html/{MEDIA_SLUG}.html"].decode()
    assert '<video controls preload="none" class="player">' in media
    assert f'<source src="{MEDIA_URL}" type="video/mp4">' in media
    assert (f'<track kind="captions" src="../captions/{MEDIA_SLUG}.vtt" srclang="en" label="English" default>'
            in media)
    assert "Length: 42 seconds." in media
    page_url = files[f"html/{PAGE_URL_SLUG}.html"].decode()
    assert "<video" not in page_url  # a video *page* cannot be a <video> source
    assert '<a href="https://videos.example.org/tremor/living-part-1">Watch the video' in page_url
    assert f'href="../captions/{PAGE_URL_SLUG}.vtt"' in page_url
    none = files[f"html/{NO_URL_SLUG}.html"].decode()
    assert "No video link is available for this topic yet" in none and "<video" not in none
    # series navigation
    assert "Part 1 of 2" in page_url and f'href="{NO_URL_SLUG}.html" rel="next">Next: Part 2' in page_url
    assert f'href="{PAGE_URL_SLUG}.html" rel="prev">Previous: Part 1' in none
    # index: presenter, publisher, series grouping, summaries
    index = files["html/index.html"].decode()
    assert "Presented by Dr. Jane Smith, Neurologist." in index
    assert '<a href="https://clinic.example.org/">Example Neurology Clinic</a>' in index
    assert "Living with Tremor <span class=\"series-count\">(a series of 2 parts)</span>" in index
    assert "Essential tremor is a nervous system condition that causes involuntary and rhythmic shaking." in index


def test_transcript_section_uses_transcript_when_known(video_case):
    config, loaded = video_case
    topic = loaded.collection.topics[0].model_copy(update={"transcript": "Hello & welcome.\n\nSecond <para>."})
    collection = loaded.collection.model_copy(update={"topics": (topic, *loaded.collection.topics[1:])})
    page = render_case(collection, config)[f"html/{topic.slug}.html"].decode()
    transcript = page.split('id="transcript-heading">Transcript</h2>', 1)[1].split("</section>", 1)[0]
    assert "<p>Hello &amp; welcome.</p>\n<p>Second &lt;para&gt;.</p>" in transcript
    assert '<div class="lead">\n<p>Essential tremor' in page  # the body then leads the page


def test_hostile_source_is_escaped(hostile_files):
    allowed = {"html", "head", "meta", "title", "link", "body", "a", "header", "nav", "main", "footer", "div", "p",
               "h1", "h2", "h3", "ul", "ol", "li", "span", "section", "strong", "time"}
    for name, data in hostile_files.items():
        if not name.endswith(".html"):
            continue
        parser = _Tags()
        parser.feed(data.decode())
        assert parser.tags <= allowed, (name, parser.tags - allowed)  # no script, img, iframe, style, b ...
        for tag, attrs in parser.elements:
            for key, value in attrs:
                assert not key.startswith("on"), (name, tag, key)
                assert not (value or "").lower().startswith(("file:", "javascript:", "http:")), (name, tag, value)
            if tag == "link":
                assert dict(attrs)["href"] == "assets/site.css"
    index = hostile_files["html/index.html"].decode()
    assert "<title>Hostile &lt;b&gt;Collection&lt;/b&gt; &amp; Friends</title>" in index
    page = hostile_files["html/what-is-script-alert-1-script-dystonia.html"].decode()
    assert "<h1>What is &lt;script&gt;alert(1)&lt;/script&gt; Dystonia?</h1>" in page
    assert "{{ 7*7 }}" in hostile_files["html/styles-tricks.html"].decode()  # not evaluated as a template
    # no review date: the build's SOURCE_DATE_EPOCH, never the clock
    assert 'Published <time datetime="2025-11-25">25 November 2025</time>' in index


def test_render_failure_is_a_diagnostic(seed, monkeypatch):
    config, loaded = seed
    monkeypatch.setattr(html_format, "_stylesheet", lambda: (_ for _ in ()).throw(OSError("disk gone")))
    with pytest.raises(CarepressError) as info:
        render_case(loaded.collection, config)
    assert info.value.diagnostics[0].code == "CP130"


# --------------------------------------------------------------------------- the built site


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, list]] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, attrs))
        self.tags.add(tag)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.ids: set[str] = set()
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        d = dict(attrs)
        if "id" in d:
            self.ids.add(d["id"])
        for key in ("href", "src"):
            if d.get(key):
                self.refs.append(d[key])


def test_booklet_details_filled_in_after_it_is_assembled(built):
    """The site is rendered while a child process assembles the booklet (a stand-in for its
    details goes in the pages): the index ends up with the booklet's pages and size, and the
    topic pages, written while it is made (and left alone when its length changes), with its kind."""
    booklet = next((built / "pdf").glob("*-booklet.pdf")).read_bytes()
    pages = pdf_page_count(booklet)
    link = 'Booklet with every topic <span class="file-details">({})</span>'
    for page in sorted((built / "html").glob("*.html")):
        data = page.read_bytes()
        assert b"\x00" not in data, page.name
        details = f"PDF, {pages} pages, {human_size(len(booklet))}" if page.name == "index.html" else "PDF"
        assert link.format(details) in data.decode("utf-8"), page.name


def test_built_site_links_resolve(built):
    """Through the real CLI: every local link and fragment of the seed site exists."""
    html_dir = built / "html"
    pages = sorted(html_dir.glob("*.html"))
    assert len(pages) == 9
    parsed = {}
    for page in pages:
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8"))
        parsed[page.name] = parser
    for name, parser in parsed.items():
        # one h1; the landmarks; a skip link to main first
        assert parser.tags.count("h1") == 1, name
        assert {"header", "main", "footer", "nav"} <= set(parser.tags), name
        assert parser.tags.count("main") == 1 and parser.refs[1] == "#main", name
        text = (html_dir / name).read_text(encoding="utf-8")
        if name != "index.html":
            assert '<nav class="breadcrumb" aria-label="Breadcrumb">' in text and "Transcript</h2>" in text, name
        for ref in parser.refs:
            assert not ref.startswith(("http:", "file:", "//")), (name, ref)
            if ref.startswith("https:"):
                continue
            path, fragment = urldefrag(ref)
            target = (html_dir / path).resolve() if path else html_dir / name
            assert target.is_file(), (name, ref)
            if fragment:
                assert fragment in parsed[target.name].ids, (name, ref)
    # and every download the other stages produced is offered, with its real size
    index = (html_dir / "index.html").read_text(encoding="utf-8")
    for other in ("epub/dystonia-education.epub", "pdf/dystonia-education-booklet.pdf"):
        if (built / other).is_file():
            assert f'href="../{other}"' in index
    for page in pages:
        if page.name == "index.html":
            continue
        text = page.read_text(encoding="utf-8")
        for other in (f"pdf/{page.stem}.pdf", f"pdf/large-print/{page.stem}.pdf", f"captions/{page.stem}.vtt"):
            if (built / other).is_file():
                size = html_format.human_size((built / other).stat().st_size)
                assert re.search(rf'href="\.\./{re.escape(other)}"[^>]*>[^(]*\([^)]*{size}\)', text), (page.name, other)
            else:
                assert f"../{other}" not in text


def _axe(page) -> list[dict]:
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(content=AXE_JS.read_text(encoding="utf-8"))
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})", AXE_TAGS
    )
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"]]


def test_axe_every_page_both_schemes_both_widths(browser, server, pages):
    """axe-core (WCAG 2.0/2.1/2.2 A+AA and best practice): 0 violations on every page of the three sites,
    light and dark, 320 px and 1280 px wide (each page loaded once; media and viewport switched in place)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems, runs = {}, 0
    for path in pages:
        page.goto(f"{server}/{path}")
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            assert page.evaluate(f"matchMedia('(prefers-color-scheme: {scheme})').matches")
            for width in (320, 1280):
                page.set_viewport_size({"width": width, "height": 900})
                assert page.evaluate("innerWidth") == width
                violations = _axe(page)
                runs += 1
                if violations:
                    problems[f"{path} @{width} {scheme}"] = violations
    context.close()
    assert runs == len(pages) * 4
    assert not problems, json.dumps(problems, indent=1)


@pytest.mark.parametrize("viewport,scale", [((320, 640), 1), ((320, 256), 4)], ids=["320px", "1280px-at-400%"])
def test_no_horizontal_scroll(browser, server, pages, viewport, scale):
    """320 CSS px (a phone, or a 1280 px window zoomed to 400%): nothing scrolls or sticks out sideways."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=scale)
    page = context.new_page()
    wide = {}
    for path in pages:
        page.goto(f"{server}/{path}")
        page.evaluate("document.fonts.ready")
        sizes = page.evaluate("""() => {
            const w = window.innerWidth;
            const out = [...document.querySelectorAll('body *')].filter(e => {
                const r = e.getBoundingClientRect();
                return r.width > 0 && (r.right > w + 0.5 || r.left < -0.5) && !e.closest('.skip-link, .visually-hidden');
            }).map(e => e.tagName + '.' + e.className);
            return {scroll: document.documentElement.scrollWidth, inner: w, out};
        }""")
        if sizes["scroll"] > sizes["inner"] or sizes["out"]:
            wide[path] = sizes
    context.close()
    assert not wide, wide


def test_fonts_styles_and_no_external_requests(browser, server, pages):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
    for path in pages:
        page.goto(f"{server}/{path}")
        page.evaluate("document.fonts.ready")
        assert page.evaluate("document.fonts.check('1rem \"Atkinson Hyperlegible\"')"), path
        assert page.evaluate("[...document.fonts].some(f => f.status === 'loaded')"), path
        assert page.evaluate("getComputedStyle(document.body).fontFamily").startswith('"Atkinson Hyperlegible"')
    assert requests and all(urlsplit(u).hostname == "127.0.0.1" for u in requests), \
        sorted({u for u in requests if urlsplit(u).hostname != "127.0.0.1"})
    assert not failed, failed
    # dark mode really changes the colours; reduced motion turns smooth scrolling off; print hides navigation
    page.goto(f"{server}/seed/html/deep-brain-stimulation-for-dystonia-part-1.html")
    light = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    page.emulate_media(color_scheme="dark")
    assert page.evaluate("getComputedStyle(document.documentElement).backgroundColor") != light
    page.emulate_media(reduced_motion="no-preference")
    assert page.evaluate("getComputedStyle(document.documentElement).scrollBehavior") == "smooth"
    page.emulate_media(reduced_motion="reduce")
    assert page.evaluate("getComputedStyle(document.documentElement).scrollBehavior") == "auto"
    page.emulate_media(media="print", color_scheme="dark")
    assert page.evaluate("getComputedStyle(document.querySelector('.breadcrumb')).display") == "none"
    assert page.evaluate("getComputedStyle(document.querySelector('.prev-next')).display") == "none"
    assert page.evaluate("getComputedStyle(document.documentElement).backgroundColor") == "rgb(255, 255, 255)"
    context.close()


FOCUSABLE = """() => { window.__focusable = [...document.querySelectorAll(
    'a[href], button, input, select, textarea, video[controls], [tabindex]:not([tabindex="-1"])')]
    .filter(e => e.getClientRects().length > 0 || e.classList.contains('skip-link'));
    return window.__focusable.map(e => e.outerHTML.slice(0, 100)); }"""


@pytest.mark.parametrize("path", [
    "seed/html/index.html",
    "seed/html/deep-brain-stimulation-for-dystonia-part-1.html",
    f"video/html/{MEDIA_SLUG}.html",
])
def test_keyboard_tab_order(browser, server, path):
    """Tab visits every link and control once, in document order, each with a visible focus outline."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{server}/{path}")
    expected = page.evaluate(FOCUSABLE)
    order: list[int] = []
    for _ in range(len(expected) + 12):
        page.keyboard.press("Tab")
        info = page.evaluate("""() => {
            const e = document.activeElement;
            if (!e || e === document.body) return null;
            const s = getComputedStyle(e);
            return {i: window.__focusable.indexOf(e), html: e.outerHTML.slice(0, 100), outline: s.outlineStyle,
                    width: parseFloat(s.outlineWidth), tag: e.tagName};
        }""")
        if info is None:
            break  # focus left the document: the cycle is over
        assert info["i"] >= 0, info  # nothing focusable that is not a link or control
        if info["tag"] != "VIDEO":  # the player's own controls draw their focus ring inside its shadow DOM
            assert info["outline"] != "none" and info["width"] >= 2, info
        if not order or order[-1] != info["i"]:  # the player's buttons are several stops on one element
            order.append(info["i"])
        if len(order) > len(expected):
            break
    assert order == list(range(len(expected))), [expected[i] for i in order]
    seen = [expected[i] for i in order]
    assert 'class="skip-link"' in seen[0]
    # the skip link really moves focus to the main content
    page.goto(f"{server}/{path}")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    assert page.evaluate("document.querySelector('.skip-link').getBoundingClientRect().bottom") <= 0
    context.close()


def test_hostile_case_in_browser(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{server}/hostile/html/what-is-script-alert-1-script-dystonia.html")
    assert page.inner_text("h1") == "What is <script>alert(1)</script> Dystonia?"
    body = page.inner_text("main")
    assert "Body with <img src=x onerror=\"alert('img')\"> and <img src=\"file:///etc/passwd\">" in body
    assert "5 < 6 > 4" in body and "R&D" in body and "</p></body></html> <iframe" in body
    assert page.evaluate("document.querySelectorAll('script, img, iframe, style, link:not([href=\"assets/site.css\"])').length") == 0
    page.goto(f"{server}/hostile/html/styles-tricks.html")
    assert "<style>@import url(http://example.com/x.css)" in page.inner_text("main")
    assert "{{ 7*7 }}" in page.inner_text("main")
    page.goto(f"{server}/hostile/html/index.html")
    assert page.title() == "Hostile <b>Collection</b> & Friends"
    assert "Intro with <script>alert('intro')</script> & an ampersand" in page.inner_text("main")
    page.wait_for_timeout(300)  # let a would-be onerror handler fire
    assert dialogs == []
    assert all(urlsplit(u).hostname == "127.0.0.1" for u in requests), requests
    context.close()


def test_caption_track_loads(browser, server):
    """The <track> on the media-file page loads the generated WebVTT with its cues."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{server}/video/html/{MEDIA_SLUG}.html")
    page.wait_for_function("""() => { const t = document.querySelector('track');
        if (t.track.mode === 'disabled') t.track.mode = 'hidden'; return t.readyState >= 2; }""", timeout=10000)
    state = page.evaluate("""() => { const t = document.querySelector('track');
        return {ready: t.readyState, cues: t.track.cues.length, kind: t.track.kind, label: t.track.label,
                lang: t.track.language, second: t.track.cues[1].getCueAsHTML().textContent}; }""")
    assert state == {"ready": 2, "cues": 2, "kind": "captions", "label": "English", "lang": "en",
                     "second": "that causes involuntary & rhythmic shaking."}
    context.close()


def test_axe_harness_reports_violations(browser):
    """The axe set-up above is live: a deliberately bad page gets the violations it should."""
    context = browser.new_context(viewport={"width": 320, "height": 640})
    page = context.new_page()
    page.set_content('<!DOCTYPE html><html><head><title>x</title></head><body><main><h1>x</h1>'
                     '<img src="data:,"><p style="color:#bbb;background:#fff">faint</p></main></body></html>')
    ids = {v["id"] for v in _axe(page)}
    assert {"image-alt", "color-contrast", "html-has-lang"} <= ids, ids
    context.close()


def test_nu_html_checker(site, pages, tmp_path):
    """One Nu HTML Checker run over every page of the three sites (and the stylesheet): 0 errors.

    A deliberately invalid page rides along in the same run to show the checker reports errors.
    """
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html lang=en><title>x</title><p><div>x</p><a href='a b'>y</a>", encoding="utf-8")
    files = [str(site / p) for p in pages] + [str(site / "seed" / "html" / "assets" / "site.css"), str(bad)]
    result = subprocess.run([java(), "-jar", str(VNU_JAR), "--errors-only", "--also-check-css", "--format", "json",
                             "--stdout", *files], capture_output=True, text=True, timeout=300)
    messages = json.loads(result.stdout)["messages"]
    errors = [m for m in messages if m.get("type") == "error" or m.get("subType") == "fatal"]
    bad_errors = [m for m in errors if urlsplit(m["url"]).path.endswith("/bad.html")]
    ours = [m for m in errors if m not in bad_errors]
    assert not ours, json.dumps(ours[:20], indent=1)
    assert len(bad_errors) >= 2, messages  # the checker is live
