"""Captions: WebVTT/SRT/TTML per topic, checked by real parsers (Chromium, webvtt-py, pysubs2,
xml.etree), by our profile lint, for exact round trips, imports and deterministic bytes."""

from __future__ import annotations

import html
import http.server
import re
import shutil
import threading
import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path

import pysubs2
import pytest
import webvtt
from hypothesis import given, settings, strategies as st

from conftest import CASES, SEED, SEED_CONFIG, load_case, modules_imported, run_cli
from pipeline.captions import PROFILES, get_profile
from pipeline.captions.cues import Cue
from pipeline.captions.lint import lint_cues
from pipeline.captions.parse import parse_file
from pipeline.captions.segment import segment
from pipeline.captions.timing import deroll
from pipeline.formats import BuildContext
from pipeline.formats.captions import render, spoken_text, topic_cues

TTML = "{http://www.w3.org/ns/ttml}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
TTP = "{http://www.w3.org/ns/ttml#parameter}"
IMPORT = CASES / "captions-import"
ROUNDTRIP = CASES / "captions-roundtrip"
LINT = CASES / "captions-lint"
WJ = "\u2060"  # SRT keeps '<tag' and '-->' in text inert with an invisible word joiner

CASE_INPUTS = {
    "seed": (SEED, SEED_CONFIG),
    "video": (CASES / "video" / "source.txt", CASES / "video" / "collection.toml"),
    "hostile": (CASES / "hostile" / "source.txt", None),
    "roundtrip": (ROUNDTRIP / "source.txt", ROUNDTRIP / "collection.toml"),
    "import": (IMPORT / "source.txt", None),
}


def timed_for(source: Path) -> dict[str, tuple[str, bytes]]:
    folder = source.parent / "captions"
    return {p.stem: (str(p), p.read_bytes()) for p in sorted(folder.glob("*.vtt"))} if folder.is_dir() else {}


class Rendered:
    """One case under one profile: the collection, the model's cues per topic and the files."""

    def __init__(self, case: str, profile: str):
        source, config = CASE_INPUTS[case]
        cfg, loaded = load_case(source, config)
        self.collection = loaded.collection
        self.profile = get_profile(profile)
        self.ctx = BuildContext(config=cfg, source_date_epoch=1764028800, options={"profile": profile},
                                timed_captions=timed_for(source))
        self.files = render(self.collection, self.ctx)
        self.cues = {t.slug: topic_cues(t, self.ctx, self.profile) for t in self.collection.topics}


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], Rendered]:
    return {(case, p): Rendered(case, p) for case in CASE_INPUTS for p in PROFILES}


@pytest.fixture(scope="module")
def served(rendered, tmp_path_factory):
    """Every generated VTT (all cases, all profiles) on 127.0.0.1, .vtt as text/vtt."""
    root = tmp_path_factory.mktemp("served")
    expected: dict[str, list[Cue]] = {}
    for (case, prof), r in rendered.items():
        for slug, cues in r.cues.items():
            name = f"{case}-{prof}-{slug}.vtt"
            (root / name).write_bytes(r.files[f"captions/{slug}.vtt"])
            expected[name] = cues
    tracks = "\n".join(f'<video><track kind="captions" srclang="en" label="{n}" src="{n}"></video>'
                       for n in sorted(expected))
    (root / "index.html").write_text(f"<!doctype html><html lang=en><title>t</title><body>{tracks}</body></html>")

    class Handler(http.server.SimpleHTTPRequestHandler):
        extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".vtt": "text/vtt"}

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html", expected, root
    server.shutdown()


READ_TRACKS = """async () => {
  const out = {};
  for (const el of document.querySelectorAll('track')) {
    el.track.mode = 'hidden';
    for (let i = 0; i < 200 && el.readyState < 2; i++) await new Promise(r => setTimeout(r, 25));
    out[el.label] = {state: el.readyState, cues: Array.from(el.track.cues || []).map(c => ({
      id: c.id, start: c.startTime, end: c.endTime, text: c.text,
      shown: c.getCueAsHTML().textContent}))};
  }
  return out;
}"""


