"""The command line: builds, and a clear error (file, line, code) for each kind of bad input."""

from __future__ import annotations

import codecs
import json
import subprocess
import sys

import jsonschema
import pytest
from conftest import ROOT, SEED, SEED_CONFIG, run_cli

GOOD = SEED.read_bytes()


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def prior_outputs(tmp_path):
    """An output folder with earlier results in it: bad input must leave it exactly as it was."""
    out = tmp_path / "outputs"
    (out / "pdf").mkdir(parents=True)
    (out / "content.json").write_text('{"earlier": true}\n')
    (out / "pdf" / "old.pdf").write_bytes(b"%PDF-1.7 earlier")
    return out


def bad_build(source, out, *extra):
    result = run_cli("build", "--formats", "content", "--source", str(source), "--out", str(out), *extra)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    return result


BAD_INPUTS = {
    "empty.txt": (b"", "CP101", 1),
    "blank.txt": (b"\n \n\t\n", "CP101", 1),
    "binary.txt": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "CP102", 3),  # \r, \n both end lines
    "latin1.txt": (b"Title\n\nIntro text.\n\nA title\n\nCaf\xe9 au lait.\n", "CP103", 7),
    "no-topics.txt": (b"Just a title\n\nAnd a paragraph of text that has no topics under it.\n", "CP104", 1),
    "handout.pdf": (b"%PDF-1.7\n", "CP105", None),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_source_gives_located_error_and_leaves_outputs(name, tmp_path, prior_outputs):
    data, code, line = BAD_INPUTS[name]
    source = tmp_path / name
    source.write_bytes(data)
    before = snapshot(prior_outputs)
    result = bad_build(source, prior_outputs)
    where = f"{source}:{line}: " if line else f"{source}: "
    assert f"{where}error[{code}]" in result.stderr, result.stderr
    assert snapshot(prior_outputs) == before


def test_missing_source(tmp_path, prior_outputs):
    result = bad_build(tmp_path / "nope.txt", prior_outputs)
    assert "error[CP100]" in result.stderr and "nope.txt" in result.stderr


