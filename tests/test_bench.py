"""The benchmark command works end to end on a small corpus (its speed goals are not tested here)."""

from __future__ import annotations

import json

from conftest import run_cli

from pipeline.bench import TARGETS, verdicts


def test_small_bench_writes_figures_chart_and_target_table(tmp_path):
    out = tmp_path / "out"
    result = run_cli("bench", "--topics", "12", "--segments", "2000", "--naive-sample", "1", "--only", "dedupe",
                     "--only", "build", "--out", str(out))
    assert result.returncode == 0, result.stderr
    figures = json.loads((out / "bench" / "bench.json").read_text())
    build = figures["build"]
    assert build["topics"] == 12 and build["jobs"] >= 1
    assert {"pdf", "epub", "html", "captions", "publish"} <= set(build["stages_seconds"])
    assert build["dedupe_precision"] == 1.0 and build["dedupe_recall"] == 1.0
    assert build["naive_topics_timed"] == 1 and build["speedup_vs_naive"] > 0
    # the ratio divides the naive route by the mean of the builds timed before and after it
    walls = build["build_wall_seconds"], build["build_again_wall_seconds"]
    naive = build["naive_seconds_per_topic"] * build["topics"]
    assert abs(build["speedup_vs_naive"] - naive / (sum(walls) / 2)) <= 0.1 + 0.01 * build["speedup_vs_naive"]
    assert [abs(r - naive / w) <= 0.1 + 0.01 * r for r, w in zip(build["speedup_vs_naive_each_build"], walls)] == [True] * 2
    assert len(build["unchanged_rebuild_runs"]) == 3 and len(build["one_topic_changed_runs"]) == 3
    assert len(build["one_topic_moved_pages_runs"]) == 3
    # the paragraph moves the last topic down, and taking it away moves it back
    before, added, removed, again = build["last_topic_page"]
    assert added > before and removed == before and again == added
    # carepress watch saw each of three edits and built it
    assert len(build["watch_one_topic_changed_runs"]) == 3 and len(build["watch_build_seconds"]) == 3
    assert all(0 < b <= w for b, w in zip(build["watch_build_seconds"], build["watch_one_topic_changed_runs"]))
    assert figures["dedupe"]["segments"] == 2000 and figures["dedupe"]["precision"] == 1.0
    machine = figures["machine"]
    assert machine["reference_seconds_before"] > 0 and machine["reference_seconds_after"] > 0
    # every target is reported, with no verdict: these are not the sizes the targets are set for
    assert [row["met"] for row in figures["targets"]] == [None] * len(TARGETS)
    assert "issue 7 targets" in result.stdout and "(other size)" in result.stdout
    svg = (out / "bench" / "build.svg").read_text()
    assert svg.startswith("<svg") and "naive route" in svg and "<title>" in svg


def test_verdicts_at_the_target_sizes():
    results = {
        "dedupe": {"segments": 100_000, "seconds": 4.2, "precision": 1.0, "recall": 0.985},
        "build": {"topics": 1000, "build_wall_seconds": 31.0, "speedup_vs_naive": 25.0,
                  "unchanged_rebuild_wall_seconds": 0.2, "one_topic_changed_wall_seconds": 2.5,
                  "one_topic_moved_pages_wall_seconds": 1.9,
                  "watch_one_topic_changed_wall_seconds": 1.5, "peak_memory_mib": 500},
    }
    met = {row["target"]: row["met"] for row in verdicts(results)}
    assert met == {
        "dedupe of 100,000 segments (s)": True, "dedupe precision": True, "dedupe recall": False,
        "every format, 1,000 topics (s)": False, "speed-up over the naive route (x)": True,
        "carepress build, nothing changed (s)": True, "carepress build, one topic changed (s)": False,
        "carepress build, one topic changed, pages move (s)": True,
        "carepress watch, one topic changed (s)": True,
        "peak memory, 1,000 topics (MiB)": True,
    }
    assert all(row["met"] is None for row in verdicts({}))