def test_chromium_parses_every_cue_exactly(served, browser):
    url, expected, _root = served
    page = browser.new_page()
    page.goto(url)
    tracks = page.evaluate(READ_TRACKS)
    page.close()
    assert sorted(tracks) == sorted(expected)
    total = 0
    for name, cues in expected.items():
        got = tracks[name]
        assert got["state"] == 2, name
        assert len(got["cues"]) == len(cues), name
        for n, (g, cue) in enumerate(zip(got["cues"], cues), 1):
            assert g["id"] == str(n)
            assert round(g["start"] * 1000) == cue.start and round(g["end"] * 1000) == cue.end, (name, n)
            assert html.unescape(g["text"]) == cue.text, (name, n)
            assert g["shown"] == cue.text, (name, n)  # what the player displays: no text lost at '<'
        total += len(cues)
    assert total > 200


def test_webvtt_py_and_pysubs2_read_what_the_model_holds(rendered, tmp_path):
    for (case, prof), r in rendered.items():
        for slug, cues in r.cues.items():
            vtt = tmp_path / f"{case}-{prof}-{slug}.vtt"
            srt = tmp_path / f"{case}-{prof}-{slug}.srt"
            vtt.write_bytes(r.files[f"captions/{slug}.vtt"])
            srt.write_bytes(r.files[f"captions/{slug}.srt"])
            for parsed in (webvtt.read(str(vtt)), webvtt.from_srt(str(srt))):
                assert len(parsed.captions) == len(cues)
                for c, cue in zip(parsed.captions, cues):
                    assert c.start == _clock(cue.start) and c.end == _clock(cue.end)
                    # raw_text: webvtt-py's .text strips anything between '<' and '>' from SRT
                    assert html.unescape(c.raw_text).replace(WJ, "") == cue.text
            for path, fmt in ((vtt, "vtt"), (srt, "srt")):
                subs = pysubs2.load(str(path), format_=fmt)
                assert len(subs) == len(cues), path.name
                for ev, cue in zip(subs, cues):
                    assert (ev.start, ev.end) == (cue.start, cue.end)
                    # .text, not .plaintext: pysubs2 drops '{...}' as ASS override tags in .plaintext
                    text = html.unescape(ev.text.replace("\\N", "\n")).replace(WJ, "")
                    assert text == cue.text, path.name


def _clock(ms: int) -> str:
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, f = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{f:03d}"


def test_ttml_is_well_formed_imsc11_text(rendered):
    for (case, prof), r in rendered.items():
        for topic in r.collection.topics:
            root = ET.fromstring(r.files[f"captions/{topic.slug}.ttml"])
            assert root.tag == f"{TTML}tt"
            assert root.get(XML_LANG) == r.collection.language
            assert root.get(f"{TTP}contentProfiles") == "http://www.w3.org/ns/ttml/profile/imsc1.1/text"
            ps = root.findall(f".//{TTML}body/{TTML}div/{TTML}p")
            cues = r.cues[topic.slug]
            assert len(ps) == len(cues)
            for p, cue in zip(ps, cues):
                assert (p.get("begin"), p.get("end")) == (_clock(cue.start), _clock(cue.end))
                lines = [p.text or ""] + [br.tail or "" for br in p.findall(f"{TTML}br")]
                assert tuple(lines) == cue.lines


def test_file_structure(rendered):
    for (case, prof), r in rendered.items():
        assert sorted(r.files) == sorted(f"captions/{t.slug}.{ext}" for t in r.collection.topics
                                         for ext in ("vtt", "srt", "ttml"))
        for name, data in r.files.items():
            text = data.decode("utf-8")
            if name.endswith(".vtt"):
                assert text.startswith("WEBVTT\n\n")
                ids = re.findall(r"^(\d+)\n\d\d:", text, re.M)
                assert len(ids) == len(set(ids)) == text.count(" --> ")
                body = [ln for ln in text.split("\n") if ln and " --> " not in ln]
                assert not any("-->" in ln or "<" in ln or ">" in ln for ln in body), name
                assert not re.search(r"&(?!amp;|lt;|gt;|#\d+;)", text), name
            elif name.endswith(".srt"):
                numbers = re.findall(r"(?:^|\r\n\r\n)(\d+)\r\n\d\d:\d\d:\d\d,\d\d\d --> ", text)
                assert numbers == [str(n) for n in range(1, len(numbers) + 1)] and numbers, name
                assert text.count("-->") == len(numbers)  # none inside text


