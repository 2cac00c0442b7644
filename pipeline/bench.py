"""Benchmarks (`make bench`, `carepress bench`): speed goals live here, never in timed tests.

Each benchmark is ``"module:function"`` taking the parsed CLI args and returning a dict of
figures; it prints its own human-readable lines. At the end a table compares the figures
with issue 7's targets. Results go to <out>/bench/bench.json (out: outputs/ by default).

This machine's speed varies from hour to hour (a shared host), so the run also times a fixed
pure-Python workload before and after (``machine``): figures from two runs compare only
with that reference beside them.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from .writer import publish

BENCHMARKS: dict[str, str] = {
    "dedupe": "pipeline.bench_dedupe:run",
    "pdf": "pipeline.bench_pdf:run",
    "build": "pipeline.bench_build:run",
}

# Issue 7's targets: (benchmark, figure, what it measures, limit, "max" or "min"); "{n}" in the
# label is the size measured (segments or topics).
TARGETS = (
    ("dedupe", "seconds", "dedupe of {n} segments (s)", 5.0, "max"),
    ("dedupe", "precision", "dedupe precision", 1.0, "min"),
    ("dedupe", "recall", "dedupe recall", 0.99, "min"),
    ("build", "build_wall_seconds", "every format, {n} topics (s)", 30.0, "max"),
    ("build", "speedup_vs_naive", "speed-up over the naive route (x)", 20.0, "min"),
    ("build", "unchanged_rebuild_wall_seconds", "carepress build, nothing changed (s)", 0.6, "max"),
    ("build", "one_topic_changed_wall_seconds", "carepress build, one topic changed (s)", 2.0, "max"),
    # a page of text added to one topic: the topics after it move to other pages
    ("build", "one_topic_moved_pages_wall_seconds", "carepress build, one topic changed, pages move (s)", 2.0, "max"),
    # the same edit with the processes kept between builds: edit saved -> outputs published
    ("build", "watch_one_topic_changed_wall_seconds", "carepress watch, one topic changed (s)", 2.0, "max"),
    ("build", "peak_memory_mib", "peak memory, {n} topics (MiB)", 1024.0, "max"),
)
# Sizes the targets are set for: a run on other sizes reports its figures without a verdict.
TARGET_SIZES = {"dedupe": ("segments", 100_000), "build": ("topics", 1000)}


def reference_seconds() -> float:
    """Seconds for a fixed pure-Python workload (the best of three): this machine's speed now.
    Smaller is faster."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i * i % 7
        best = min(best, time.perf_counter() - start)
    return round(best, 3)


def verdicts(results: dict[str, dict]) -> list[dict]:
    """Each target with its figure from ``results`` and whether it is met (None: not measured,
    or measured on another size than the target's)."""
    rows = []
    for bench, figure, label, limit, sense in TARGETS:
        figures = results.get(bench, {})
        value = figures.get(figure)
        size_key, size = TARGET_SIZES[bench]
        measured = figures.get(size_key, size)
        met = None if value is None or measured != size else (value <= limit if sense == "max" else value >= limit)
        rows.append({"target": label.format(n=f"{measured:,}"), "figure": value, "limit": limit, "sense": sense,
                     "met": met})
    return rows


def _print_verdicts(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="issue 7 targets", header_style="bold")
    for column, justify in (("measure", "left"), ("figure", "right"), ("target", "right"), ("", "left")):
        table.add_column(column, justify=justify)
    for row in rows:
        if row["figure"] is None:
            continue
        verdict = {True: "met", False: "MISSED", None: "(other size)"}[row["met"]]
        bound = ("at most " if row["sense"] == "max" else "at least ") + f"{row['limit']:g}"
        table.add_row(row["target"], f"{row['figure']:g}", bound, verdict)
    Console(highlight=False, width=None if sys.stdout.isatty() else 110).print(table)


def bench_command(args) -> int:
    results: dict[str, dict] = {}
    names = args.only or list(BENCHMARKS)
    for name in names:
        if name not in BENCHMARKS:
            print(f"carepress bench: unknown benchmark {name!r} (choose from {', '.join(BENCHMARKS)})", file=sys.stderr)
            return 2
    out = Path(getattr(args, "out", None) or "outputs")
    args.out = out
    before = reference_seconds()
    print(f"machine: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores; "
          f"reference workload {before} s (smaller is faster)")
    for name in names:
        module, func = BENCHMARKS[name].split(":")
        runner = getattr(importlib.import_module(module), func)
        print(f"== bench: {name}")
        results[name] = runner(args)
    after = reference_seconds()
    print(f"reference workload after the benchmarks: {after} s")
    results["machine"] = {"cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
                          "reference_seconds_before": before, "reference_seconds_after": after}
    results["targets"] = verdicts(results)
    _print_verdicts(results["targets"])
    publish({"bench/bench.json": (json.dumps(results, indent=2) + "\n").encode()}, out)
    print(f"wrote {out}/bench/bench.json")
    return 0