def test_utf16_with_bom_is_read(tmp_path):
    source = tmp_path / "dystonia-education.txt"
    source.write_bytes(codecs.BOM_UTF16_LE + GOOD.decode().encode("utf-16-le"))
    result = run_cli("build", "--quiet", "--formats", "content", "--source", str(source), "--config",
                     str(SEED_CONFIG), "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    content = json.loads((tmp_path / "o" / "content.json").read_text())
    assert len(content["topics"]) == 8


def test_config_errors_all_reported_with_lines(tmp_path, prior_outputs):
    config = tmp_path / "c.toml"
    config.write_text(
        'id = "ok"\n'             # 1
        'colour = "blue"\n'       # 2  unknown key
        'review_date = "soon"\n'  # 3  wrong type
        '\n'
        '[presenter]\n'           # 5
        'name = "Dr. Kumar"\n'
        'rank = 3\n'              # 7  unknown nested key
        '\n'
        '[topics.what-is-blepharospasm]\n'
        'duration = "long"\n'     # 10 wrong type
    )
    before = snapshot(prior_outputs)
    result = bad_build(SEED, prior_outputs, "--config", str(config))
    err = result.stderr
    assert f"{config}:2: error[CP110]: unknown key 'colour'" in err
    assert f"{config}:3: error[CP111]: 'review_date'" in err
    assert f"{config}:7: error[CP110]: unknown key 'presenter.rank'" in err
    assert f"{config}:10: error[CP111]: 'topics.what-is-blepharospasm.duration'" in err
    assert snapshot(prior_outputs) == before


def test_config_not_toml(tmp_path, prior_outputs):
    config = tmp_path / "c.toml"
    config.write_text('id = "ok"\ntitle = \n')
    result = bad_build(SEED, prior_outputs, "--config", str(config))
    assert f"{config}:2: error[CP112]" in result.stderr


def test_strict_fails_on_conflict_warning(tmp_path, prior_outputs):
    source = tmp_path / "conflict.txt"
    source.write_text("Guide\n\nIntro.\n\nWhat is it?\n\nOne answer about necks and muscles.\n\n"
                      "What is it?\n\nA completely different reply regarding eyelids, blinking and light.\n")
    ok = run_cli("build", "--quiet", "--formats", "content", "--source", str(source), "--out", str(tmp_path / "o"))
    assert ok.returncode == 0 and "warning[CP202]" in ok.stderr
    before = snapshot(prior_outputs)
    strict = bad_build(source, prior_outputs, "--strict")
    assert f"{source}:9: warning[CP202]" in strict.stderr
    assert snapshot(prior_outputs) == before


def test_build_content_validates_against_committed_schema(tmp_path):
    result = run_cli("build", "--quiet", "--formats", "content", "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    schema = json.loads((ROOT / "schema" / "collection.schema.json").read_text())
    content = json.loads((tmp_path / "o" / "content.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(content, schema, cls=jsonschema.Draft202012Validator)
    report = json.loads((tmp_path / "o" / "dedupe-report.json").read_text())
    assert report["summary"]["segments"] == 15 and len(report["segments"]) == 15
    dispositions = [s["disposition"] for s in report["segments"]]
    assert dispositions.count("topic") == 8 and dispositions.count("exact-duplicate") == 5
    merges = [s for s in report["segments"] if s["disposition"] != "topic"]
    assert len(merges) == 7 and all(m["reason"] and m["score"] == 1.0 and m["kind"] for m in merges)
    assert {m["kind"] for m in merges} == {"exact", "title-variant"}


def test_build_is_byte_identical(tmp_path):
    for name in ("a", "b"):
        assert run_cli("build", "--quiet", "--formats", "content", "--out", str(tmp_path / name)).returncode == 0
    published = [{k: v for k, v in snapshot(tmp_path / n).items() if not k.startswith(".carepress")} for n in "ab"]
    assert published[0] == published[1]  # the build cache's own bookkeeping (.carepress-*) records file times


def test_newcomer_text_needs_no_config(tmp_path):
    source = tmp_path / "my-tremor-notes.txt"
    source.write_text("Tremor Basics\n\nWhat to know.\n\nWhat causes tremor?\n\nMany things can.\n")
    result = run_cli("build", "--quiet", "--formats", "content", "--source", str(source), "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    content = json.loads((tmp_path / "o" / "content.json").read_text())
    assert (content["id"], content["title"]) == ("tremor-basics", "Tremor Basics")


def test_validate_dedupe_schema_commands(tmp_path):
    assert run_cli("validate").returncode == 0
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"")
    v = run_cli("validate", str(bad))
    assert v.returncode == 1 and "error[CP101]" in v.stderr
    d = run_cli("dedupe", "--json")
    assert d.returncode == 0 and json.loads(d.stdout)["summary"]["topics"] == 8
    text = run_cli("dedupe")
    assert "title-variant" in text.stdout and "15 segments -> 8 topics" in text.stdout
    assert run_cli("schema", "--check").returncode == 0


def test_schema_has_not_drifted():
    from pipeline.cli import schema_text

    committed = (ROOT / "schema" / "collection.schema.json").read_text(encoding="utf-8")
    assert committed == schema_text(), "schema/collection.schema.json is stale: run `carepress schema`"


def test_usage_errors_exit_2():
    assert run_cli("build", "--formats", "nonsense").returncode == 2
    assert run_cli().returncode == 2
    assert run_cli("--bogus").returncode == 2


def test_big_file_finishes_with_bounded_memory(tmp_path):
    """A 50 MB scrape (the page repeated) streams through in bounded memory."""
    source = tmp_path / "big.txt"
    head, rest = GOOD.split(b"\n\n", 2)[:2], GOOD.split(b"\n\n", 2)[2]
    with source.open("wb") as handle:
        handle.write(b"\n\n".join(head) + b"\n\n")
        while handle.tell() < 50 * 1024 * 1024:
            handle.write(rest + b"\n\n")
    code = (
        "import resource, sys; from pipeline.cli import main; "
        f"rc = main(['build', '--quiet', '--formats', 'content', '--source', {str(source)!r}, '--out', {str(tmp_path / 'o')!r}]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    peak_mib = int(result.stdout.strip().splitlines()[-1]) / 1024
    assert peak_mib < 768, f"peak memory {peak_mib:.0f} MiB for a 50 MB source"
    content = json.loads((tmp_path / "o" / "content.json").read_text())
    assert len(content["topics"]) == 8