def test_every_generated_cue_meets_its_profile(rendered):
    checked = 0
    for (case, prof), r in rendered.items():
        for slug, cues in r.cues.items():
            violations = lint_cues(cues, r.profile)
            if case == "hostile":  # a 48-character 'word' of markup cannot fit any line: reported
                assert {v.code for v in violations} <= {"line-length"}
                assert any(d.code == "CP313" for d in r.ctx.diagnostics) or not violations
            else:
                assert violations == [], (case, prof, slug, violations[:3])
                checked += len(cues)
        if case != "hostile":
            assert not r.ctx.diagnostics, r.ctx.diagnostics
    assert checked > 200


def test_roundtrip_transcript_exact(rendered):
    for prof in PROFILES:
        r = rendered[("roundtrip", prof)]
        topic = r.collection.topic("questions-for-dr-kumar")
        assert topic.transcript and "60" not in topic.slug
        cues = r.cues[topic.slug]
        assert " ".join(" ".join(c.lines) for c in cues) == " ".join(topic.transcript.split())
        long = [s for s in re.split(r"(?<=[.!?])\s+", topic.transcript) if len(s.split()) == 60]
        assert long, "the case must hold a 60-word sentence"
        joined = [" ".join(c.lines) for c in cues]
        for pair in ("Dr. Kumar", "100 units", "4 weeks", "12 weeks", "10 mg"):
            assert any(pair in line for c in cues for line in c.lines), (prof, pair)  # never split
        assert any("&" in j for j in joined) and any("<" in j for j in joined) and any("-->" in j for j in joined)
        # the duration-known topic is spread to end with the video
        assert r.cues["dosing-basics"][-1].end == 30_000


def test_estimated_timing_follows_speaking_rate(rendered):
    r = rendered[("seed", "dcmp")]
    for topic in r.collection.topics:
        cues = r.cues[topic.slug]
        words = len(spoken_text(topic).split())
        minutes = cues[-1].end / 60000
        assert 100 <= words / minutes <= 160, topic.slug  # 150 wpm speech, plus pauses and reading holds
        for a, b in zip(cues, cues[1:]):
            if a.lines[-1].endswith("."):
                assert b.start - a.end >= 400  # a pause at sentence ends
    video = rendered[("video", "netflix-en")]
    assert video.cues["what-is-essential-tremor"][-1].end == 42_000


def test_import_removes_rolling_duplication_and_keeps_timing(rendered):
    raw = (IMPORT / "captions" / "living-with-dystonia.vtt").read_bytes()
    expected = (IMPORT / "expected-words.txt").read_text().split()
    raw_cues = parse_file(raw, "living-with-dystonia.vtt")
    assert sum(len(c.text.split()) for c in raw_cues) > 1.8 * len(expected)  # it really rolls
    words = deroll(raw_cues)
    assert [w.text for w in words] == expected
    starts = {w.start for w in words}
    for prof in PROFILES:
        cues = rendered[("import", prof)].cues["living-with-dystonia"]
        assert " ".join(" ".join(c.lines) for c in cues).split() == expected  # nothing repeated, nothing lost
        assert all(c.start in starts for c in cues)  # original timing kept
        assert lint_cues(cues, get_profile(prof)) == []


def test_bad_import_is_a_located_error(tmp_path):
    case = tmp_path / "case"
    shutil.copytree(IMPORT, case)
    bad = case / "captions" / "living-with-dystonia.vtt"
    bad.write_text("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nfine\n\n00:00:03,000 --> 00:00:04.000\nbad\n")
    result = run_cli("build", "--quiet", "--formats", "captions", "--source", str(case / "source.txt"),
                     "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert f"{bad}:6: error[CP310]" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_lint_cli(rendered, tmp_path):
    result = run_cli("captions", "lint", str(LINT / "vendor.srt"), "--profile", "netflix-en")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert all(re.match(r"^.+vendor\.srt:cue \d+: [a-z-]+: .+", ln) for ln in lines)
    codes = {(int(m[1]), m[2]) for m in (re.search(r":cue (\d+): ([a-z-]+):", ln) for ln in lines)}
    assert {(1, "line-length"), (1, "overlap"), (2, "too-many-lines"), (3, "min-duration"),
            (3, "reading-rate"), (4, "max-duration"), (4, "line-break")} <= codes
    ok = run_cli("captions", "lint", str(LINT / "clean.vtt"))
    assert ok.returncode == 0 and ok.stdout == ""
    bad = run_cli("captions", "lint", str(LINT / "comma.vtt"), str(LINT / "utf16.srt"), str(tmp_path / "nope.vtt"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert f"{LINT / 'comma.vtt'}:4: error[CP310]" in bad.stderr
    assert "utf16.srt: error[CP311]" in bad.stderr and "nope.vtt: error[CP100]" in bad.stderr
    # our own files pass the CLI lint too, for each profile (one process per profile)
    for prof in PROFILES:
        files = []
        for case in ("seed", "roundtrip", "import"):
            for name, data in rendered[(case, prof)].files.items():
                if name.endswith((".vtt", ".srt")):
                    path = tmp_path / prof / case / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                    files.append(str(path))
        res = run_cli("captions", "lint", "--profile", prof, *files)
        assert res.returncode == 0 and res.stdout == "", res.stdout[:500]


def test_cli_build_matches_render_and_is_deterministic(built, rendered):
    r = rendered[("seed", "dcmp")]
    for name, data in r.files.items():
        assert (built / name).read_bytes() == data, name
    again = Rendered("seed", "dcmp")
    assert again.files == r.files


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["the", "a", "Dr.", "Kumar", "10", "mg", "dystonia", "neck,", "and", "of",
                                 "injections", "every", "12", "weeks.", "muscle", "Botulinum", "toxin"]),
                min_size=1, max_size=80),
       st.sampled_from(sorted(PROFILES)))
def test_segmentation_never_changes_words_and_fits_lines(words, prof):
    profile = get_profile(prof)
    spans = segment(words, profile)
    assert [w for _s, _e, lines in spans for line in lines for w in line.split()] == words
    assert [s for s, _e, _l in spans] == [0] + [e for _s, e, _l in spans][:-1]
    for _s, _e, lines in spans:
        assert len(lines) <= profile.max_lines and all(len(ln) <= profile.chars_per_line for ln in lines)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1).map(lambda t: "".join(t.split()))
                .filter(bool), min_size=1, max_size=30),
       st.sampled_from(sorted(PROFILES)))
def test_reading_time_counted_is_the_reading_time_of_the_joined_words(words, prof):
    """The estimate counts each span it tries (timing._plan's fits) instead of joining its words
    and splitting them again: the same seconds for every span of words split from a transcript
    (no whitespace in a word, Unicode's included)."""
    profile = get_profile(prof)
    for s in range(len(words)):
        for e in range(s + 1, len(words) + 1):
            chars = sum(len(w) for w in words[s:e]) + e - s - 1
            assert profile.reading_time_of(e - s, chars) == profile.reading_time(" ".join(words[s:e]))


def test_two_line_cues_are_balanced_or_bottom_heavy(rendered):
    two = bottom_heavy = 0
    for (case, prof), r in rendered.items():
        if case == "hostile":
            continue
        for cues in r.cues.values():
            for cue in cues:
                if len(cue.lines) == 2:
                    top, bottom = (len(x) for x in cue.lines)
                    two += 1
                    bottom_heavy += top <= bottom
                    assert top - bottom <= r.profile.chars_per_line // 2, (case, prof, cue.lines)
    assert two > 100 and bottom_heavy / two >= 0.65


def test_srt_import_and_unknown_topic(tmp_path):
    """A vendor's plain (non-rolling) SRT keeps every word and start time; a file for no topic warns."""
    source, config = CASE_INPUTS["import"]
    cfg, loaded = load_case(source, config)
    srt = ("1\r\n00:00:01,000 --> 00:00:03,500\r\nDystonia movements usually\r\n\r\n"
           "2\r\n00:00:03,600 --> 00:00:06,000\r\n<i>stop</i> during sleep &amp; rest.\r\n")
    ctx = BuildContext(config=cfg, source_date_epoch=0, options={"profile": "dcmp"},
                       timed_captions={"sleep-and-dystonia": ("sleep.srt", srt.encode()),
                                       "no-such-topic": ("x.srt", srt.encode())})
    render(loaded.collection, ctx)
    cues = topic_cues(loaded.collection.topic("sleep-and-dystonia"), ctx, get_profile("dcmp"))
    assert " ".join(" ".join(c.lines) for c in cues) == "Dystonia movements usually stop during sleep &amp; rest."
    assert cues[0].start == 1000 and lint_cues(cues, get_profile("dcmp")) == []
    assert [d.code for d in ctx.diagnostics] == ["CP312"]


def test_parallel_captions_give_the_same_bytes_and_warnings(tmp_path):
    """Over PARALLEL_FROM topics, estimated captions are made across processes: same result."""
    from pipeline.formats.captions import PARALLEL_FROM

    source = tmp_path / "many.txt"
    topics = "\n\n".join(f"Topic Number {n}\n\nDr. Smith explains treatment {n} for dystonia, with 5 mg doses and "
                         f"a supercalifragilisticexpialidociouslylongword{'x' * (n % 30)} in it."
                         for n in range(PARALLEL_FROM + 10))
    source.write_text(f"Many Topics\n\nA collection with many topics.\n\n{topics}\n")
    config, loaded = load_case(source)
    results = []
    for jobs in (1, 2):
        ctx = BuildContext(config=config, source_date_epoch=0, options={"jobs": jobs})
        results.append((render(loaded.collection, ctx), [str(d) for d in ctx.diagnostics]))
    assert results[0] == results[1]
    assert len(results[0][0]) == 3 * (PARALLEL_FROM + 10) and results[0][1]  # the long words warn (CP313)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab &<>\"'\n\r\t]ü\u2028")), max_size=24) | st.text(max_size=24),
       st.from_regex(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$", fullmatch=True))
def test_ttml_escapes_text_and_attributes_as_xml_sax_does(text, language):
    """cues.xml_escape writes what xml.sax.saxutils.escape writes, and the TTML's xml:lang (a
    language tag as the model allows it) what its quoteattr writes (saxutils is not imported:
    see test_captions_import_no_url_library)."""
    from xml.sax import saxutils

    from pipeline.captions import cues

    assert cues.xml_escape(text) == saxutils.escape(text)
    assert f' xml:lang={saxutils.quoteattr(language)} ' in cues.to_ttml([], language, "Title").decode()


def test_captions_import_no_url_library():
    """Writing a topic's captions imports neither xml.sax.saxutils nor the urllib.request,
    http, email and ssl it imports (30 to 40 ms of every build's own process)."""
    probe = ("from pathlib import Path\nfrom pipeline.build import Inputs, load_inputs\n"
             "from pipeline.formats import BuildContext\nfrom pipeline.formats.captions import render\n"
             f"config, loaded = load_inputs(Inputs([Path({str(SEED)!r})], Path({str(SEED_CONFIG)!r}), None))\n"
             "files = render(loaded.collection, BuildContext(config=config, source_date_epoch=0))\n"
             "assert any(name.endswith('.ttml') for name in files)")
    assert modules_imported(probe, ("xml.sax.saxutils", "urllib.request", "http.client", "email", "ssl")) == []
